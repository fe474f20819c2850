/**
 * `virtwarden sim ...`: faults injected into a running `virtwarden run --simulate` (npm start)
 * through its control endpoint (sim-control.ts), found in the control file of its state dir.
 * Only a simulating controller has one: a controller driving real hosts takes no simulated faults.
 * Exit codes as everywhere: 0 done, 1 refused or failed (the message says why), 2 usage.
 */
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { Command } from "commander";
import { formatTable } from "./inspect.js";
import { CONTROL_FILE, type ControlFile, type SimState } from "./sim-control.js";

interface SimOptions {
  stateDir: string;
  controlFile?: string;
}

async function readControlFile(opts: SimOptions): Promise<{ file: string; control: ControlFile }> {
  const file = opts.controlFile ?? join(opts.stateDir, CONTROL_FILE);
  let text: string;
  try {
    const st = await stat(file);
    if ((st.mode & 0o077) !== 0)
      throw new Error(
        `${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}): its token controls the simulator; chmod 600 it`,
      );
    text = await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT")
      throw new Error(
        `no simulator control file ${file}: \`virtwarden sim\` drives a running \`virtwarden run --simulate\` (npm start) on the same --state-dir; a controller without --simulate runs real hosts and takes no simulated faults`,
      );
    throw e;
  }
  let control: ControlFile;
  try {
    control = JSON.parse(text) as ControlFile;
  } catch {
    throw new Error(`${file}: not a simulator control file (not JSON)`);
  }
  if (typeof control.address !== "string" || typeof control.token !== "string")
    throw new Error(`${file}: not a simulator control file (no address or token)`);
  if (!/^127\.0\.0\.1:\d+$/.test(control.address))
    throw new Error(
      `${file}: address ${control.address} is not on 127.0.0.1; refusing to send the token there`,
    );
  return { file, control };
}

/** One request to the control endpoint; a refusal becomes an Error carrying the server's reason. */
async function callControl(opts: SimOptions, method: "GET" | "POST", path: string): Promise<unknown> {
  const { file, control } = await readControlFile(opts);
  let res: Response;
  try {
    res = await fetch(`http://${control.address}${path}`, {
      method,
      headers: { authorization: `Bearer ${control.token}` },
    });
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e as Error).message;
    throw new Error(
      `no simulating controller answers at ${control.address} (${cause}); ${file} was written by pid ${control.pid}: is that \`virtwarden run --simulate\` still running?`,
    );
  }
  const body = (await res.json().catch(() => ({}))) as { error?: string };
  if (!res.ok) throw new Error(`${body.error ?? `HTTP ${res.status}`} (HTTP ${res.status})`);
  return body;
}

const withControl = (c: Command) =>
  c
    .option("--state-dir <dir>", "state directory of the `run --simulate` controller", ".virtwarden/state")
    .option("--control-file <file>", "the control file (default: STATE-DIR/sim-control.json)");

const vmPath = (vm: string) => {
  const i = vm.indexOf("/");
  const [ns, name] = i > 0 ? [vm.slice(0, i), vm.slice(i + 1)] : ["default", vm];
  return `${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
};

const HOST_COMMANDS: [string, string][] = [
  [
    "power-off",
    "the host loses power: its guests die with it; the controller fences it and restarts them elsewhere",
  ],
  ["power-on", "switch the host on again: it boots with its guests shut off (stale copies are destroyed)"],
  [
    "partition",
    "cut the host off from the controller: its guests keep running (fenced before any restarts elsewhere)",
  ],
  ["heal", "end a partition: the host answers again"],
  [
    "fail-fence",
    "the host's BMC stops answering: fencing and powering it fail (its VMs stay down, never run twice)",
  ],
  ["fence-ok", "the host's BMC answers again"],
];

const VM_COMMANDS: [string, string][] = [
  [
    "crash",
    "the guest's QEMU dies (repeat it to reach the crash-loop ladder: restarts with backoff, restore, stop)",
  ],
  ["destroy", "virsh destroy behind the controller's back (drift: it starts the VM again)"],
  [
    "drift",
    "change the domain's definition behind the controller's back (one more vCPU; drift: it is redefined)",
  ],
];

export function simCommand(): Command {
  const sim = new Command("sim").description(
    "inject faults into a running `virtwarden run --simulate` (npm start): hosts, fencing, guests",
  );
  for (const [name, what] of HOST_COMMANDS)
    sim.addCommand(
      withControl(new Command(name).description(what).argument("<host>", "Host name")).action(
        async (host: string, opts: SimOptions) => {
          const r = (await callControl(opts, "POST", `/v1/hosts/${encodeURIComponent(host)}/${name}`)) as {
            message: string;
          };
          process.stdout.write(`${r.message}\n`);
        },
      ),
    );
  for (const [name, what] of VM_COMMANDS)
    sim.addCommand(
      withControl(
        new Command(name).description(what).argument("<vm>", "NAMESPACE/NAME, or NAME in default"),
      ).action(async (vm: string, opts: SimOptions) => {
        const r = (await callControl(opts, "POST", `/v1/vms/${vmPath(vm)}/${name}`)) as { message: string };
        process.stdout.write(`${r.message}\n`);
      }),
    );
  sim.addCommand(
    withControl(
      new Command("status").description(
        "the simulator's own view: each host's power, network and BMC, and every domain's state",
      ),
    )
      .option("-o, --output <format>", "table | json", "table")
      .action(async (opts: SimOptions & { output: string }) => {
        const state = (await callControl(opts, "GET", "/v1/state")) as SimState;
        if (opts.output === "json") {
          process.stdout.write(`${JSON.stringify(state, null, 2)}\n`);
          return;
        }
        process.stdout.write(`${formatSimState(state)}\n`);
      }),
  );
  return sim;
}

export function formatSimState(state: SimState): string {
  const hosts = [["HOST", "POWER", "NETWORK", "BMC", "RUNNING"]];
  const domains = [["VM", "HOST", "STATE", "REASON"]];
  for (const h of [...state.hosts].sort((a, b) => a.name.localeCompare(b.name))) {
    hosts.push([
      h.resource ?? h.name,
      h.powered ? "on" : "off",
      h.partitioned ? "partitioned" : "connected",
      h.bmcBroken ? "failing" : "ok",
      String(h.domains.filter((d) => d.active).length),
    ]);
    for (const d of h.domains)
      domains.push([
        d.vm ?? d.name,
        h.resource ?? h.name,
        ...(h.powered ? [d.state, d.reason] : ["(no power)", "-"]),
      ]);
  }
  const sorted = [
    domains[0] as string[],
    ...domains.slice(1).sort((a, b) => `${a[0]}`.localeCompare(`${b[0]}`)),
  ];
  return `${formatTable(hosts)}\n\n${formatTable(sorted)}`;
}
