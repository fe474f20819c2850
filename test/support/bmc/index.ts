/**
 * A real IPMI-over-LAN BMC for tests: OpenIPMI's ipmi_sim (Debian's openipmi) on loopback, on a
 * free UDP port, one admin user, its chassis power commands wired to a test host's power switch
 * (chassis.mjs). ipmitool, fence_ipmilan and the agents talk RMCP+ to it as to any BMC.
 *
 * Started by pid and stopped by pid. Under CI=true a missing ipmi_sim is an error (startBmc
 * throws), never a skip; elsewhere `bmcAvailable` lets a suite skip.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export function onPath(program: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    const p = join(dir, program);
    if (dir && existsSync(p)) return p;
  }
  return undefined;
}

/** Whether the suite can run here; under CI=true always "yes" (and startBmc fails loudly). */
export const bmcAvailable = process.env.CI === "true" || onPath("ipmi_sim") !== undefined;
export const fenceAgentsAvailable = process.env.CI === "true" || onPath("fence_ipmilan") !== undefined;

export interface Bmc {
  address: string;
  port: number;
  username: string;
  password: string;
  /** Every chassis control call ipmi_sim made ("0x20 set power 0", "0x20 get power"). */
  chassisCalls(): string[];
  /** What the power switch says now (its own status, not the BMC's). */
  switchStatus(): "on" | "off";
  /** Whether ipmi_sim still runs (a test that ends with it dead has crashed the BMC). */
  alive(): boolean;
  output(): string;
  stop(): Promise<void>;
}

async function freeUdpPort(): Promise<number> {
  const s = createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A power switch over a state file, for a BMC with no test bed host behind it. */
export function stateFileSwitch(dir: string, initial: "on" | "off"): string[] {
  const state = join(dir, "power.state");
  writeFileSync(state, `${initial}\n`);
  return [
    "sh",
    "-c",
    `case "$1" in status) cat "${state}";; on|off) echo "$1" > "${state}";; *) exit 2;; esac`,
    "switch",
    "{action}",
  ];
}

/**
 * Starts ipmi_sim with `switchArgv` ("{action}" = on | off | status) as the chassis power (a
 * state file when not given); `softOff: "ignore"` makes the host ignore soft-off requests.
 * Resolves once ipmitool gets an answer from it.
 */
export async function startBmc(
  opts: { switchArgv?: string[]; password?: string; softOff?: "off" | "ignore" } = {},
): Promise<Bmc> {
  const sim = onPath("ipmi_sim");
  if (!sim) throw new Error("ipmi_sim is not installed (Debian openipmi: scripts/install-test-deps.sh)");
  const dir = mkdtempSync(join(tmpdir(), "vw-bmc-"));
  const username = "admin";
  const password = opts.password ?? `pw-${Math.random().toString(36).slice(2, 12)}`;
  const switchArgv = opts.switchArgv ?? stateFileSwitch(dir, "on");
  const switchConfig = join(dir, "switch.json");
  writeFileSync(switchConfig, JSON.stringify({ argv: switchArgv, softOff: opts.softOff ?? "off" }));
  writeFileSync(`${switchConfig}.log`, "");
  const port = await freeUdpPort();
  const chassis = join(import.meta.dirname, "chassis.mjs");
  writeFileSync(
    join(dir, "lan.conf"),
    [
      `name "vwbmc"`,
      "set_working_mc 0x20",
      "  startlan 1",
      `    addr 127.0.0.1 ${port}`,
      "    priv_limit admin",
      "    allowed_auths_callback md5",
      "    allowed_auths_user md5",
      "    allowed_auths_operator md5",
      "    allowed_auths_admin md5",
      "    guid a123456789abcdefa123456789abcdef",
      "  endlan",
      `  chassis_control "${process.execPath} ${chassis} ${switchConfig} 0x20"`,
      `  user 2 true "${username}" "${password}" admin 10 md5`,
      "",
    ].join("\n"),
  );
  // A BMC with a chassis (device support 0x9f includes the chassis device).
  writeFileSync(
    join(dir, "bmc.emu"),
    ["mc_setbmc 0x20", "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02", "mc_enable 0x20", ""].join(
      "\n",
    ),
  );
  mkdirSync(join(dir, "state"));
  const child: ChildProcess = spawn(
    sim,
    ["-c", join(dir, "lan.conf"), "-f", join(dir, "bmc.emu"), "-s", join(dir, "state"), "-n"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout?.on("data", (b: Buffer) => {
    out += b.toString();
  });
  child.stderr?.on("data", (b: Buffer) => {
    out += b.toString();
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const running = () => child.exitCode === null && child.signalCode === null;
  const stop = async () => {
    if (running() && child.pid !== undefined) {
      process.kill(child.pid, "SIGTERM");
      await Promise.race([exited, sleep(5_000)]);
      if (running()) process.kill(child.pid, "SIGKILL");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  // Ready when it answers a session (ipmitool's own retries make each try a few seconds at most).
  for (let i = 0; ; i++) {
    try {
      execFileSync(
        "ipmitool",
        [
          "-I",
          "lanplus",
          "-C",
          "3",
          "-H",
          "127.0.0.1",
          "-p",
          String(port),
          "-U",
          username,
          "-E",
          "mc",
          "info",
        ],
        { env: { ...process.env, IPMI_PASSWORD: password }, stdio: "pipe", timeout: 10_000 },
      );
      break;
    } catch (e) {
      if (!running() || i >= 20) {
        await stop();
        throw new Error(`ipmi_sim did not answer on 127.0.0.1:${port}: ${(e as Error).message}\n${out}`);
      }
      await sleep(250);
    }
  }
  const switchStatus = (): "on" | "off" => {
    const a = switchArgv.map((x) => x.replaceAll("{action}", "status"));
    const s = execFileSync(a[0] as string, a.slice(1))
      .toString()
      .trim();
    if (s !== "on" && s !== "off") throw new Error(`power switch status: "${s}"`);
    return s;
  };
  return {
    address: "127.0.0.1",
    port,
    username,
    password,
    chassisCalls: () => readFileSync(`${switchConfig}.log`, "utf8").split("\n").filter(Boolean),
    switchStatus,
    alive: running,
    output: () => out,
    stop,
  };
}

/**
 * A directory holding `program`, a wrapper that appends its argv to a log and then execs `real`:
 * put it first on PATH and every run of `program` by name is recorded exactly as the kernel saw
 * its argv (what ps and /proc/PID/cmdline show).
 */
export function argvRecorder(
  program: string,
  real: string,
): { dir: string; calls(): string[][]; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "vw-argv-"));
  const log = join(dir, "argv.log");
  writeFileSync(log, "");
  const wrapper = join(dir, program);
  // One line per run: each argument JSON-quoted, so the log is exact whatever the argument holds.
  writeFileSync(
    wrapper,
    `#!${process.execPath}\nconst fs = require("node:fs");\nfs.appendFileSync(${JSON.stringify(log)}, JSON.stringify(process.argv.slice(1)) + "\\n");\nconst r = require("node:child_process").spawnSync(${JSON.stringify(real)}, process.argv.slice(2), { stdio: "inherit" });\nprocess.exit(r.status ?? 1);\n`,
    { mode: 0o755 },
  );
  return {
    dir,
    calls: () =>
      readFileSync(log, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as string[]),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * Samples the command line of every process on the machine until stopped: the ones that contain
 * `needle` (a password no other process knows). A sampler, not a proof — see argvRecorder for
 * the exact record of the processes a test runs by name.
 */
export function cmdlineSampler(needle: string): { stop(): { hits: string[]; samples: number } } {
  const hits = new Set<string>();
  let samples = 0;
  const timer = setInterval(() => {
    samples++;
    let pids: string[];
    try {
      pids = readdirSync("/proc").filter((p) => /^\d+$/.test(p));
    } catch {
      return;
    }
    for (const pid of pids) {
      try {
        const c = readFileSync(`/proc/${pid}/cmdline`, "utf8");
        if (c.includes(needle)) hits.add(c.replaceAll("\0", " "));
      } catch {
        // gone
      }
    }
  }, 5);
  return {
    stop: () => {
      clearInterval(timer);
      return { hits: [...hits], samples };
    },
  };
}
