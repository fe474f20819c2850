/**
 * Snapshots and restores on the simulator through the real Runtime: a VM snapshot and its
 * restore (to the snapshot's configuration, then the VM's spec again), a coordinated group with
 * its pause window, a restore on another host from shared storage, a failed snapshot, deletion
 * of the data with the resource, and a policy driven by a fake clock.
 */
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import type {
  SnapshotPolicy,
  VirtualMachineRestore,
  VirtualMachineSnapshot,
} from "../../../src/api/types.js";
import { Simulator } from "../../../src/providers/sim/index.js";
import { eventually } from "../../support/eventually.js";
import { hostResource, vm } from "../../support/fixtures.js";
import { MemoryStore } from "../../support/memory-store.js";
import { simRuntime } from "../../support/sim-runtime.js";

const GiB = 1024 ** 3;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function world(hosts: number, opts: { now?: () => Date } = {}) {
  const sim = new Simulator({
    seed: 3,
    latency: "none",
    baseImages: [{ pool: "default", name: "debian-12.qcow2", capacityBytes: 2 * GiB }],
  });
  const store = new MemoryStore(opts.now);
  for (let i = 0; i < hosts; i++) {
    sim.addHost(`h${i}`, { cpus: 16, memoryBytes: 32 * GiB });
    store.apply(hostResource(`h${i}`));
  }
  const registry = new Registry();
  const rt = await simRuntime(sim, store, {
    registry,
    ...(opts.now ? { now: opts.now } : {}),
    cleanups,
  });
  return { sim, store, rt, registry };
}

const app = (name: string, group?: string) =>
  vm(name)
    .labels({ tier: "db" })
    .spec({
      resources: { cpu: 1, memory: "1Gi" },
      disks: [{ name: "root", size: "4Gi", source: { image: { name: "debian-12.qcow2" } } }],
      ...(group ? { group } : {}),
    })
    .build();

const snapshotOf = (
  name: string,
  target: { vmName?: string; group?: string },
  type: "disk" | "disk+memory" = "disk",
): VirtualMachineSnapshot => ({
  apiVersion: "virtwarden.io/v1alpha1",
  kind: "VirtualMachineSnapshot",
  metadata: { name, namespace: "default" },
  spec: { ...target, type },
});

const restoreOf = (name: string, snapshotName: string, targetHost?: string): VirtualMachineRestore => ({
  apiVersion: "virtwarden.io/v1alpha1",
  kind: "VirtualMachineRestore",
  metadata: { name, namespace: "default" },
  spec: { snapshotName, ...(targetHost ? { targetHost } : {}) },
});

const running = (store: MemoryStore, names: string[]) =>
  names.every((n) => store.get("VirtualMachine", `default/${n}`)?.status?.phase === "Running");

describe("snapshots and restores on the simulator", () => {
  it("snapshots a VM, restores it, and brings the VM back to its spec and run strategy", async () => {
    const { sim, store } = await world(2);
    store.apply(app("db"));
    await eventually(() => running(store, ["db"]), "db running");
    const host = store.get("VirtualMachine", "default/db")?.status?.host as string;
    store.apply(snapshotOf("s1", { vmName: "db" }, "disk+memory"));
    await eventually(
      () => store.get("VirtualMachineSnapshot", "default/s1")?.status?.phase === "Succeeded",
      "taken",
    );
    const s1 = store.get("VirtualMachineSnapshot", "default/s1");
    expect(s1?.status).toMatchObject({
      readyToUse: true,
      host,
      healthy: true,
      members: [
        {
          vmName: "db",
          host,
          snapshotName: "s1",
          state: "running",
          disks: ["default/default_db-root.qcow2"],
        },
      ],
    });
    expect(s1?.metadata.finalizers).toContain("virtwarden.io/cleanup");
    const domain = sim.lookupHost(host)?.domains.get("default_db");
    expect(domain?.snapshots.map((s: { name: string }) => s.name)).toEqual(["s1"]);

    store.apply(restoreOf("r1", "s1"));
    await eventually(
      () => store.get("VirtualMachineRestore", "default/r1")?.status?.phase === "Succeeded",
      "restored",
    );
    expect(store.get("VirtualMachineRestore", "default/r1")?.status).toMatchObject({ host });
    // A memory snapshot resumes the guest from the snapshot (not a cold boot), and stays running.
    expect(sim.lookupHost(host)?.domains.get("default_db")?.state).toEqual({
      state: "running",
      reason: "unpaused",
    });
    await eventually(() => running(store, ["db"]), "db running after the restore");
    expect(
      store.listEvents({ kind: "VirtualMachine", namespace: "default", name: "db" }).map((e) => e.reason),
    ).toContain("Restored");

    // Deleting the snapshot deletes its data.
    store.remove("VirtualMachineSnapshot", "default/s1");
    await eventually(() => !store.get("VirtualMachineSnapshot", "default/s1"), "snapshot gone");
    expect(sim.lookupHost(host)?.domains.get("default_db")?.snapshots).toEqual([]);
  });

  it("pauses a group together, snapshots each member, resumes all, and reports the pause window", async () => {
    const { sim, store } = await world(2);
    const names = ["g0", "g1", "g2", "g3"];
    for (const n of names) store.apply(app(n, "shop"));
    await eventually(() => running(store, names), "group running");
    const states: string[] = [];
    const timer = setInterval(() => {
      for (const h of sim.hosts()) for (const d of h.domains.values()) states.push(d.state.state);
    }, 1);
    cleanups.push(() => clearInterval(timer));
    store.apply(snapshotOf("shop-1", { group: "shop" }));
    await eventually(
      () => store.get("VirtualMachineSnapshot", "default/shop-1")?.status?.phase === "Succeeded",
      "group taken",
    );
    const st = store.get("VirtualMachineSnapshot", "default/shop-1")?.status;
    expect(st?.members?.map((m) => m.vmName)).toEqual(names);
    expect(st?.pauseWindowSeconds).toBeGreaterThan(0);
    expect(st?.members?.every((m) => m.state === "paused")).toBe(true);
    await eventually(() => running(store, names), "group running again");
    for (const h of sim.hosts()) for (const d of h.domains.values()) expect(d.state.state).toBe("running");

    // Restore the group: all members back, running.
    store.apply(restoreOf("shop-r", "shop-1"));
    await eventually(
      () => store.get("VirtualMachineRestore", "default/shop-r")?.status?.phase === "Succeeded",
      "group restored",
    );
    await eventually(() => running(store, names), "group running after the restore");
  });

  it("restores on another host from shared storage, never leaving two copies", async () => {
    const { sim, store } = await world(2);
    store.apply(app("db"));
    await eventually(() => running(store, ["db"]), "db running");
    const from = store.get("VirtualMachine", "default/db")?.status?.host as string;
    const to = from === "h0" ? "h1" : "h0";
    store.apply(snapshotOf("s1", { vmName: "db" }, "disk+memory"));
    await eventually(
      () => store.get("VirtualMachineSnapshot", "default/s1")?.status?.phase === "Succeeded",
      "taken",
    );
    store.apply(restoreOf("r1", "s1", to));
    await eventually(
      () => store.get("VirtualMachineRestore", "default/r1")?.status?.phase === "Succeeded",
      "restored",
    );
    await eventually(
      () => store.get("VirtualMachine", "default/db")?.status?.host === to,
      "VM on the target",
    );
    await eventually(() => running(store, ["db"]), "running there");
    expect(sim.lookupHost(from)?.domains.has("default_db")).toBe(false);
    expect(sim.runningCopies("default_db")).toEqual([to]);
  });

  it("fails a restore with a member's copy on a host that does not answer before touching any member", async () => {
    const { sim, store, rt } = await world(3);
    store.apply(app("a", "g"));
    store.apply(app("b", "g"));
    await eventually(() => running(store, ["a", "b"]), "group running");
    store.apply(snapshotOf("s", { group: "g" }));
    await eventually(
      () => store.get("VirtualMachineSnapshot", "default/s")?.status?.phase === "Succeeded",
      "taken",
    );
    const used = new Set(["a", "b"].map((n) => store.get("VirtualMachine", `default/${n}`)?.status?.host));
    const away = ["h0", "h1", "h2"].find((h) => !used.has(h)) as string;
    // b's last listing on `away` shows a copy of it (shut off); then `away` stops answering.
    const own = rt.fleet.copiesOf("default/b")[0]?.domain;
    if (!own) throw new Error("b has no domain");
    rt.fleet.noteDomain(away, "default/b", { ...own, state: { state: "shutoff", reason: "destroyed" } });
    sim.partitionHost(away);
    await eventually(() => store.get("Host", away)?.status?.phase === "Unreachable", `${away} Unreachable`);
    const aHost = store.get("VirtualMachine", "default/a")?.status?.host as string;
    store.apply(restoreOf("r", "s"));
    await eventually(
      () => store.get("VirtualMachineRestore", "default/r")?.status?.phase === "Failed",
      "restore failed",
    );
    expect(store.get("VirtualMachineRestore", "default/r")?.status?.error).toBe(
      `b: a copy on ${away} cannot be checked (host unreachable, not fenced)`,
    );
    // Judged before anything was touched: a was neither stopped nor reverted (given the time).
    await new Promise((r) => setTimeout(r, 300));
    expect(sim.runningCopies("default_a")).toEqual([aHost]);
    // (A member reverted and left paused by the failed run would be resumed as drift.)
    expect(
      store.listEvents().filter((e) => e.regarding.name === "a" && e.reason === "DriftCorrected"),
    ).toEqual([]);
  });

  it("fails a snapshot cleanly, and a restore of a failed snapshot", async () => {
    const { sim, store } = await world(1);
    store.apply(app("db"));
    await eventually(() => running(store, ["db"]), "db running");
    sim.failOperations({ op: "createSnapshot", probability: 1 });
    store.apply(snapshotOf("bad", { vmName: "db" }));
    await eventually(
      () => store.get("VirtualMachineSnapshot", "default/bad")?.status?.phase === "Failed",
      "failed",
    );
    expect(store.get("VirtualMachineSnapshot", "default/bad")?.status?.error).toMatch(/db: .*injected/);
    store.apply(restoreOf("r", "bad"));
    await eventually(
      () => store.get("VirtualMachineRestore", "default/r")?.status?.phase === "Failed",
      "restore failed",
    );
    expect(store.get("VirtualMachineRestore", "default/r")?.status?.error).toMatch(/snapshot bad failed/);
    // The VM was not touched.
    expect(running(store, ["db"])).toBe(true);
    store.apply(snapshotOf("nobody", { vmName: "ghost" }));
    await eventually(
      () => store.get("VirtualMachineSnapshot", "default/nobody")?.status?.phase === "Failed",
      "no VM",
    );
    expect(store.get("VirtualMachineSnapshot", "default/nobody")?.status?.error).toMatch(/ghost not found/);
  });

  it("restores the latest healthy snapshot when a VM crash-loops (onCrashLoop RestoreLatestSnapshot)", async () => {
    const { sim, store } = await world(1);
    const v = app("flaky");
    v.spec.availability = {
      onCrashLoop: "RestoreLatestSnapshot",
      crashLoopThreshold: 3,
      restartBackoff: { initialSeconds: 0, maxSeconds: 0 },
    };
    store.apply(v);
    await eventually(() => running(store, ["flaky"]), "running");
    store.apply(snapshotOf("good", { vmName: "flaky" }));
    await eventually(
      () => store.get("VirtualMachineSnapshot", "default/good")?.status?.phase === "Succeeded",
      "taken",
    );
    expect(store.get("VirtualMachineSnapshot", "default/good")?.status?.healthy).toBe(true);
    const crashes = async (n: number) => {
      for (let i = 0; i < n; i++) {
        await eventually(() => sim.runningCopies("default_flaky").length === 1, "running again");
        sim.crashDomain("h0", "default_flaky");
        await eventually(() => sim.runningCopies("default_flaky").length === 0, "crashed");
      }
    };
    await crashes(3);
    await eventually(
      () => store.list("VirtualMachineRestore").some((r) => r.status?.phase === "Succeeded"),
      "crash-loop restore done",
    );
    const r = store.list("VirtualMachineRestore")[0];
    expect(r?.spec.snapshotName).toBe("good");
    expect(r?.metadata.labels?.["virtwarden.io/crashloop-of"]).toBe("flaky");
    await eventually(() => running(store, ["flaky"]), "running after the restore");
    expect(store.get("VirtualMachine", "default/flaky")?.status?.lastRecovery).toMatchObject({
      reason: "CrashLoopRestore",
      result: "Succeeded",
    });
    // It loops again at once: one restore per window, then it is stopped.
    await crashes(3);
    await eventually(
      () => store.get("VirtualMachine", "default/flaky")?.status?.phase === "CrashLoop",
      "stopped",
    );
    expect(store.list("VirtualMachineRestore")).toHaveLength(1);
    expect(
      store.get("VirtualMachine", "default/flaky")?.status?.conditions?.find((c) => c.type === "Synced")
        ?.message,
    ).toMatch(/crash-looped again after a snapshot restore/);
  });

  it("runs a policy on schedule under a fake clock, prunes, and never prunes the last good one", async () => {
    let now = new Date("2026-06-01T00:59:50Z");
    const clock = () => now;
    const { sim, store, rt, registry } = await world(1, { now: clock });
    store.apply(app("db"));
    await eventually(() => running(store, ["db"]), "db running");
    const policy: SnapshotPolicy = {
      apiVersion: "virtwarden.io/v1alpha1",
      kind: "SnapshotPolicy",
      metadata: { name: "hourly", namespace: "default" },
      spec: { selector: { matchLabels: { tier: "db" } }, schedule: "0 * * * *", retention: { keepLast: 2 } },
    };
    store.apply(policy);
    const mine = () => store.list("VirtualMachineSnapshot").filter((s) => s.spec.policy === "hourly");
    const done = () => mine().every((s) => s.status?.phase === "Succeeded" || s.status?.phase === "Failed");
    for (const hour of ["01", "02", "03"]) {
      now = new Date(`2026-06-01T${hour}:00:05Z`);
      rt.policies.enqueue("default/hourly");
      await eventually(
        () => mine().some((s) => s.metadata.name.endsWith(`${hour}00`)) && done(),
        `run ${hour}`,
      );
    }
    rt.policies.enqueue("default/hourly");
    await eventually(() => mine().length === 2, "pruned to keepLast 2");
    expect(
      mine()
        .map((s) => s.metadata.name)
        .sort(),
    ).toEqual(["hourly-db-202606010200", "hourly-db-202606010300"]);
    expect(
      sim
        .lookupHost("h0")
        ?.domains.get("default_db")
        ?.snapshots.map((s: { name: string }) => s.name)
        .sort(),
    ).toEqual(["hourly-db-202606010200", "hourly-db-202606010300"]);
    // The next runs fail: the good snapshots stay.
    sim.failOperations({ op: "createSnapshot", probability: 1 });
    for (const hour of ["04", "05", "06"]) {
      now = new Date(`2026-06-01T${hour}:00:05Z`);
      rt.policies.enqueue("default/hourly");
      await eventually(
        () => mine().some((s) => s.metadata.name.endsWith(`${hour}00`)) && done(),
        `run ${hour}`,
      );
    }
    rt.policies.enqueue("default/hourly");
    await eventually(
      () => store.get("SnapshotPolicy", "default/hourly")?.status?.snapshotsFailed === 3,
      "failures recorded",
    );
    const good = mine()
      .filter((s) => s.status?.phase === "Succeeded")
      .map((s) => s.metadata.name);
    expect(good.sort()).toEqual(["hourly-db-202606010200", "hourly-db-202606010300"]);
    const st = store.get("SnapshotPolicy", "default/hourly")?.status;
    expect(st?.lastSuccessfulTime).toBe("2026-06-01T03:00:05.000Z");
    expect(st?.conditions?.find((c) => c.type === "SnapshotsSucceeding")?.status).toBe("False");
    const text = await registry.metrics();
    expect(text).toMatch(/virtwarden_snapshots_total\{policy="default\/hourly",result="succeeded"\} 3/);
    expect(text).toMatch(/virtwarden_snapshots_total\{policy="default\/hourly",result="failed"\} 3/);
    expect(text).toMatch(/virtwarden_snapshot_newest_age_seconds\{policy="default\/hourly"\} 10800/);
  });
});
