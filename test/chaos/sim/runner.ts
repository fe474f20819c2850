/**
 * Plays one seed: the world and a first controller come up and converge, the timeline of faults
 * and user actions plays in real time (heartbeats at 50 ms make a host failure a ~150 ms affair),
 * then the faults stop and the run waits, within CONVERGE_BOUND_MS, for every convergence
 * invariant to hold — twice, 250 ms apart, so a state that only flickers through does not count.
 * The safety watcher samples the world throughout.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { convergenceProblems, runningCopies, SafetyWatcher } from "./invariants.js";
import { describeAction, generateScenario, type Scenario, type ScenarioOptions } from "./scenario.js";
import { ChaosWorld } from "./world.js";

/** Once the faults stop, everything must hold within this (simulated = real time here). */
export const CONVERGE_BOUND_MS = 30_000;
/** The first controller on a fresh world gets this long to bring the initial VMs up. */
const INITIAL_BOUND_MS = 15_000;
const STABLE_MS = 250;

export interface SeedResult {
  seed: number;
  ok: boolean;
  violations: string[];
  /** Timeline entries played (faults and user actions). */
  events: number;
  controllerRestarts: number;
  samples: number;
  /** From "faults stopped" to "every invariant holds", ms. */
  convergeMs: number;
  wallMs: number;
  /** What happened, with the real offsets at which it was played. */
  trace: string[];
  /**
   * For a failing seed, per VM its violations name: domains per host, its status in the last
   * controller's store, and the controllers' log lines about it (empty when the seed held).
   */
  diagnosis: string[];
}

/** The VM names (vm-N) a list of violations mentions, once each. */
export function vmsNamed(lines: readonly string[]): string[] {
  return [...new Set(lines.flatMap((l) => l.match(/\bvm-\d+\b/g) ?? []))];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** State dirs on tmpfs where there is one: the real journal and its fsyncs, without the disk. */
function scratch(): string {
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  return mkdtempSync(join(base, "vw-chaos-sim-"));
}

/**
 * Waits for every convergence invariant. With `operator`, a host found without power (fenced after
 * the faults stopped) is switched on again 200 ms later, as whoever repairs hosts would.
 */
async function converge(
  world: ChaosWorld,
  boundMs: number,
  operator: boolean,
  note: (line: string) => void = () => {},
): Promise<{ ok: boolean; problems: string[] }> {
  const deadline = Date.now() + boundMs;
  let problems: string[] = [];
  const offSince = new Map<string, number>();
  while (Date.now() < deadline) {
    if (operator)
      for (const h of world.sim.hosts()) {
        if (h.powered) offSince.delete(h.name);
        else if (!offSince.has(h.name)) offSince.set(h.name, Date.now());
        else if (Date.now() - (offSince.get(h.name) ?? 0) >= 200) {
          world.recoverHost(h.name);
          world.operatorPowerOns++;
          note(`operator switches ${h.name} on again (it was fenced)`);
        }
      }
    problems = convergenceProblems(world.sim, world.declared, world.controller?.store, world.retainedDisks);
    if (problems.length === 0) {
      await sleep(STABLE_MS);
      problems = convergenceProblems(world.sim, world.declared, world.controller?.store, world.retainedDisks);
      if (problems.length === 0) return { ok: true, problems };
    }
    await sleep(25);
  }
  return { ok: false, problems };
}

export function runSeed(seed: number, opts: ScenarioOptions = {}): Promise<SeedResult> {
  return runScenario(generateScenario(seed, opts));
}

/** Plays a scenario: a generated one, or one written by hand (the minimal test of a bug). */
export async function runScenario(scenario: Scenario): Promise<SeedResult> {
  const wall = Date.now();
  const seed = scenario.seed;
  const root = scratch();
  const world = new ChaosWorld(scenario, root);
  const trace: string[] = [];
  const diagnosis: string[] = [];
  const violations: string[] = [];
  const t0 = Date.now();
  const note = (line: string) => trace.push(`[${Date.now() - t0}ms] ${line}`);
  const watcher = new SafetyWatcher(world.sim, t0);
  watcher.start();
  let convergeMs = 0;
  try {
    world.startController();
    note(
      `t0 ${new Date(t0).toISOString()}; hosts ${scenario.hosts.join(",")}; VMs ${scenario.initialVMs.map((v) => v.name).join(",")}`,
    );
    const initial = await converge(world, INITIAL_BOUND_MS, false);
    if (!initial.ok) violations.push(...initial.problems.map((p) => `initial convergence: ${p}`));
    note("initial state converged; chaos starts");
    const chaosStart = Date.now();

    type Step = { at: number; label: string; run: () => void };
    const steps: Step[] = [];
    for (const t of scenario.timeline) {
      const a = t.action;
      const label = describeAction(t);
      switch (a.type) {
        case "hostCrash":
          steps.push({ at: t.at, label, run: () => world.sim.crashHost(a.host) });
          steps.push({ at: a.until, label: `host ${a.host} back`, run: () => world.recoverHost(a.host) });
          break;
        case "partition":
        case "libvirtdRestart":
          steps.push({ at: t.at, label, run: () => world.sim.partitionHost(a.host) });
          steps.push({
            at: a.until,
            label: `host ${a.host} reachable`,
            run: () => world.recoverHost(a.host),
          });
          break;
        case "slowCalls":
        case "failingCalls":
        case "lostReplies": {
          let id = 0;
          const kind = a.type === "slowCalls" ? "slow" : a.type === "failingCalls" ? "failing" : "lost";
          steps.push({
            at: t.at,
            label,
            run: () => (id = world.addCallFault(kind, a.host, a.op, a.probability)),
          });
          steps.push({
            at: a.until,
            label: `${kind} calls on ${a.host} end`,
            run: () => world.removeCallFault(id),
          });
          break;
        }
        case "fenceFailure":
          steps.push({ at: t.at, label, run: () => world.breakFencing(a.host, true) });
          steps.push({
            at: a.until,
            label: `fencing of ${a.host} works`,
            run: () => world.breakFencing(a.host, false),
          });
          break;
        case "guestCrash":
          steps.push({
            at: t.at,
            label,
            run: () => {
              const on = runningCopies(world.sim, a.vm).filter((h) =>
                world.sim
                  .hosts()
                  .find((x) => x.name === h)
                  ?.domains.has(`default_${a.vm}`),
              );
              for (const h of on) world.sim.crashDomain(h, `default_${a.vm}`);
              if (on.length === 0) note(`  (${a.vm} runs nowhere: nothing crashed)`);
            },
          });
          break;
        case "maintenance":
          steps.push({ at: t.at, label, run: () => world.setMaintenance(a.host, true) });
          steps.push({
            at: a.until,
            label: `${a.host} out of maintenance`,
            run: () => world.setMaintenance(a.host, false),
          });
          break;
        case "controllerRestart":
          steps.push({ at: t.at, label, run: () => world.killController() });
          steps.push({ at: a.until, label: "controller starts", run: () => world.startController() });
          break;
        case "createVM":
        case "editVM":
          steps.push({ at: t.at, label, run: () => world.writeVM(a.vm) });
          break;
        case "deleteVM":
          steps.push({ at: t.at, label, run: () => world.removeVM(a.vm) });
          break;
        case "recreateVM":
          steps.push({ at: t.at, label, run: () => world.removeVM(a.vm.name) });
          steps.push({
            at: t.at + a.gapMs,
            label: `  ${a.vm.name} written again`,
            run: () => world.writeVM(a.vm),
          });
          break;
      }
    }
    // Stable: an end and a start at the same offset play in timeline order.
    steps.sort((x, y) => x.at - y.at);
    for (const s of steps) {
      const wait = chaosStart + s.at - Date.now();
      if (wait > 0) await sleep(wait);
      note(s.label);
      s.run();
    }
    const rest = chaosStart + scenario.chaosMs - Date.now();
    if (rest > 0) await sleep(rest);

    world.stopFaults();
    world.endMaintenance();
    if (!world.controller) world.startController();
    note("faults stopped");
    const stopped = Date.now();
    const end = await converge(world, CONVERGE_BOUND_MS, true, note);
    convergeMs = Date.now() - stopped;
    if (!end.ok)
      violations.push(
        ...end.problems.map(
          (p) => `not converged ${CONVERGE_BOUND_MS / 1000} s after the faults stopped: ${p}`,
        ),
      );
    else note(`converged ${convergeMs}ms after the faults stopped`);
  } catch (e) {
    violations.push(`run failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  } finally {
    watcher.stop();
    const named = vmsNamed([...watcher.violations, ...violations]);
    if (named.length > 0) diagnosis.push(...world.diagnosis(named, t0));
    await world.shutdown();
    rmSync(root, { recursive: true, force: true });
  }
  violations.unshift(...watcher.violations.map((v) => `two running copies: ${v}`), ...world.startFailures);
  return {
    seed,
    ok: violations.length === 0,
    violations,
    events: scenario.timeline.length,
    controllerRestarts: world.restarts,
    samples: watcher.samples,
    convergeMs,
    wallMs: Date.now() - wall,
    trace,
    diagnosis,
  };
}

/** Seeds through a pool of `concurrency` runs at once (they are mostly waiting on timers). */
export async function runSeeds(
  seeds: number[],
  opts: { concurrency?: number; scenario?: ScenarioOptions; onResult?: (r: SeedResult) => void } = {},
): Promise<SeedResult[]> {
  const results: SeedResult[] = [];
  let next = 0;
  const worker = async () => {
    while (next < seeds.length) {
      const seed = seeds[next++] as number;
      const r = await runSeed(seed, opts.scenario);
      results.push(r);
      opts.onResult?.(r);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, worker));
  return results.sort((a, b) => a.seed - b.seed);
}

/** What a failing seed prints: the one-line reproduction, the violations, the trace. */
export function failureReport(r: SeedResult): string {
  return [
    `seed ${r.seed} FAILED — reproduce with: npm run chaos:sim -- --seed ${r.seed}`,
    ...r.violations.map((v) => `  violation: ${v}`),
    "  trace:",
    ...r.trace.map((t) => `    ${t}`),
    ...(r.diagnosis.length > 0 ? ["  at the end:", ...r.diagnosis.map((d) => `    ${d}`)] : []),
  ].join("\n");
}
