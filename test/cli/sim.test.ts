/**
 * `virtwarden sim` against a real `virtwarden run --simulate` (issue 17 point 9): the controller
 * and every `virtwarden sim`/`get` are processes of their own, as a user runs them; the
 * controller is stopped by its pid.
 *
 * Two readings that do not share code are compared: the simulator's ground truth (`GET
 * /v1/state` of the control endpoint, read by the test itself over HTTP: the world's hosts and
 * domains, not anything the controller computed) and the controller's record (view.json in the
 * state dir, what `virtwarden get` prints). A sampler reads the ground truth all through each
 * scenario and fails the test if any domain ever ran on two powered hosts at once; "running" is
 * decided here from the raw power flag and libvirt state, not by the endpoint's `active` field.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Host, Resource, VirtualMachine } from "../../src/api/types.js";
import { eventually } from "../support/eventually.js";

const ROOT = join(import.meta.dirname, "..", "..");
const MAIN = join(ROOT, "src/cli/main.ts");
const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface Controller {
  proc: ChildProcess;
  output: () => string;
  /** Resolves with the exit code when the process ends by itself (or is stopped). */
  exited: Promise<number | null>;
  stop: () => Promise<number | null>;
}

/** `virtwarden run DIR --simulate` as its own process (stopped by pid, SIGKILL if it hangs). */
function startController(manifests: string, stateDir: string, extra: string[] = ["--simulate"]): Controller {
  const proc = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      MAIN,
      "run",
      manifests,
      ...extra,
      "--state-dir",
      stateDir,
      "--metrics-addr",
      "127.0.0.1:0",
      "--log-format",
      "json",
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  proc.stdout?.on("data", (b: Buffer) => {
    out += b.toString();
  });
  proc.stderr?.on("data", (b: Buffer) => {
    out += b.toString();
  });
  const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null && proc.pid) process.kill(proc.pid, "SIGTERM");
    const hard = setTimeout(
      () => proc.pid && proc.exitCode === null && process.kill(proc.pid, "SIGKILL"),
      15_000,
    );
    const code = await exited;
    clearTimeout(hard);
    return code;
  };
  cleanups.push(async () => {
    await stop();
  });
  return { proc, output: () => out, exited, stop };
}

/** One `virtwarden ...` command as its own process. */
function vw(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ["--import", "tsx", MAIN, ...args], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    p.stdout?.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    p.stderr?.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    p.once("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

/** `eventually`, what first; a probe's throw (the control file not there yet) means not yet. */
const until = <T>(what: string, probe: () => Promise<T> | T, ms = 90_000) =>
  eventually(probe, what, { timeoutMs: ms, everyMs: 100, retryErrors: true });

// --- the two readings ------------------------------------------------------------------------

interface ControlFile {
  address: string;
  token: string;
  pid: number;
}

interface GroundTruth {
  hosts: {
    name: string;
    resource?: string;
    powered: boolean;
    partitioned: boolean;
    bmcBroken: boolean;
    domains: { name: string; vm?: string; state: string; vcpus: number }[];
  }[];
}

const controlFile = (stateDir: string) => join(stateDir, "sim-control.json");
const readControl = (stateDir: string) =>
  JSON.parse(readFileSync(controlFile(stateDir), "utf8")) as ControlFile;

/** A raw HTTP request to the control endpoint, with whatever authorization the test chooses. */
function rawRequest(
  address: string,
  method: string,
  path: string,
  authorization?: string,
): Promise<{ status: number; body: string }> {
  const i = address.lastIndexOf(":");
  const host = address.slice(0, i).replace(/^\[|\]$/g, "");
  const port = address.slice(i + 1);
  return new Promise((resolve, reject) => {
    const req = request(
      { host, port: Number(port), method, path, headers: authorization ? { authorization } : {} },
      (res) => {
        let body = "";
        res.on("data", (b: Buffer) => {
          body += b.toString();
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

async function groundTruth(stateDir: string): Promise<GroundTruth> {
  const c = readControl(stateDir);
  const r = await rawRequest(c.address, "GET", "/v1/state", `Bearer ${c.token}`);
  if (r.status !== 200) throw new Error(`GET /v1/state: ${r.status} ${r.body}`);
  return JSON.parse(r.body) as GroundTruth;
}

/** libvirt's active states, decided here (not the endpoint's `active`). */
const RUNNING_STATES = new Set(["running", "paused", "blocked", "shutdown"]);

/** Hosts with power on which the domain of namespace/name runs. */
function runningOn(truth: GroundTruth, vm: string): string[] {
  const domain = vm.replace("/", "_");
  return truth.hosts
    .filter((h) => h.powered && h.domains.some((d) => d.name === domain && RUNNING_STATES.has(d.state)))
    .map((h) => h.resource ?? h.name);
}

/** Samples the ground truth until stopped; any domain running on two powered hosts is a violation. */
function startSampler(stateDir: string) {
  const violations: string[] = [];
  let samples = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        const truth = await groundTruth(stateDir);
        samples++;
        const where = new Map<string, string[]>();
        for (const h of truth.hosts)
          for (const d of h.domains)
            if (h.powered && RUNNING_STATES.has(d.state))
              where.set(d.name, [...(where.get(d.name) ?? []), h.name]);
        for (const [d, hosts] of where)
          if (hosts.length > 1) violations.push(`${d} running on ${hosts.join(" and ")}`);
      } catch {
        // The controller is starting or stopping: no endpoint this instant.
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return { violations, samples };
    },
  };
}

interface View {
  resources: Resource[];
  events: { reason: string; note: string; regarding: { kind: string; name: string } }[];
}

/** The controller's record, as `virtwarden get` reads it. */
function readView(stateDir: string): View {
  return JSON.parse(readFileSync(join(stateDir, "view.json"), "utf8")) as View;
}

function vmOf(view: View, name: string): VirtualMachine | undefined {
  return view.resources.find(
    (r): r is VirtualMachine => r.kind === "VirtualMachine" && r.metadata.name === name,
  );
}

function hostOf(view: View, name: string): Host | undefined {
  return view.resources.find((r): r is Host => r.kind === "Host" && r.metadata.name === name);
}

const condition = (r: Resource | undefined, type: string) =>
  r?.status?.conditions?.find((c) => c.type === type);

// --- fixtures --------------------------------------------------------------------------------

/** Two hosts with libvirt URIs (as in examples/: --simulate must fence them too), three VMs. */
const FLEET = `apiVersion: virtwarden.io/v1alpha1
kind: Host
metadata: { name: h1 }
spec:
  uri: qemu+tcp://h1/system
  fencing: { agent: ipmi, address: 10.0.0.1, credentialsSecretRef: { name: h1-bmc } }
---
apiVersion: virtwarden.io/v1alpha1
kind: Host
metadata: { name: h2 }
spec:
  uri: qemu+tcp://h2/system
  fencing: { agent: ipmi, address: 10.0.0.2, credentialsSecretRef: { name: h2-bmc } }
---
apiVersion: virtwarden.io/v1alpha1
kind: VirtualMachine
metadata: { name: keep, namespace: default }
spec:
  runStrategy: Always
  resources: { cpu: 1, memory: 512Mi }
  availability: { onHostFailure: Recreate }
---
apiVersion: virtwarden.io/v1alpha1
kind: VirtualMachine
metadata: { name: tweak, namespace: default }
spec:
  runStrategy: Always
  resources: { cpu: 2, memory: 512Mi }
---
apiVersion: virtwarden.io/v1alpha1
kind: VirtualMachine
metadata: { name: loop, namespace: default }
spec:
  runStrategy: Always
  resources: { cpu: 1, memory: 512Mi }
  availability:
    crashLoopThreshold: 2
    crashLoopWindowSeconds: 600
    restartBackoff: { initialSeconds: 1, maxSeconds: 1 }
    onCrashLoop: Stop
`;

function fleetDir(): string {
  const dir = tempDir("vw-sim-fleet-");
  writeFileSync(join(dir, "fleet.yaml"), FLEET);
  return dir;
}

async function allRunning(stateDir: string, names: string[]): Promise<GroundTruth | undefined> {
  const truth = await groundTruth(stateDir);
  const view = readView(stateDir);
  for (const n of names) {
    if (runningOn(truth, `default/${n}`).length !== 1) return undefined;
    if (vmOf(view, n)?.status?.phase !== "Running") return undefined;
  }
  return truth;
}

// --- the tests -------------------------------------------------------------------------------

describe("virtwarden sim against run --simulate", () => {
  it("the README walkthrough on examples/: power-off fails over after fencing, power-on takes stale copies away, repeated crashes climb the crash-loop ladder", async () => {
    const state = tempDir("vw-sim-examples-");
    const ctl = startController(join(ROOT, "examples"), state);
    const vms = ["db-0", "mpi-0", "mpi-1", "mpi-2", "mpi-3", "web-0", "web-1", "web-2"];
    const before = await until("all 8 example VMs running", () => allRunning(state, vms));
    const sampler = startSampler(state);
    const S = ["--state-dir", state];

    // The host with the most VMs loses power.
    const victim = [...before.hosts].sort((a, b) => b.domains.length - a.domains.length)[0];
    if (!victim?.resource) throw new Error("no host of examples/ in the simulator");
    const lost = vms.filter((v) => runningOn(before, `default/${v}`)[0] === victim.resource);
    expect(lost.length).toBeGreaterThan(1);
    const off = await vw(["sim", "power-off", victim.resource, ...S]);
    expect(off.stderr).toBe("");
    expect(off.code).toBe(0);
    expect(off.stdout).toContain(`${victim.resource} lost power`);

    // Fenced, then every VM it ran that has room elsewhere runs elsewhere (web-* are kept apart by
    // anti-affinity: with 3 hosts and one down, the lost web VM has nowhere to go).
    await until(
      `${victim.resource} Fenced`,
      () => hostOf(readView(state), victim.resource as string)?.status?.phase === "Fenced",
    );
    // Said as it was done: by the simulated BMC standing in for the manifest's ipmi agent.
    const fencedBy = await until("the HostFenced event", () =>
      readView(state).events.find((e) => e.reason === "HostFenced" && e.regarding.name === victim.resource),
    );
    expect(fencedBy.note).toContain("powered off by the sim agent");
    const movable = lost.filter((v) => !v.startsWith("web-"));
    expect(movable.length).toBeGreaterThan(0);
    const moved = await until("the lost VMs running on other hosts", async () => {
      const truth = await groundTruth(state);
      const view = readView(state);
      for (const v of movable) {
        const on = runningOn(truth, `default/${v}`);
        if (on.length !== 1 || on[0] === victim.resource) return undefined;
        if (vmOf(view, v)?.status?.phase !== "Running" || vmOf(view, v)?.status?.host !== on[0])
          return undefined;
      }
      return truth;
    });
    for (const v of movable) expect(runningOn(moved, `default/${v}`)).not.toContain(victim.resource);
    const failed = readView(state)
      .events.filter((e) => e.reason === "HostFailed")
      .map((e) => e.regarding.name);
    for (const v of movable) expect(failed).toContain(v);
    const get = await vw(["get", "vm", ...S]);
    expect(get.code).toBe(0);
    for (const v of movable)
      expect(get.stdout).toMatch(new RegExp(`default\\s+${v}\\s+Running\\s+(?!${victim.resource})`));

    // Power back on: it boots with its copies shut off; they are removed, nothing runs twice.
    const on = await vw(["sim", "power-on", victim.resource, ...S]);
    expect(on.code).toBe(0);
    await until(
      `${victim.resource} Ready again`,
      () => hostOf(readView(state), victim.resource as string)?.status?.phase === "Ready",
    );
    await until("every example VM running once", () => allRunning(state, vms));
    await until("the stale copies gone from the returned host", async () => {
      const truth = await groundTruth(state);
      const h = truth.hosts.find((x) => x.resource === victim.resource);
      return h && movable.every((v) => !h.domains.some((d) => d.name === `default_${v}`));
    });

    // db-0: crashLoopThreshold 3, onCrashLoop RestoreLatestSnapshot. Crash it each time it runs
    // again until it stops in CrashLoop.
    let crashes = 0;
    while (vmOf(readView(state), "db-0")?.status?.phase !== "CrashLoop") {
      expect(crashes).toBeLessThan(12);
      const restarts = vmOf(readView(state), "db-0")?.status?.restartCount ?? 0;
      const crash = await vw(["sim", "crash", "db-0", ...S]);
      if (crash.code !== 0) {
        // Only when it is not running at this instant (stopped in the loop just now).
        expect(crash.stderr).toContain("is not running");
      } else {
        crashes++;
        expect(crash.stdout).toContain("default/db-0's QEMU died");
      }
      await until("db-0 restarted or stopped in CrashLoop", async () => {
        const vm = vmOf(readView(state), "db-0");
        if (vm?.status?.phase === "CrashLoop") return true;
        const truth = await groundTruth(state);
        return runningOn(truth, "default/db-0").length === 1 && (vm?.status?.restartCount ?? 0) > restarts;
      });
    }
    expect(crashes).toBeGreaterThanOrEqual(3);
    const db = vmOf(readView(state), "db-0");
    expect(condition(db, "Stalled")).toMatchObject({ status: "True", reason: "CrashLoop" });
    const reasons = readView(state)
      .events.filter((e) => e.regarding.name === "db-0")
      .map((e) => e.reason);
    expect(reasons).toContain("Restarted");
    expect(reasons).toContain("Restored");
    expect(reasons).toContain("CrashLoop");
    expect(runningOn(await groundTruth(state), "default/db-0")).toEqual([]);
    const again = await vw(["sim", "crash", "db-0", ...S]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("default/db-0 is not running on any simulated host");

    const { violations, samples } = await sampler.stop();
    expect(violations).toEqual([]);
    expect(samples).toBeGreaterThan(50);
    expect(await ctl.stop()).toBe(0);
    expect(() => statSync(controlFile(state))).toThrow(/ENOENT/);
  }, 240_000);

  it("a host that cannot be fenced keeps its VM down (Stalled, never a second copy) until its BMC answers; drift behind the controller's back is corrected", async () => {
    const state = tempDir("vw-sim-fence-");
    startController(fleetDir(), state);
    const S = ["--state-dir", state];
    const before = await until("keep, tweak and loop running", () =>
      allRunning(state, ["keep", "tweak", "loop"]),
    );
    const sampler = startSampler(state);
    const home = runningOn(before, "default/keep")[0] as string;

    // Its BMC dead, then cut off: its guests keep running where the controller cannot see them.
    expect((await vw(["sim", "fail-fence", home, ...S])).code).toBe(0);
    const part = await vw(["sim", "partition", home, ...S]);
    expect(part.code).toBe(0);
    expect(part.stdout).toContain("keep running");
    const stalled = await until("keep Stalled by the failed fence", () => {
      const vm = vmOf(readView(state), "keep");
      const c = condition(vm, "Stalled");
      return c?.status === "True" && c.reason === "HostFenceFailed" ? c : undefined;
    });
    expect(stalled.message).toContain(home);
    expect(stalled.message).toContain("BMC");
    // Decided: still on its cut-off host only, nowhere else.
    let truth = await groundTruth(state);
    expect(runningOn(truth, "default/keep")).toEqual([home]);
    expect(truth.hosts.find((h) => h.resource === home)).toMatchObject({
      partitioned: true,
      bmcBroken: true,
    });
    const status = await vw(["sim", "status", ...S]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`${home}\\s+on\\s+partitioned\\s+failing`));

    // The BMC answers: the host is fenced (powered off) and keep starts on the other host.
    expect((await vw(["sim", "fence-ok", home, ...S])).code).toBe(0);
    truth = await until("keep running on the other host", async () => {
      const t = await groundTruth(state);
      const on = runningOn(t, "default/keep");
      return on.length === 1 && on[0] !== home && vmOf(readView(state), "keep")?.status?.host === on[0]
        ? t
        : undefined;
    });
    expect(truth.hosts.find((h) => h.resource === home)?.powered).toBe(false);
    expect(hostOf(readView(state), home)?.status?.phase).toBe("Fenced");
    expect((await vw(["sim", "power-on", home, ...S])).code).toBe(0);
    await until("every VM running once", () => allRunning(state, ["keep", "tweak", "loop"]));

    // Drift: one more vCPU in tweak's definition; the controller redefines it as declared.
    const drift = await vw(["sim", "drift", "default/tweak", ...S]);
    expect(drift.code).toBe(0);
    expect(drift.stdout).toContain("vcpus 2 -> 3");
    await until("tweak's definition back to 2 vCPUs, the drift recorded", async () => {
      const t = await groundTruth(state);
      const d = t.hosts.flatMap((h) => h.domains).filter((x) => x.name === "default_tweak");
      const vm = vmOf(readView(state), "tweak");
      return d.length === 1 && d[0]?.vcpus === 2 && vm?.status?.lastDrift?.fields?.includes("domain.vcpus");
    });
    // Destroyed behind its back: started again.
    const destroyed = await vw(["sim", "destroy", "tweak", ...S]);
    expect(destroyed.code).toBe(0);
    await until("tweak running again after virsh destroy", async () => {
      const events = readView(state).events.filter(
        (e) => e.regarding.name === "tweak" && e.reason === "DriftCorrected",
      );
      return (
        events.some((e) => e.note.includes("destroyed")) &&
        runningOn(await groundTruth(state), "default/tweak").length === 1
      );
    });

    // loop (threshold 2, onCrashLoop Stop): crashed whenever it runs, it stops in CrashLoop.
    let crashes = 0;
    while (vmOf(readView(state), "loop")?.status?.phase !== "CrashLoop") {
      expect(crashes).toBeLessThan(8);
      const r = await vw(["sim", "crash", "loop", ...S]);
      if (r.code === 0) crashes++;
      await until("loop running again or stopped", async () => {
        if (vmOf(readView(state), "loop")?.status?.phase === "CrashLoop") return true;
        return runningOn(await groundTruth(state), "default/loop").length === 1;
      });
    }
    expect(crashes).toBeGreaterThanOrEqual(2);
    expect(condition(vmOf(readView(state), "loop"), "Stalled")).toMatchObject({
      status: "True",
      reason: "CrashLoop",
    });
    expect(runningOn(await groundTruth(state), "default/loop")).toEqual([]);

    const { violations, samples } = await sampler.stop();
    expect(violations).toEqual([]);
    expect(samples).toBeGreaterThan(50);
  }, 240_000);

  it("the control endpoint: 0600 file, loopback only, a missing or wrong token refused (401) and nothing done, unknown names named", async () => {
    const state = tempDir("vw-sim-auth-");
    startController(fleetDir(), state);
    const S = ["--state-dir", state];
    await until("the control file", () => statSync(controlFile(state), { throwIfNoEntry: false }));
    await until("keep running", () => allRunning(state, ["keep"]));
    expect(statSync(controlFile(state)).mode & 0o777).toBe(0o600);
    const c = readControl(state);
    expect(c.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(c.token.length).toBeGreaterThanOrEqual(32);

    // Not on any other address of this machine.
    const port = Number(c.address.split(":")[1]);
    const others = Object.values(networkInterfaces())
      .flat()
      .filter((a) => a && !a.internal)
      .map((a) => a?.address as string);
    for (const addr of others) {
      const host = addr.includes(":") ? `[${addr}]` : addr;
      await expect(rawRequest(`${host}:${port}`, "GET", "/v1/state")).rejects.toThrow(
        /ECONNREFUSED|EADDRNOTAVAIL|EINVAL/,
      );
    }

    // Missing and wrong tokens: 401, and the host keeps its power.
    const target = "/v1/hosts/h1/power-off";
    expect((await rawRequest(c.address, "POST", target)).status).toBe(401);
    expect((await rawRequest(c.address, "POST", target, `Bearer ${c.token}x`)).status).toBe(401);
    expect((await rawRequest(c.address, "POST", target, c.token)).status).toBe(401);
    expect((await rawRequest(c.address, "GET", "/v1/state", "Bearer nope")).status).toBe(401);
    // Through the CLI with a copy of the file holding another token.
    const forged = join(tempDir("vw-sim-forged-"), "control.json");
    writeFileSync(forged, JSON.stringify({ ...c, token: "A".repeat(43) }), { mode: 0o600 });
    const refused = await vw(["sim", "power-off", "h1", "--control-file", forged]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("401");
    expect(refused.stderr).toContain("token");
    expect((await groundTruth(state)).hosts.find((h) => h.resource === "h1")?.powered).toBe(true);
    // A control file others can read is not used.
    const loose = join(tempDir("vw-sim-loose-"), "control.json");
    copyFileSync(controlFile(state), loose);
    const { chmodSync } = await import("node:fs");
    chmodSync(loose, 0o644);
    const looseRun = await vw(["sim", "status", "--control-file", loose]);
    expect(looseRun.code).toBe(1);
    expect(looseRun.stderr).toContain("readable by others");

    // Unknown names: exit 1, named, and the known ones listed.
    const noHost = await vw(["sim", "power-off", "kvm-99", ...S]);
    expect(noHost.code).toBe(1);
    expect(noHost.stderr).toContain("no Host named kvm-99 (hosts: h1, h2)");
    const noVM = await vw(["sim", "crash", "prod/nope", ...S]);
    expect(noVM.code).toBe(1);
    expect(noVM.stderr).toContain(
      "no VirtualMachine prod/nope (VMs: default/keep, default/loop, default/tweak)",
    );
    // A fault that cannot apply says why.
    const heal = await vw(["sim", "heal", "h1", ...S]);
    expect(heal.code).toBe(1);
    expect(heal.stderr).toContain("h1: not partitioned");
    // A second controller on this state dir is refused its lock and leaves the file alone.
    const second = startController(fleetDir(), state);
    expect(await second.exited).toBe(1);
    expect(second.output()).toContain("locked by pid");
    expect(readControl(state)).toEqual(c);
    expect((await vw(["sim", "status", ...S])).code).toBe(0);
    // Nothing of this changed the world.
    const truth = await groundTruth(state);
    for (const h of truth.hosts)
      expect(h).toMatchObject({ powered: true, partitioned: false, bmcBroken: false });
  }, 120_000);

  it("without --simulate there is no control endpoint, a stale control file goes, and `virtwarden sim` says why", async () => {
    const state = tempDir("vw-sim-real-");
    const dir = tempDir("vw-sim-realdir-");
    writeFileSync(
      join(dir, "host.yaml"),
      "apiVersion: virtwarden.io/v1alpha1\nkind: Host\nmetadata: { name: s1 }\nspec: { uri: sim://s1 }\n",
    );
    // Left by an earlier `run --simulate` that was killed.
    writeFileSync(controlFile(state), JSON.stringify({ address: "127.0.0.1:9", token: "t", pid: 1 }), {
      mode: 0o600,
    });
    const ctl = startController(dir, state, []);
    await until("the controller running on its state dir", () =>
      ctl.output().includes("controllers started") ? true : undefined,
    );
    await until(
      "the stale control file removed",
      () => !statSync(controlFile(state), { throwIfNoEntry: false }),
    );
    const r = await vw(["sim", "power-off", "s1", "--state-dir", state]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("no simulator control file");
    expect(r.stderr).toContain("--simulate");
    expect(ctl.output()).not.toContain("simulator control listening");
  }, 120_000);
});
