/**
 * onHostFailure: RestoreCheckpoint on the simulator: the VMs of a fenced host resume from their
 * latest memory+disk checkpoint on the surviving hosts (one restore for the whole group, members
 * reverted and resumed together) instead of booting; a VM without a checkpoint boots and says so.
 */
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import type { VirtualMachineSnapshot } from "../../src/api/types.js";
import { Simulator } from "../../src/providers/sim/index.js";
import { eventually } from "../support/eventually.js";
import { hostResource, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";
import { simRuntime } from "../support/sim-runtime.js";

const GiB = 1024 ** 3;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe("checkpoint recovery after a host failure", () => {
  it("resumes a group from its checkpoint on the surviving hosts; a VM without one boots", async () => {
    const sim = new Simulator({
      seed: 9,
      latency: "none",
      baseImages: [{ pool: "default", name: "debian-12.qcow2", capacityBytes: 2 * GiB }],
    });
    const store = new MemoryStore();
    for (const h of ["h0", "h1", "h2"]) {
      sim.addHost(h, { cpus: 16, memoryBytes: 32 * GiB });
      const r = hostResource(h, `sim://${h}`, { "test/host": h });
      r.spec.fencing = { agent: "sim" };
      store.apply(r);
    }
    await simRuntime(sim, store, {
      fence: true,
      cleanups,
    });
    const names = ["mpi-0", "mpi-1", "solo"];
    for (const n of names) {
      store.apply(
        vm(n)
          .spec({
            runStrategy: "RerunOnFailure",
            resources: { cpu: 1, memory: "1Gi" },
            disks: [{ name: "root", size: "4Gi", source: { image: { name: "debian-12.qcow2" } } }],
            ...(n !== "solo" ? { group: "mpi" } : {}),
            placement: { hostSelector: { "test/host": "h0" } },
            availability: { onHostFailure: "RestoreCheckpoint" },
          })
          .build(),
      );
    }
    const phase = (n: string) => store.get("VirtualMachine", `default/${n}`)?.status?.phase;
    await eventually(() => names.every((n) => phase(n) === "Running"), "running on h0");
    for (const v of store.list("VirtualMachine")) {
      v.spec.placement = {};
      store.apply(v);
    }
    const ckpt: VirtualMachineSnapshot = {
      apiVersion: "virtwarden.io/v1alpha1",
      kind: "VirtualMachineSnapshot",
      metadata: { name: "mpi-ckpt", namespace: "default" },
      spec: { group: "mpi", type: "disk+memory" },
    };
    store.apply(ckpt);
    await eventually(
      () => store.get("VirtualMachineSnapshot", "default/mpi-ckpt")?.status?.phase === "Succeeded",
      "checkpoint",
    );

    sim.powerOff("h0");
    await eventually(() => store.get("Host", "h0")?.status?.phase === "Fenced", "h0 fenced");
    await eventually(
      () =>
        names.every(
          (n) => phase(n) === "Running" && store.get("VirtualMachine", `default/${n}`)?.status?.host !== "h0",
        ),
      "all running elsewhere",
    );
    const restores = store.list("VirtualMachineRestore");
    expect(restores).toHaveLength(1);
    expect(restores[0]?.spec.snapshotName).toBe("mpi-ckpt");
    expect(restores[0]?.status?.phase).toBe("Succeeded");
    for (const n of ["mpi-0", "mpi-1"]) {
      const v = store.get("VirtualMachine", `default/${n}`);
      const d = sim.lookupHost(v?.status?.host as string)?.domains.get(`default_${n}`);
      // Resumed from the checkpoint's memory, not booted.
      expect(d?.state, n).toEqual({ state: "running", reason: "unpaused" });
      expect(v?.status?.lastRecovery).toMatchObject({
        reason: "HostFailure",
        fromHost: "h0",
        result: "Succeeded",
      });
    }
    const solo = store.get("VirtualMachine", "default/solo");
    expect(sim.lookupHost(solo?.status?.host as string)?.domains.get("default_solo")?.state.reason).toBe(
      "booted",
    );
    expect(
      store.listEvents({ kind: "VirtualMachine", namespace: "default", name: "solo" }).map((e) => e.reason),
    ).toContain("NoCheckpoint");
    for (const n of names) expect(sim.runningCopies(`default_${n}`)).toHaveLength(1);
  });

  it("records the work lost: the failure (last heartbeat) minus the checkpoint's time, as status and metric", async () => {
    // The controller's clock is the test's: it stands still except when the test moves it, so
    // the checkpoint is taken at T1 and the host's last heartbeat before it dies is at T2.
    const T1 = Date.now() - 3_600_000;
    const WORK_S = 2_700; // 45 min of work between the checkpoint and the failure
    const T2 = T1 + WORK_S * 1000;
    let clock = T1;
    const sim = new Simulator({
      seed: 11,
      latency: "none",
      baseImages: [{ pool: "default", name: "debian-12.qcow2", capacityBytes: 2 * GiB }],
    });
    const store = new MemoryStore();
    for (const h of ["h0", "h1"]) {
      sim.addHost(h, { cpus: 16, memoryBytes: 32 * GiB });
      const r = hostResource(h, `sim://${h}`, { "test/host": h });
      r.spec.fencing = { agent: "sim" };
      store.apply(r);
    }
    const registry = new Registry();
    const rt = await simRuntime(sim, store, {
      fence: true,
      registry,
      now: () => new Date(clock),
      cleanups,
    });
    store.apply(
      vm("job")
        .spec({
          runStrategy: "RerunOnFailure",
          resources: { cpu: 1, memory: "1Gi" },
          disks: [{ name: "root", size: "4Gi", source: { image: { name: "debian-12.qcow2" } } }],
          placement: { hostSelector: { "test/host": "h0" } },
          availability: { onHostFailure: "RestoreCheckpoint" },
        })
        .build(),
    );
    const job = () => store.get("VirtualMachine", "default/job");
    await eventually(() => job()?.status?.phase === "Running", "job running on h0");
    const v = job();
    if (!v) throw new Error("no job");
    v.spec.placement = {};
    store.apply(v);
    store.apply({
      apiVersion: "virtwarden.io/v1alpha1",
      kind: "VirtualMachineSnapshot",
      metadata: { name: "job-ckpt", namespace: "default" },
      spec: { vmName: "job", type: "disk+memory" },
    });
    await eventually(
      () => store.get("VirtualMachineSnapshot", "default/job-ckpt")?.status?.phase === "Succeeded",
      "checkpoint",
    );
    expect(store.get("VirtualMachineSnapshot", "default/job-ckpt")?.status?.creationTime).toBe(
      new Date(T1).toISOString(),
    );
    clock = T2;
    // A beat answered at T2: that is the last heartbeat the failure is timed from.
    await eventually(() => rt.fleet.connection("h0")?.lastHeartbeat?.getTime() === T2, "a beat at T2");
    sim.powerOff("h0");
    await eventually(
      () =>
        job()?.status?.phase === "Running" &&
        job()?.status?.host === "h1" &&
        job()?.status?.lastRecovery?.result === "Succeeded",
      "job resumed on h1",
    );
    const d = sim.lookupHost("h1")?.domains.get("default_job");
    expect(d?.state).toEqual({ state: "running", reason: "unpaused" }); // from the checkpoint
    expect(job()?.status?.lastRecovery).toMatchObject({
      reason: "HostFailure",
      fromHost: "h0",
      failedAt: new Date(T2).toISOString(),
      checkpoint: "job-ckpt",
      lostWorkSeconds: WORK_S,
    });
    const text = await registry.metrics();
    expect(text).toContain(`virtwarden_recovery_lost_work_seconds_sum ${WORK_S}`);
    expect(text).toContain("virtwarden_recovery_lost_work_seconds_count 1");
    expect(text).toContain('virtwarden_recovery_lost_work_seconds_bucket{le="1800"} 0');
    expect(text).toContain('virtwarden_recovery_lost_work_seconds_bucket{le="3600"} 1');
  });
});
