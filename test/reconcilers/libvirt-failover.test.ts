import { afterEach, describe, expect, it } from "vitest";
import type { VirtualMachine } from "../../src/api/types.js";
import {
  eventually,
  type HaBedOptions,
  onHost,
  startHaBed,
  splitBrainWatcher as watchSplitBrain,
} from "../support/testbed/ha-bed.js";
import type { Testbed } from "../support/testbed/index.js";
import { guestsOf } from "../support/testbed/watch.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

/** The HA bed (test/support/testbed/ha-bed.ts), in this file's older call shape. */
const setup = (
  n: number,
  fencing: HaBedOptions["fencing"],
  extra: Partial<VirtualMachine["spec"]> = {},
  hostTweak: HaBedOptions["hostTweak"] = () => undefined,
) => startHaBed(cleanups, { vms: n, fencing, extra, hostTweak });
const splitBrainWatcher = (tb: Testbed) => watchSplitBrain(tb, cleanups);

describe("host failure on real libvirt hosts", () => {
  it("fences a powered-off host with the exec agent and runs its VMs elsewhere, once each", async () => {
    const { tb, store, running } = await setup(6, (h) => ({
      agent: "exec",
      command: h.fenceCommand,
      timeoutSeconds: 10,
    }));
    const victim = tb.hosts[0]?.name as string;
    expect(onHost(store, victim)).toHaveLength(6);
    const violations = splitBrainWatcher(tb);

    const t0 = Date.now();
    tb.hosts[0]?.powerOff();
    await eventually(
      () => onHost(store, victim).length === 0 && running().length === 6,
      "recovered on the other hosts",
    );
    console.log(`6 VMs running elsewhere ${Date.now() - t0} ms after the power-off`);
    const fencedAt = new Date(store.get("Host", victim)?.status?.fencedAt as string).getTime();
    for (const v of store.list("VirtualMachine")) {
      const r = v.status?.lastRecovery;
      const at = (s?: string) => (s ? new Date(s).getTime() - t0 : Number.NaN);
      console.log(
        `${v.metadata.name}: last beat ${at(r?.failedAt)} ms, fenced ${fencedAt - t0} ms, detected ${at(r?.detectedAt)} ms, running ${at(r?.finishedAt)} ms on ${r?.toHost}`,
      );
    }
    expect(store.get("Host", victim)?.status?.phase).toBe("Fenced");
    const guests = guestsOf(tb);
    for (const v of store.list("VirtualMachine")) {
      expect(v.status?.lastRecovery).toMatchObject({
        reason: "HostFailure",
        fromHost: victim,
        result: "Succeeded",
      });
      expect(guests.get(`default_${v.metadata.name}`)).toEqual([v.status?.host]);
    }
    expect(violations).toEqual([]);
  }, 180_000);

  it("keeps what does not fit waiting, and places it when the failed host returns", async () => {
    // 2-vCPU VMs; each survivor has room for one (2 CPUs, no CPU overcommit).
    const { tb, store, running } = await setup(
      4,
      (h) => ({ agent: "exec", command: h.fenceCommand, timeoutSeconds: 10 }),
      { resources: { cpu: 2, memory: "64Mi" } },
      (i, r) => {
        if (i > 0) r.spec.overcommit = { cpu: 1 };
      },
    );
    const victim = tb.hosts[0]?.name as string;
    const violations = splitBrainWatcher(tb);
    tb.hosts[0]?.powerOff();
    const waiting = () =>
      store
        .list("VirtualMachine")
        .filter((v) => v.status?.conditions?.some((c) => c.reason === "WaitingForCapacity"));
    const recovered = () => running().filter((v) => v.status?.host !== victim);
    await eventually(
      () => recovered().length === 2 && waiting().length === 2,
      "two recovered, two waiting",
      90_000,
    );
    for (const v of waiting()) {
      expect(v.status?.phase).toBe("Recovering");
      expect(v.status?.host).toBeUndefined();
      const ready = v.status?.conditions?.find((c) => c.type === "Ready");
      expect(ready?.message).toContain(`host ${victim} failed; no host can take the VM`);
    }
    expect(new Set(recovered().map((v) => v.status?.host)).size).toBe(2);
    // The failed host is powered on again: it is Ready, and the waiting VMs go there.
    const t0 = Date.now();
    await tb.hosts[0]?.powerOn();
    await eventually(() => running().length === 4, "all four running", 90_000);
    console.log(`waiting VMs running ${Date.now() - t0} ms after the failed host was powered on`);
    expect(store.get("Host", victim)?.status?.phase).toBe("Ready");
    const guests = guestsOf(tb);
    for (const v of store.list("VirtualMachine")) {
      expect(v.status?.lastRecovery).toMatchObject({
        reason: "HostFailure",
        fromHost: victim,
        result: "Succeeded",
      });
      expect(guests.get(`default_${v.metadata.name}`)).toEqual([v.status?.host]);
    }
    expect(onHost(store, victim)).toHaveLength(2);
    expect(violations).toEqual([]);
  }, 240_000);

  it("starts nothing elsewhere when the fence agent fails", async () => {
    const { tb, store } = await setup(2, () => ({
      agent: "exec",
      command: ["/bin/false"],
      timeoutSeconds: 5,
    }));
    const victim = tb.hosts[0]?.name as string;
    const violations = splitBrainWatcher(tb);
    tb.hosts[0]?.linkDown();
    await eventually(() => store.get("Host", victim)?.status?.phase === "Fencing", "Fencing");
    await new Promise((r) => setTimeout(r, 2_000));
    expect(onHost(store, victim)).toHaveLength(2);
    // The partitioned host's guests still run; nothing was started on the others.
    for (const [g, hosts] of guestsOf(tb)) expect(hosts, g).toEqual([victim]);
    expect(store.get("Host", victim)?.status?.conditions?.find((c) => c.type === "Fenced")?.reason).toBe(
      "FenceFailed",
    );
    tb.hosts[0]?.linkUp();
    await eventually(
      () => store.get("Host", victim)?.status?.phase === "Ready",
      "Ready after the link heals",
    );
    expect(violations).toEqual([]);
  }, 180_000);

  it("resumes a group from its memory checkpoint on the surviving hosts (RestoreCheckpoint)", async () => {
    const { tb, store, running, rt } = await setup(
      2,
      (h) => ({ agent: "exec", command: h.fenceCommand, timeoutSeconds: 10 }),
      { group: "mpi", availability: { onHostFailure: "RestoreCheckpoint" } },
    );
    const victim = tb.hosts[0]?.name as string;
    store.apply({
      apiVersion: "virtwarden.io/v1alpha1",
      kind: "VirtualMachineSnapshot",
      metadata: { name: "mpi-ckpt", namespace: "default" },
      spec: { group: "mpi", type: "disk+memory" },
    });
    await eventually(
      () => store.get("VirtualMachineSnapshot", "default/mpi-ckpt")?.status?.phase === "Succeeded",
      "checkpoint taken",
    );
    const violations = splitBrainWatcher(tb);
    tb.hosts[0]?.powerOff();
    await eventually(
      () => running().length === 2 && onHost(store, victim).length === 0,
      "both running elsewhere",
      120_000,
    );
    const restores = store.list("VirtualMachineRestore");
    expect(restores.map((r) => [r.spec.snapshotName, r.status?.phase])).toEqual([["mpi-ckpt", "Succeeded"]]);
    for (const v of store.list("VirtualMachine")) {
      const p = tb.hosts.find((h) => h.name === v.status?.host);
      expect(p, v.metadata.name).toBeDefined();
      expect(v.status?.lastRecovery).toMatchObject({
        reason: "HostFailure",
        fromHost: victim,
        result: "Succeeded",
      });
    }
    // Resumed from the checkpoint's memory (reason unpaused), not booted.
    for (const v of store.list("VirtualMachine")) {
      const state = await rt.fleet
        .connection(v.status?.host as string)
        ?.provider.getDomainState(`default_${v.metadata.name}`);
      expect(state, v.metadata.name).toEqual({ state: "running", reason: "unpaused" });
    }
    expect(violations).toEqual([]);
  }, 180_000);

  it("destroys the stale copies on a healed partitioned host before it is Ready", async () => {
    const { tb, store, running } = await setup(3, () => ({ agent: "manual", unsafeSkipFencing: true }));
    const victim = tb.hosts[0]?.name as string;
    tb.hosts[0]?.linkDown();
    await eventually(() => onHost(store, victim).length === 0, "reassigned without a fence");
    // unsafeSkipFencing: during the partition the old copies still run (what the option risks).
    // The shared disks are still locked by them, so QEMU refuses the new copies: the VMs stay
    // Recovering (not claimed Running) and their starts are retried.
    expect(tb.hosts[0]?.qemuPids().length).toBe(3);
    await new Promise((r) => setTimeout(r, 1_500));
    for (const v of store.list("VirtualMachine")) {
      expect(v.status?.phase, v.metadata.name).toBe("Recovering");
      expect(v.status?.lastRecovery?.result).toBe("InProgress");
      // QEMU's "Failed to get write lock" (libvirt includes QEMU's stderr only sometimes).
      expect(v.status?.conditions?.find((c) => c.type === "Synced")?.message).toMatch(/startDomain/);
    }
    tb.hosts[0]?.linkUp();
    await eventually(() => store.get("Host", victim)?.status?.phase === "Ready", "Ready after the heal");
    expect(tb.hosts[0]?.qemuPids()).toEqual([]);
    // Until here QEMU processes of the new copies appeared briefly and exited on the lock; from
    // now on no guest may have two processes at all.
    const violations = splitBrainWatcher(tb);
    await eventually(() => running().length === 3, "the new copies run once the stale ones are gone");
    const guests = guestsOf(tb);
    for (const v of store.list("VirtualMachine")) {
      expect(guests.get(`default_${v.metadata.name}`)).toEqual([v.status?.host]);
      expect(v.status?.lastRecovery).toMatchObject({ reason: "HostFailure", result: "Succeeded" });
    }
    expect(violations).toEqual([]);
  }, 180_000);
});
