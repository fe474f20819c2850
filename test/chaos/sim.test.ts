/**
 * Simulator chaos in CI: a fixed sample of seeded scenarios (faults mixed with user edits,
 * deletions, re-creations and controller kills, on the real Runtime and FileStore), every seed
 * that ever failed, and one minimal test per bug those seeds found. The full run is
 * `npm run chaos:sim -- --seeds 1000`; a failing seed prints its reproduction
 * (`npm run chaos:sim -- --seed N`) and its trace.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { manifestFiles } from "../../src/api/loader.js";
import { decideVM } from "../../src/reconcilers/virtualmachine/decide.js";
import { placementRequest } from "../../src/reconcilers/virtualmachine/placement-request.js";
import { renderDomain } from "../../src/reconcilers/virtualmachine/render.js";
import type { ObservedVM } from "../../src/reconcilers/virtualmachine/types.js";
import { FileStore } from "../../src/store/files/index.js";
import { vm } from "../support/fixtures.js";
import { runningCopies } from "./sim/invariants.js";
import { failureReport, runScenario, runSeeds, type SeedResult } from "./sim/runner.js";
import { generateScenario, type Scenario, type TimedAction, type VMDef } from "./sim/scenario.js";
import { ChaosWorld } from "./sim/world.js";

/**
 * Seeds 1..CI_SEEDS run on every CI run: 100 seeds took 53 s on the 2-core machine, 8 at a time
 * (the whole file 80 s); 150 keep the file near 2 minutes, under 3 while other suites run beside.
 */
const CI_SEEDS = 150;
/**
 * 8 at a time on 2 cores, beside the other suites, stretched each world's 50 ms heartbeat until
 * seeds failed that pass alone (109, 122 on 2026-12-02: a VM not running 30 s after the faults,
 * and once two copies — open, see the regression list). 4 at a time keeps CI's sample near the
 * timing the full `npm run chaos:sim` run sees; that run, not this sample, is where such seeds
 * are hunted.
 */
const CONCURRENCY = 4;

/**
 * Seeds run again with lost replies (a call carried out, its answer lost: the caller times out on
 * something that happened). `npm run chaos:sim -- --seeds 100 --lost-replies`: 0 failing on
 * 2026-12-03. A separate option, so the seeds above keep their scenarios.
 */
const LOST_REPLY_SEEDS = 30;

/** Every seed that once broke an invariant; what it found is in the comment. */
const REGRESSION_SEEDS: number[] = [
  // Deleted while the controller was down (or killed during its cleanup): the VM never came back
  // into the store, so its cleanup never ran and its disk leaked. Fixed by the FileStore keeping
  // each object's last declared form (the standalone store redesign).
  23, 32,
  // Created or removed while a restarted controller was starting: the FileStore read the
  // directory, then started a watcher that ignores what it finds initially; what changed in
  // between was never seen (src/store/files/directory.ts now reads once more after the watcher
  // is ready). Found with the first generator (before maintenance and disk policies joined the
  // mix, which changed every seed's timeline); the minimal tests below keep them.
  // A migration out of a host in maintenance finished while the controller was dead; then the
  // source lost power and was fenced: the VM was started a second time, beside the arrived copy
  // (decideHostFailure aborted the migration without looking at the target).
  134,
  // A dying controller's recovery start landed after its last status write; its successor
  // started the VM again on the recorded host (see the minimal test below).
  112,
  // Each failed once under load (8 runs at once), after the fixes above: 109 (a VM not running
  // 30 s after the faults stopped), 120 (two copies, no controller restart involved). Neither
  // came back in 24 and 96 repeats; kept here so that a recurrence fails CI, not silently.
  109, 120,
  // A crash restart held back while a host was not listed yet was counted again at every held
  // pass: one crash became a crash loop and the VM was stopped for good (1,000-seed run).
  40, 480, 568, 744, 910, 967,
  // A new VM started by a controller that died before recording it: placed again elsewhere.
  962,
  // Failed once in CI's sample under load on 2026-12-02, not in 11 repeats alone or 8 at once:
  // vm-3 running on h2 and h3 ~800 ms after the run converged, no controller restart. Open.
  122,
  // Failed once in the last 1,000-seed run, not in 8 repeats since: a VM created 20 ms after a
  // controller started and deleted 320 ms later stayed in the store (its removal was never seen;
  // the directory is only read again when a deletion is pending). Known, not fixed.
  486,
  // Failed once in a 150-seed run beside other suites on 2026-12-03, not in 30 repeats (24 at
  // 8 at once): vm-4 left shut off on h1 after h1's 326 ms power cycle (its fence agent broken
  // meanwhile), its status still Running on h1 with no event after the first start. Open.
  143,
];

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function expectAllHold(results: SeedResult[]): void {
  const failed = results.filter((r) => !r.ok);
  // The message is the reproduction line and trace of each failing seed.
  expect(failed.map(failureReport).join("\n\n")).toBe("");
  expect(results.every((r) => r.samples > 0)).toBe(true);
}

describe("simulator chaos", () => {
  it("a scenario is a pure function of its seed", () => {
    expect(generateScenario(77)).toEqual(generateScenario(77));
    expect(generateScenario(77)).not.toEqual(generateScenario(78));
  });

  it(`seeds 1..${CI_SEEDS}: never two running copies; after the faults stop, everything converges`, async () => {
    const seeds = Array.from({ length: CI_SEEDS }, (_, i) => i + 1);
    const results = await runSeeds(seeds, { concurrency: CONCURRENCY });
    expectAllHold(results);
    // The sample does exercise what it claims to.
    expect(results.reduce((a, r) => a + r.controllerRestarts, 0)).toBeGreaterThan(CI_SEEDS / 4);
  }, 600_000);

  it(`seeds 1..${LOST_REPLY_SEEDS} with lost replies: calls carried out whose answer never came`, async () => {
    const seeds = Array.from({ length: LOST_REPLY_SEEDS }, (_, i) => i + 1);
    const results = await runSeeds(seeds, { concurrency: CONCURRENCY, scenario: { lostReplies: true } });
    expectAllHold(results);
    const lost = seeds.flatMap((s) =>
      generateScenario(s, { lostReplies: true }).timeline.filter((t) => t.action.type === "lostReplies"),
    );
    expect(lost.length).toBeGreaterThan(LOST_REPLY_SEEDS / 8);
  }, 600_000);

  it("every seed that once failed holds now", async () => {
    const results = await runSeeds(REGRESSION_SEEDS, { concurrency: CONCURRENCY });
    expectAllHold(results);
  }, 600_000);
});

const vmDef = (name: string, extra: Partial<VMDef> = {}): VMDef => ({
  name,
  cpu: 1,
  memoryMiB: 512,
  runStrategy: "Always",
  ...extra,
});

/** A scenario written by hand: the shortest timeline that shows one bug. */
function script(hosts: number, initialVMs: VMDef[], timeline: TimedAction[]): Scenario {
  const end = Math.max(1, ...timeline.map((t) => Math.max(t.at, "until" in t.action ? t.action.until : 0)));
  return {
    seed: 0,
    hosts: Array.from({ length: hosts }, (_, i) => `h${i}`),
    initialVMs,
    timeline,
    chaosMs: end,
  };
}

async function expectHolds(s: Scenario): Promise<SeedResult> {
  const r = await runScenario(s);
  // On failure the message is the violations and the trace.
  expect(r.ok ? "" : failureReport(r)).toBe("");
  return r;
}

describe("the chaos harness itself", () => {
  it("a killed controller acts no more: a guest that crashes after the kill stays down until a new controller starts", async () => {
    const root = mkdtempSync(join(tmpdir(), "vw-chaos-kill-"));
    cleanups.push(() => rmSync(root, { recursive: true, force: true }));
    const world = new ChaosWorld(script(2, [vmDef("a")], []), root);
    try {
      const first = world.startController();
      await first.started;
      const running = () => runningCopies(world.sim, "a");
      for (let i = 0; i < 500 && running().length !== 1; i++) await new Promise((r) => setTimeout(r, 10));
      const [host] = running();
      expect(host).toBeDefined();
      world.killController();
      world.sim.crashDomain(host as string, "default_a");
      // Many heartbeats and resyncs of the dead controller's timers would have passed by now.
      await new Promise((r) => setTimeout(r, 1_000));
      expect(running()).toEqual([]);
      world.startController();
      for (let i = 0; i < 1000 && running().length !== 1; i++) await new Promise((r) => setTimeout(r, 10));
      expect(running()).toHaveLength(1);
    } finally {
      await world.shutdown();
    }
  });
});

describe("calls carried out, replies lost", () => {
  it("starts, defines and destroys on one host answer nothing half the time, across a controller kill and a host power loss", async () => {
    const r = await expectHolds(
      script(
        3,
        [vmDef("a"), vmDef("b"), vmDef("c", { diskPolicy: "Delete" })],
        [
          { at: 0, action: { type: "lostReplies", host: "h0", probability: 0.5, until: 1_600 } },
          {
            at: 0,
            action: { type: "lostReplies", host: "h1", op: "startDomain", probability: 0.7, until: 1_600 },
          },
          { at: 50, action: { type: "createVM", vm: vmDef("d") } },
          { at: 100, action: { type: "createVM", vm: vmDef("e") } },
          { at: 200, action: { type: "guestCrash", vm: "a" } },
          { at: 300, action: { type: "controllerRestart", until: 450 } },
          { at: 500, action: { type: "hostCrash", host: "h2", until: 1_000 } },
          { at: 700, action: { type: "deleteVM", vm: "c" } },
          { at: 900, action: { type: "guestCrash", vm: "b" } },
          { at: 1_100, action: { type: "controllerRestart", until: 1_200 } },
        ],
      ),
    );
    expect(r.controllerRestarts).toBe(2);
  }, 120_000);
});

describe("bugs the chaos seeds found", () => {
  it("a VM deleted while the controller is down is cleaned up after the restart: no orphan disk; a Retain disk stays", async () => {
    await expectHolds(
      script(
        2,
        [vmDef("gone"), vmDef("kept", { diskPolicy: "Retain" }), vmDef("stays")],
        [
          { at: 0, action: { type: "controllerRestart", until: 400 } },
          { at: 100, action: { type: "deleteVM", vm: "gone" } },
          { at: 150, action: { type: "deleteVM", vm: "kept" } },
        ],
      ),
    );
  });

  it("a VM whose manifest goes is cleaned up even when the controller is killed again and again meanwhile", async () => {
    // Deletion waits for the directory to settle (2 s): the kills land before, during and after
    // the cleanup.
    const kills: TimedAction[] = [1_900, 2_050, 2_200, 2_400, 2_700].map((at) => ({
      at,
      action: { type: "controllerRestart", until: at + 30 },
    }));
    await expectHolds(
      script(
        2,
        [vmDef("gone"), vmDef("stays")],
        [{ at: 0, action: { type: "deleteVM", vm: "gone" } }, ...kills],
      ),
    );
  });

  it("the source of a migration is fenced after the VM arrived on the target: the VM is followed there, not started again", () => {
    const v = vm("moving")
      .onHost("h3")
      .phase("Migrating")
      .status({
        migration: {
          reason: "Maintenance",
          sourceHost: "h3",
          targetHost: "h2",
          result: "InProgress",
          startedAt: "2026-06-01T11:59:58Z",
        },
      })
      .build();
    const desired = renderDomain(v);
    const key = "default/moving";
    const observed = (reachable: boolean): ObservedVM => ({
      key,
      vm: v,
      desired,
      assignedHost: "h3",
      hostHealth: "fenced",
      hostFailure: {
        lastHeartbeat: new Date("2026-06-01T11:59:59Z"),
        fencedAt: new Date("2026-06-01T12:00:00Z"),
      },
      domain: "unknown",
      // Not answering (observe.ts marks such a copy uncertain); a fenced target runs nothing.
      otherCopies: [{ host: "h2", reachable, running: true, ...(reachable ? {} : { uncertain: true }) }],
      placement: { request: placementRequest(key, v), candidates: [], placed: [] },
      lastEventAt: undefined,
      hasFinalizer: true,
    });
    const now = new Date("2026-06-01T12:00:01Z");
    const arrived = decideVM(observed(true), now);
    expect(arrived.actions.map((a) => a.type)).toEqual(["reserve"]);
    expect(arrived.actions[0]).toMatchObject({ host: "h2" });
    expect(arrived.status.host).toBe("h2");
    // The target holds a running copy but does not answer: nothing starts anywhere.
    const unreachable = decideVM(observed(false), now);
    expect(unreachable.actions.map((a) => a.type)).not.toContain("start");
    expect(unreachable.actions.map((a) => a.type)).not.toContain("reserve");
  });

  it("nothing starts while a copy may run on a host that does not answer, or that this controller never listed", () => {
    // Seed 112: a dying controller's recovery start landed on h1 after its last status write;
    // the next one found the VM shut off on its recorded host h0 and started it there, beside
    // h1's copy, because h1 (slow, its first contact failed) had never been listed, or because a
    // failed state query counted as "no such domain".
    const v = vm("twice")
      .onHost("h0")
      .phase("Running")
      .status({ specHash: "x" })
      .spec({ disks: [{ name: "root", size: "4Gi", source: { image: { name: "debian-12.qcow2" } } }] })
      .build();
    const desired = renderDomain(v);
    const key = "default/twice";
    const base: ObservedVM = {
      key,
      vm: v,
      desired,
      assignedHost: "h0",
      hostHealth: "ready",
      domain: { state: { state: "shutoff", reason: "unknown" }, spec: desired },
      otherCopies: [],
      placement: { request: placementRequest(key, v), candidates: [], placed: [] },
      lastEventAt: undefined,
      hasFinalizer: true,
    };
    const now = new Date("2026-06-01T12:00:01Z");
    const starts = (o: ObservedVM) => decideVM(o, now).actions.filter((a) => a.type === "start").length;
    expect(starts(base)).toBe(1);
    expect(
      starts({ ...base, otherCopies: [{ host: "h1", reachable: false, running: true, uncertain: true }] }),
    ).toBe(0);
    expect(starts({ ...base, unlistedHosts: ["h1"] })).toBe(0);
    const held = decideVM({ ...base, unlistedHosts: ["h1"] }, now);
    expect(held.summary.reason).toBe("CopyUncertain");
    expect(held.requeueAfterMs).toBeLessThanOrEqual(1_000);
    // Held, nothing is recorded either: a crash it would restart is not counted again each pass
    // (seed 480: one crash became a crash loop while a host was not listed yet).
    expect(held.status).toEqual(v.status);
    expect(held.events).toEqual([]);
  });

  it("manifests created and removed while a restarted controller starts are all applied", async () => {
    await expectHolds(
      script(
        2,
        [vmDef("old-0"), vmDef("old-1")],
        [
          { at: 0, action: { type: "controllerRestart", until: 10 } },
          { at: 15, action: { type: "createVM", vm: vmDef("new-0") } },
          { at: 30, action: { type: "deleteVM", vm: "old-0" } },
          { at: 45, action: { type: "createVM", vm: vmDef("new-1") } },
          { at: 60, action: { type: "recreateVM", vm: vmDef("old-1"), gapMs: 0 } },
          { at: 90, action: { type: "createVM", vm: vmDef("new-2") } },
        ],
      ),
    );
  });

  const scratch = () => {
    const d = mkdtempSync(join(tmpdir(), "vw-chaos-min-"));
    cleanups.push(() => rmSync(d, { recursive: true, force: true }));
    return d;
  };

  it("a manifest that disappears while the directory is being listed is skipped, not fatal", async () => {
    // A dangling link lists like a file and stats like one removed after the listing: the race of
    // a controller starting while a tool regenerates the directory, made deterministic.
    const dir = scratch();
    mkdirSync(join(dir, "vms"));
    writeFileSync(join(dir, "vms", "a.yaml"), "kind: VirtualMachine\n");
    symlinkSync(join(dir, "vms", "gone.yaml"), join(dir, "vms", "b.yaml"));
    await expect(manifestFiles([dir])).resolves.toEqual([join(dir, "vms", "a.yaml")]);
  });

  it("a manifest written while the store starts is applied", async () => {
    const vm = (n: string) =>
      `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: ${n}}\nspec:\n  resources: {cpu: 1, memory: 1Gi}\n`;
    for (let round = 0; round < 5; round++) {
      const root = scratch();
      const dir = join(root, "manifests");
      mkdirSync(dir);
      // Enough files that reading them all takes a while: the window between the read and the
      // watcher's readiness is where the new files land.
      for (let k = 0; k < 30; k++) writeFileSync(join(dir, `pre-${k}.yaml`), vm(`pre-${k}`));
      const store = new FileStore({ manifestDir: dir, stateDir: join(root, "state") });
      const starting = store.start();
      const delays = [0, 2, 5, 10, 20, 40];
      await Promise.all(
        delays.map(
          (d) =>
            new Promise<void>((r) =>
              setTimeout(() => {
                writeFileSync(join(dir, `new-${d}.yaml`), vm(`new-${d}`));
                r();
              }, d),
            ),
        ),
      );
      await starting;
      try {
        const missing = () =>
          delays.filter((d) => !store.list("VirtualMachine").some((v) => v.metadata.name === `new-${d}`));
        for (let i = 0; i < 300 && missing().length > 0; i++) await new Promise((r) => setTimeout(r, 10));
        expect(missing()).toEqual([]);
      } finally {
        await store.stop();
      }
    }
  });
});
