/**
 * schedule: auto on the simulator through the real Runtime, under a fake clock: a VM on a host
 * with a measured MTBF is checkpointed at once, then at the interval Daly's formula gives for the
 * measured checkpoint cost and that MTBF (the policy's status shows the inputs); when the host's
 * MTBF changes, the policy is re-timed (woken by the Host's status change, not by the test) and
 * the next checkpoint comes at the new interval, not the old one.
 *
 * The test is its own oracle: it computes C from the snapshots' recorded durations and Daly's
 * interval with its own copy of the formula, never with the code under test. The simulator's
 * snapshot latency (200 ms) makes C large enough that the interval lies between the bounds.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Host, SnapshotPolicy } from "../../../src/api/types.js";
import { NO_LATENCY, Simulator } from "../../../src/providers/sim/index.js";
import { eventually } from "../../support/eventually.js";
import { hostResource, vm } from "../../support/fixtures.js";
import { MemoryStore } from "../../support/memory-store.js";
import { simRuntime } from "../../support/sim-runtime.js";

const GiB = 1024 ** 3;
const DAY = 86_400;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Daly's interval, written out again here: √(2CM)(1 + ⅓√(C/2M) + (1/9)(C/2M)) − C, or M. */
function daly(c: number, m: number): number {
  if (c >= 2 * m) return m;
  const r = c / (2 * m);
  return Math.sqrt(2 * c * m) * (1 + Math.sqrt(r) / 3 + r / 9) - c;
}

describe("schedule: auto on the simulator", () => {
  it("checkpoints at the computed cadence, shows its inputs, and re-times when the host's MTBF changes", async () => {
    let now = new Date("2026-06-01T00:00:00Z");
    const clock = () => now;
    const sim = new Simulator({
      seed: 5,
      latency: {
        callMs: 0,
        defineMs: 0,
        startMs: 0,
        destroyMs: 0,
        guestShutdownMs: 0,
        snapshotMs: 200,
        saveMs: 0,
        restoreMs: 0,
        migrateMs: 0,
        volumeCreateMs: 0,
        jitter: 0,
      },
      baseImages: [{ pool: "default", name: "debian-12.qcow2", capacityBytes: 2 * GiB }],
    });
    const store = new MemoryStore(clock);
    sim.addHost("h0", { cpus: 16, memoryBytes: 32 * GiB });
    store.apply(hostResource("h0"));
    const rt = await simRuntime(sim, store, {
      now: clock,
      cleanups,
    });

    // What the host reliability accounting would write; rewritten if a host status write that
    // started before it lands after it.
    const reliability = (mtbfSeconds: number) => ({
      failures: 4,
      observedSeconds: 4 * mtbfSeconds + 600,
      upSeconds: 4 * mtbfSeconds,
      downSeconds: 600,
      mtbfSeconds,
      mttrSeconds: 150,
      availability: mtbfSeconds / (mtbfSeconds + 150),
      since: "2026-05-01T00:00:00.000Z",
      lastFailureTime: "2026-05-30T00:00:00.000Z",
    });
    const hostMtbf = () =>
      (store.get("Host", "h0")?.status as { reliability?: { mtbfSeconds?: number } } | undefined)?.reliability
        ?.mtbfSeconds;
    const writeMtbf = async (m: number) => {
      const h = store.get("Host", "h0") as Host;
      await store.updateStatus(h, {
        ...(h.status ?? {}),
        reliability: reliability(m),
      } as Host["status"] & {});
    };
    const cadence = () => store.get("SnapshotPolicy", "default/ckpt")?.status?.cadence?.[0];
    // The host's own reliability accounting keeps folding observed uptime into what the test
    // wrote (the fake clock moves by minutes): the MTBF the policy reads is the written one plus
    // that, never less, and within 1 % here. The expected interval is computed from the MTBF the
    // policy reports having used, checked to be that host figure.
    const near = (got: number | undefined, m: number) => got !== undefined && got >= m && got < m * 1.01;
    const settleMtbf = async (m: number) => {
      await eventually(() => {
        if (!near(hostMtbf(), m)) void writeMtbf(m);
        return near(cadence()?.mtbfSeconds, m) && cadence()?.mtbfSource === "measured";
      }, `policy sees MTBF ${m}`);
    };

    store.apply(
      vm("db")
        .labels({ tier: "db" })
        .spec({
          resources: { cpu: 1, memory: "1Gi" },
          disks: [{ name: "root", size: "4Gi", source: { image: { name: "debian-12.qcow2" } } }],
        })
        .build(),
    );
    await eventually(
      () => store.get("VirtualMachine", "default/db")?.status?.phase === "Running",
      "db running",
    );
    await writeMtbf(DAY);

    const policy: SnapshotPolicy = {
      apiVersion: "virtwarden.io/v1alpha1",
      kind: "SnapshotPolicy",
      metadata: { name: "ckpt", namespace: "default" },
      spec: {
        selector: { matchLabels: { tier: "db" } },
        schedule: "auto",
        type: "disk+memory",
        auto: { minInterval: "1m", maxInterval: "24h" },
      },
    };
    store.apply(policy);
    const mine = () =>
      store
        .list("VirtualMachineSnapshot")
        .filter((s) => s.spec.policy === "ckpt")
        .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
    const allDone = () => mine().every((s) => s.status?.phase === "Succeeded");

    // 1. No checkpoint yet: one at once.
    await eventually(() => mine().length === 1 && allDone(), "first checkpoint");
    expect(mine()[0]?.metadata.name).toBe("ckpt-db-202606010000");
    await settleMtbf(DAY);
    await eventually(
      () => cadence()?.formula === "Daly" && cadence()?.costSamples === 1,
      "cadence from one sample",
    );

    /** The interval the test expects from the checkpoints' recorded durations and M. */
    const expected = (m: number) => {
      const costs = mine().map((s) => s.status?.durationSeconds as number);
      for (const c of costs) expect(c).toBeGreaterThanOrEqual(0.2); // the simulated 200 ms
      const c = costs.reduce((a, b) => a + b, 0) / costs.length;
      return { c, interval: Math.min(Math.max(daly(c, m), 60), DAY) };
    };
    const check = (m: number) => {
      const got = cadence();
      expect(near(got?.mtbfSeconds, m)).toBe(true);
      const want = expected(got?.mtbfSeconds as number);
      expect(got).toMatchObject({
        target: "vm/db",
        hosts: ["h0"],
        mtbfSource: "measured",
        formula: "Daly",
        costSamples: mine().length,
      });
      expect(got?.costSeconds).toBeCloseTo(want.c, 5);
      expect(got?.intervalSeconds).toBeCloseTo(want.interval, 2);
      expect(got?.clamped).toBeUndefined();
      const newest = mine().at(-1)?.status?.creationTime as string;
      expect(got?.lastCheckpointTime).toBe(newest);
      expect(new Date(got?.nextRunTime as string).getTime()).toBe(
        new Date(newest).getTime() + Math.round((got?.intervalSeconds as number) * 1000),
      );
      return new Date(got?.nextRunTime as string);
    };
    const firstNext = check(DAY);
    // Daly for C ≈ 0.2 s and M = 1 d is ≈ 186 s: neither bound applies.
    expect(cadence()?.intervalSeconds).toBeGreaterThan(150);
    expect(cadence()?.intervalSeconds).toBeLessThan(300);

    /** Set the clock, wake the policy, and wait until it has handled the wake-up. */
    const tick = async (to: Date) => {
      now = to;
      rt.policies.enqueue("default/ckpt");
      await rt.policies.idle();
    };

    // 2. A minute before it is due: nothing (and the policy asks to be woken in a minute, real
    // time: after this test, so the wake-up in step 3 can only come from the Host). At the due
    // time: the second checkpoint.
    await tick(new Date(firstNext.getTime() - 60_000));
    expect(mine()).toHaveLength(1);
    await tick(firstNext);
    await eventually(() => mine().length === 2 && allDone(), "second checkpoint");
    expect(mine()[1]?.status?.creationTime).toBe(firstNext.toISOString());
    await eventually(() => cadence()?.costSamples === 2, "cadence from two samples");
    const secondNext = check(DAY);
    const oneDayInterval = cadence()?.intervalSeconds as number;

    // 3. The host's MTBF goes from 1 d to 4 d: re-timed without a wake-up from the test (every
    // earlier wake-up has been handled first, so only the Host's status change can do it).
    await rt.snapshots.idle();
    await rt.policies.idle();
    await settleMtbf(4 * DAY);
    const thirdNext = check(4 * DAY);
    const fourDayInterval = cadence()?.intervalSeconds as number;
    // Four times the MTBF: about twice the interval (√4), as Daly's formula says for C << M.
    expect(fourDayInterval / oneDayInterval).toBeGreaterThan(1.95);
    expect(fourDayInterval / oneDayInterval).toBeLessThan(2.05);
    expect(thirdNext.getTime()).toBeGreaterThan(secondNext.getTime());

    // At the old due time nothing is taken; at the new one the third checkpoint is.
    await tick(secondNext);
    expect(mine()).toHaveLength(2);
    await tick(new Date(thirdNext.getTime() - 1000));
    expect(mine()).toHaveLength(2);
    await tick(thirdNext);
    await eventually(() => mine().length === 3 && allDone(), "third checkpoint");
    expect(mine()[2]?.status?.creationTime).toBe(thirdNext.toISOString());
    expect(store.get("SnapshotPolicy", "default/ckpt")?.status?.snapshotsTaken).toBe(3);
  });
  it("re-times a VM that migrates: the new host's MTBF sets the interval", async () => {
    const now = new Date("2026-06-01T00:00:00Z");
    const clock = () => now;
    const sim = new Simulator({
      seed: 6,
      latency: { ...NO_LATENCY, snapshotMs: 200, migrateMs: 100 },
      baseImages: [{ pool: "default", name: "debian-12.qcow2", capacityBytes: 2 * GiB }],
    });
    const store = new MemoryStore(clock);
    const addHost = (name: string) => {
      sim.addHost(name, { cpus: 16, memoryBytes: 32 * GiB });
      store.apply(hostResource(name));
    };
    addHost("h0");
    const rt = await simRuntime(sim, store, {
      inventoryIntervalMs: 500,
      now: clock,
      cleanups,
    });
    store.apply(
      vm("db")
        .labels({ tier: "db" })
        .spec({
          resources: { cpu: 1, memory: "1Gi" },
          disks: [{ name: "root", size: "4Gi", source: { image: { name: "debian-12.qcow2" } } }],
        })
        .build(),
    );
    const placedOn = () => store.get("VirtualMachine", "default/db")?.status;
    await eventually(() => placedOn()?.phase === "Running" && placedOn()?.host === "h0", "db running on h0");
    addHost("h1");
    await eventually(() => store.list("Host").every((h) => h.status?.phase === "Ready"), "both hosts Ready");
    const mtbfOf = (name: string) =>
      (store.get("Host", name)?.status as { reliability?: { mtbfSeconds?: number } } | undefined)?.reliability
        ?.mtbfSeconds;
    const want = { h0: DAY, h1: 4 * DAY };
    const writeMtbfs = () => {
      for (const [name, m] of Object.entries(want)) {
        if (mtbfOf(name) === m) continue;
        const h = store.get("Host", name) as Host;
        void store.updateStatus(h, {
          ...(h.status ?? {}),
          reliability: {
            failures: 2,
            observedSeconds: 2 * m,
            upSeconds: 2 * m,
            downSeconds: 0,
            mtbfSeconds: m,
            since: "2026-05-01T00:00:00.000Z",
          },
        } as Host["status"] & {});
      }
    };
    store.apply({
      apiVersion: "virtwarden.io/v1alpha1",
      kind: "SnapshotPolicy",
      metadata: { name: "ckpt", namespace: "default" },
      spec: {
        selector: { matchLabels: { tier: "db" } },
        schedule: "auto",
        type: "disk+memory",
        auto: { minInterval: "1m", maxInterval: "24h" },
      },
    });
    const cadence = () => store.get("SnapshotPolicy", "default/ckpt")?.status?.cadence?.[0];
    await eventually(() => {
      writeMtbfs();
      return cadence()?.formula === "Daly" && cadence()?.mtbfSeconds === DAY;
    }, "cadence on h0 from the first checkpoint");
    const snap = store.list("VirtualMachineSnapshot").find((s) => s.spec.policy === "ckpt");
    const c = snap?.status?.durationSeconds as number;
    expect(cadence()).toMatchObject({ hosts: ["h0"], mtbfSource: "measured", costSamples: 1 });
    expect(cadence()?.intervalSeconds).toBeCloseTo(daly(c, DAY), 2);

    // Drain h0: the VM moves live to h1. Every earlier wake-up handled first, so only the VM's
    // new host can wake the policy.
    await rt.snapshots.idle();
    await rt.policies.idle();
    const h0 = store.get("Host", "h0") as Host;
    store.apply({
      ...h0,
      metadata: { ...h0.metadata, generation: (h0.metadata.generation ?? 1) + 1 },
      spec: { ...h0.spec, maintenance: true },
    });
    await eventually(() => placedOn()?.host === "h1" && placedOn()?.phase === "Running", "db migrated to h1");
    await eventually(() => cadence()?.hosts?.[0] === "h1", "policy re-timed for h1");
    expect(cadence()).toMatchObject({ hosts: ["h1"], mtbfSeconds: 4 * DAY, mtbfSource: "measured" });
    expect(cadence()?.intervalSeconds).toBeCloseTo(daly(c, 4 * DAY), 2);
    expect(cadence()?.nextRunTime).toBe(
      new Date(
        new Date(snap?.status?.creationTime as string).getTime() +
          Math.round((cadence()?.intervalSeconds as number) * 1000),
      ).toISOString(),
    );
  });
});
