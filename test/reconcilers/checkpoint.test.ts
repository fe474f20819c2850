/**
 * onHostFailure: RestoreCheckpoint on the simulator: the VMs of a fenced host resume from their
 * latest memory+disk checkpoint on the surviving hosts (one restore for the whole group, members
 * reverted and resumed together) instead of booting; a VM without a checkpoint boots and says so.
 */
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import type { VirtualMachineSnapshot } from "../../src/api/types.js";
import { Runtime } from "../../src/cli/runtime.js";
import { silentLogger } from "../../src/controller/log.js";
import { createFenceAgentFactory } from "../../src/providers/fence/index.js";
import { Simulator, simulatorFactory } from "../../src/providers/sim/index.js";
import { hostResource, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";

const GiB = 1024 ** 3;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function eventually(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`not reached within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

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
    const rt = new Runtime({
      store,
      providerFactory: simulatorFactory(sim),
      fenceAgents: createFenceAgentFactory({
        readSecret: (ref) => store.readSecret(ref),
        simPower: sim,
        simHostName: (h) => h.spec.uri.replace("sim://", ""),
      }),
      registry: new Registry(),
      logger: silentLogger,
      heartbeatIntervalMs: 100,
    });
    cleanups.push(() => rt.stop(100));
    await rt.start();
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
});
