/**
 * One seeded chaos scenario on the real test bed: `virtwarden run` started as its own process on
 * a fresh manifests directory and state directory, the scenario's user actions and faults, each
 * followed (with a seeded chance) by a SIGKILL of the controller after a seeded delay of 0-3 s
 * and a restart on the same state directory (sometimes killed again while it starts). Then the
 * faults stop (hosts on, links up, libvirtd up, the controller running) and the invariants are
 * checked against reality as the watcher sees it (/proc, virsh, qemu-img; never virtwarden's code):
 *
 * - never two running copies of a VM (sampled all along, watcher.ts);
 * - within CONVERGE_BOUND_S after the faults stop: every declared VM that should run runs exactly
 *   once, with its declared memory and vCPUs, not on a host in maintenance; a Halted one does not
 *   run; no orphan domain (our ownership mark, no declared VM), no orphan volume (a file in the
 *   pool that no declared VM's disk names), no declared VM's disk missing; every declared
 *   snapshot taken and present in its disk image, every snapshot tag once seen still there, every
 *   declared restore done; status (the state dir's view.json, and `virtwarden get vm -o json` once
 *   at the end) equal to reality: phase, host, and every declared VM listed, none else;
 * - at most one crash-loop restore per crash loop; the controller never exits by itself.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import type { BedHost, ChaosBed } from "./bed.js";
import { CONTROLLER_ROOT, Controller } from "./controller.js";
import { type Decl, domainOf, ManifestDir, volumeOf } from "./manifests.js";
import { copiesByGuest, scanQemus, startWatcher } from "./watcher.js";

const run = promisify(execFile);

/** Faults stopped -> everything declared runs exactly once and status says so. */
export const CONVERGE_BOUND_S = 90;
/** The baseline (before any fault) may take longer: a fresh libvirtd probes QEMU on its first start. */
const BASELINE_BOUND_S = 180;

/** mulberry32: small, seedable, the same sequence on every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface ViewResource {
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  status?: {
    phase?: string;
    host?: string;
    members?: { vmName?: string; snapshotName?: string }[];
  };
}

export interface Ctx {
  seed: number;
  rng: () => number;
  bed: ChaosBed;
  m: ManifestDir;
  ctl: Controller;
  log(s: string): void;
  /** A user action or a fault, then (seeded) a SIGKILL 0-3 s later and a restart. */
  act(what: string, fn: () => void | Promise<void>): Promise<void>;
  /** A seeded pause of minS..maxS seconds. */
  pause(minS: number, maxS: number): Promise<void>;
  pick<T>(xs: readonly T[]): T;
  /** Wait for a condition (bounded; false when not reached). */
  until(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean>;
  /** Guests running now, from /proc: domain -> hosts. */
  running(): Map<string, string[]>;
  view(): ViewResource[];
  /** Hosts the scenario leaves to the controller's power management (consolidation). */
  powerManaged: boolean;
}

export interface Scenario {
  name: string;
  /** Extra `virtwarden run` flags. */
  args?: string[];
  /** The declared state before the chaos starts (hosts are declared by the harness). */
  baseline(ctx: Ctx): void;
  /** Whether the baseline must converge before the chaos (false: creation is the scenario). */
  waitBaseline?: boolean;
  run(ctx: Ctx): Promise<void>;
  /** Extra end checks (problems; empty = fine). */
  check?(ctx: Ctx): Promise<string[]>;
}

export interface ScenarioResult {
  scenario: string;
  seed: number;
  kills: number;
  starts: number;
  samples: number;
  doubleQemuSamples: number;
  violations: string[];
  convergeS: number | undefined;
  wallS: number;
  logDir: string;
}

export const repro = (seed: number, scenario: string) =>
  `npm run chaos -- --seed ${seed} --scenario ${scenario}`;

function readView(stateDir: string): ViewResource[] {
  return readViewFile(stateDir).resources;
}

function readViewFile(stateDir: string): { resources: ViewResource[]; writtenAt?: string } {
  try {
    return JSON.parse(readFileSync(join(stateDir, "view.json"), "utf8")) as {
      resources: ViewResource[];
      writtenAt?: string;
    };
  } catch {
    return { resources: [] };
  }
}

/** Reality against the declaration and against status; the problems left (empty = converged). */
async function problems(
  ctx: Ctx,
  decl: Decl,
  stateDir: string,
  seenTags: Map<string, Set<string>>,
): Promise<string[]> {
  const out: string[] = [];
  const { bed } = ctx;
  const byGuest = copiesByGuest(scanQemus(bed.hosts));
  const domains = new Map<string, Map<string, string> | undefined>();
  for (const h of bed.hosts) domains.set(h.name, await h.domains());
  const file = readViewFile(stateDir);
  const view = file.resources;
  // Status is what the running controller wrote: a view left by a controller SIGKILLed before
  // it is not converged, however right it looks (it was, until the faults went on).
  const written = Date.parse(file.writtenAt ?? "");
  if (ctx.ctl.running && !(written >= ctx.ctl.startedAt))
    out.push("view.json not yet written by the running controller");
  const vmStatus = new Map(
    view.filter((r) => r.kind === "VirtualMachine").map((r) => [r.metadata.name, r] as const),
  );
  const maintenance = new Set(decl.hosts.filter((h) => h.maintenance).map((h) => h.host.name));
  for (const v of decl.vms.values()) {
    const copies = byGuest.get(domainOf(v.name)) ?? [];
    const st = vmStatus.get(v.name);
    if (!st) out.push(`${v.name}: declared but missing from status (view.json)`);
    if (v.runStrategy === "Always") {
      if (copies.length !== 1) {
        out.push(`${v.name}: ${copies.length} QEMUs (${copies.map((q) => q.host).join(",")}), want 1`);
        continue;
      }
      const q = copies[0] as (typeof copies)[number];
      const state = domains.get(q.host)?.get(domainOf(v.name));
      if (state !== "running") out.push(`${v.name}: virsh on ${q.host} says ${state ?? "nothing"}`);
      if (q.memoryMiB !== v.memoryMiB)
        out.push(`${v.name}: QEMU has ${q.memoryMiB} MiB, declared ${v.memoryMiB}`);
      if (q.vcpus !== v.cpu) out.push(`${v.name}: QEMU has ${q.vcpus} vCPUs, declared ${v.cpu}`);
      if (maintenance.has(q.host)) out.push(`${v.name}: runs on ${q.host}, which is in maintenance`);
      if (st && (st.status?.phase !== "Running" || st.status.host !== q.host))
        out.push(`${v.name}: status ${st.status?.phase} on ${st.status?.host}, reality running on ${q.host}`);
    } else {
      if (copies.length > 0) out.push(`${v.name}: Halted but runs on ${copies.map((q) => q.host).join(",")}`);
      if (st?.status?.phase === "Running") out.push(`${v.name}: Halted, status says Running`);
    }
  }
  const declaredDomains = new Set([...decl.vms.keys()].map(domainOf));
  for (const [g, copies] of byGuest)
    if (!declaredDomains.has(g)) out.push(`orphan QEMU ${g} on ${copies.map((q) => q.host).join(",")}`);
  for (const h of bed.hosts) {
    const doms = domains.get(h.name);
    if (!doms) {
      if (!ctx.powerManaged || h.poweredOn()) out.push(`${h.name}: libvirtd does not answer`);
      continue;
    }
    for (const d of doms.keys()) {
      if (declaredDomains.has(d)) continue;
      const owner = await h.owner(d);
      if (owner) out.push(`orphan domain ${d} on ${h.name} (ours: ${owner.namespace}/${owner.name})`);
    }
  }
  const wantVolumes = new Set([...decl.vms.keys()].map(volumeOf));
  const files = new Set(bed.poolFiles());
  const vols = await bed.volumes();
  for (const f of files) if (!wantVolumes.has(f)) out.push(`orphan file in the pool: ${f}`);
  for (const f of vols ?? []) if (!wantVolumes.has(f) && !files.has(f)) out.push(`orphan volume ${f}`);
  for (const w of wantVolumes) if (!files.has(w)) out.push(`disk ${w} of a declared VM is missing`);
  for (const r of vmStatus.keys()) if (!decl.vms.has(r)) out.push(`status lists ${r}, which is not declared`);
  // Hosts: switched off <-> PoweredOff/Fenced; on -> Ready (Maintenance when declared so).
  for (const r of view.filter((x) => x.kind === "Host")) {
    const h = bed.hosts.find((x) => x.name === r.metadata.name) as BedHost | undefined;
    if (!h) continue;
    const on = h.poweredOn();
    const phase = r.status?.phase;
    const want = !on ? ["PoweredOff", "Fenced"] : maintenance.has(h.name) ? ["Maintenance"] : ["Ready"];
    if (!want.includes(phase ?? ""))
      out.push(`host ${h.name}: status ${phase}, reality ${on ? "on" : "off"}`);
  }
  // Snapshots: each declared one taken (status Succeeded) and in its VM's disk; none once seen lost.
  const statusOf = (kind: string, name: string) =>
    view.find((r) => r.kind === kind && r.metadata.name === name)?.status?.phase;
  const tagsByVm = new Map<string, string[] | undefined>();
  const tagsOf = async (vm: string) => {
    if (!tagsByVm.has(vm)) tagsByVm.set(vm, await bed.snapshotTags(volumeOf(vm)));
    return tagsByVm.get(vm);
  };
  for (const [snap, vm] of decl.snapshots) {
    if (!decl.vms.has(vm)) continue;
    const tags = await tagsOf(vm);
    const phase = statusOf("VirtualMachineSnapshot", snap);
    if (phase !== "Succeeded") out.push(`snapshot ${snap}: status ${phase}, want Succeeded`);
    if (!tags?.includes(snap)) out.push(`snapshot ${snap}: not in ${volumeOf(vm)} (tags ${tags?.join(",")})`);
  }
  for (const [vm, seen] of seenTags) {
    if (!decl.vms.has(vm)) continue;
    const tags = await tagsOf(vm);
    for (const t of seen) if (!tags?.includes(t)) out.push(`snapshot ${t} of ${vm} was seen and is gone`);
  }
  for (const r of decl.restores.keys()) {
    const phase = statusOf("VirtualMachineRestore", r);
    if (phase !== "Succeeded") out.push(`restore ${r}: status ${phase}, want Succeeded`);
  }
  return out;
}

export async function runScenario(
  bed: ChaosBed,
  scenario: Scenario,
  seed: number,
  opts: { log?: (s: string) => void; keepLogs?: boolean } = {},
): Promise<ScenarioResult> {
  const t0 = Date.now();
  const root = mkdtempSync(join(tmpdir(), `vw-chaos-${scenario.name}-${seed}-`));
  const stateDir = join(root, "state");
  mkdirSync(stateDir);
  const say = (s: string) =>
    opts.log?.(`[${scenario.name} seed ${seed} +${((Date.now() - t0) / 1000).toFixed(1)}s] ${s}`);
  await bed.reset();
  const decl: Decl = {
    hosts: bed.hosts.map((host) => ({ host })),
    vms: new Map(),
    snapshots: new Map(),
    restores: new Map(),
  };
  const m = new ManifestDir(join(root, "manifests"), decl);
  const ctl = new Controller({
    manifestDir: m.dir,
    stateDir,
    logFile: join(root, "controller.log"),
    ...(scenario.args ? { args: scenario.args } : {}),
  });
  const rng = prng(seed * 7919 + [...scenario.name].reduce((a, c) => a + c.charCodeAt(0), 0));
  const violations: string[] = [];
  const watcher = startWatcher(bed.hosts, { log: say, intervalMs: 100 });
  // Snapshot tags seen in the declared VMs' disks, as the scenario runs.
  const seenTags = new Map<string, Set<string>>();
  let tracking = true;
  const tracker = (async () => {
    while (tracking) {
      for (const vm of new Set(decl.snapshots.values())) {
        if (!decl.vms.has(vm)) continue;
        for (const t of (await bed.snapshotTags(volumeOf(vm))) ?? [])
          if (decl.snapshots.has(t)) seenTags.set(vm, (seenTags.get(vm) ?? new Set()).add(t));
      }
      await sleep(1000);
    }
  })();
  const restart = async (why: string) => {
    await ctl.kill();
    say(`SIGKILL (${why}); controller gone`);
    await sleep(rng() * 1500);
    ctl.start();
    if (rng() < 0.25) {
      // Killed again while it starts (store sync, first host contact, adoption).
      await sleep(rng() * 2000);
      await ctl.kill();
      say("SIGKILL while starting");
      await sleep(rng() * 500);
      ctl.start();
    }
  };
  const ctx: Ctx = {
    seed,
    rng,
    bed,
    m,
    ctl,
    log: say,
    powerManaged: false,
    pick: (xs) => xs[Math.floor(rng() * xs.length)] as (typeof xs)[number],
    pause: async (a, b) => {
      // Half the pauses hold a kill too, at a seeded point inside them.
      const total = (a + rng() * (b - a)) * 1000;
      if (rng() < 0.5) {
        const at = rng() * total;
        await sleep(at);
        const t = Date.now();
        await restart("during a pause");
        await sleep(Math.max(0, total - at - (Date.now() - t)));
      } else await sleep(total);
    },
    until: async (cond, ms) => {
      const deadline = Date.now() + ms;
      while (Date.now() < deadline) {
        if (await cond()) return true;
        await sleep(250);
      }
      return false;
    },
    running: () => {
      const out = new Map<string, string[]>();
      for (const [g, qs] of copiesByGuest(scanQemus(bed.hosts)))
        out.set(
          g,
          qs.map((q) => q.host),
        );
      return out;
    },
    view: () => readView(stateDir),
    act: async (what, fn) => {
      await fn();
      say(what);
      if (rng() < 0.75) {
        await sleep(rng() * 3000);
        await restart(`after ${what}`);
      } else await sleep(rng() * 3000);
    },
  };
  let convergeS: number | undefined;
  try {
    scenario.baseline(ctx);
    m.writeHosts();
    ctl.start();
    if (scenario.waitBaseline !== false) {
      const ok = await ctx.until(
        async () => (await problems(ctx, decl, stateDir, seenTags)).length === 0,
        BASELINE_BOUND_S * 1000,
      );
      if (!ok)
        throw new Error(
          `baseline did not converge within ${BASELINE_BOUND_S} s: ${(await problems(ctx, decl, stateDir, seenTags)).join("; ")}`,
        );
      say("baseline converged");
    }
    await scenario.run(ctx);
    // The faults stop: every host on (unless the controller manages power), link and libvirtd up.
    for (const h of bed.hosts) {
      if (h.linkIsDown) h.linkUp();
      if (!ctx.powerManaged && !h.poweredOn()) h.switchPower("on");
      if (h.poweredOn()) await h.startDaemon();
    }
    if (!ctl.running) ctl.start();
    const stopped = Date.now();
    say("faults stopped");
    let last: string[] = [];
    const ok = await ctx.until(async () => {
      last = await problems(ctx, decl, stateDir, seenTags);
      if (last.length === 0) return true;
      return false;
    }, CONVERGE_BOUND_S * 1000);
    if (ok) {
      convergeS = (Date.now() - stopped) / 1000;
      say(`converged ${convergeS.toFixed(1)} s after the faults stopped`);
      // Status from the CLI a user runs, once: the same as what the watcher sees.
      const { stdout } = await run(
        process.execPath,
        [
          "--import",
          "tsx",
          join(CONTROLLER_ROOT, "src/cli/main.ts"),
          "get",
          "vm",
          "-o",
          "json",
          "--state-dir",
          stateDir,
        ],
        { cwd: CONTROLLER_ROOT, encoding: "utf8", timeout: 60_000 },
      );
      const listed = JSON.parse(stdout) as ViewResource[];
      const running = ctx.running();
      for (const v of decl.vms.values()) {
        const r = listed.find((x) => x.metadata.name === v.name);
        const where = running.get(domainOf(v.name)) ?? [];
        if (!r) violations.push(`virtwarden get vm does not list ${v.name}`);
        else if (v.runStrategy === "Always" && (r.status?.phase !== "Running" || r.status.host !== where[0]))
          violations.push(
            `virtwarden get vm: ${v.name} ${r.status?.phase} on ${r.status?.host}, reality ${where.join(",")}`,
          );
      }
      if (listed.length !== decl.vms.size)
        violations.push(`virtwarden get vm lists ${listed.length} VMs, ${decl.vms.size} declared`);
    } else
      violations.push(`not converged ${CONVERGE_BOUND_S} s after the faults stopped: ${last.join("; ")}`);
    if (scenario.check) violations.push(...(await scenario.check(ctx)));
  } catch (e) {
    violations.push(`scenario error: ${(e as Error).stack ?? String(e)}`);
  } finally {
    tracking = false;
    await tracker;
    await watcher.stop();
    await ctl.stop();
  }
  violations.push(...watcher.violations, ...ctl.crashes);
  const result: ScenarioResult = {
    scenario: scenario.name,
    seed,
    kills: ctl.kills,
    starts: ctl.starts,
    samples: watcher.samples(),
    doubleQemuSamples: watcher.doubleQemuSamples(),
    violations,
    convergeS,
    wallS: (Date.now() - t0) / 1000,
    logDir: root,
  };
  if (violations.length === 0 && !opts.keepLogs && existsSync(root))
    rmSync(root, { recursive: true, force: true });
  return result;
}
