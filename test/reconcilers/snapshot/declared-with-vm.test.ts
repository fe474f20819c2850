/**
 * A snapshot declared together with its VM (one directory applied at once): the VM is placed
 * before its domain exists, and the snapshot must wait for the domain rather than fail for good
 * ("Domain not found" from listSnapshots). Found by the real-bed chaos suite (crashloop scenario).
 */
import { afterEach, expect, it } from "vitest";
import type { Runtime } from "../../../src/cli/runtime.js";
import { NO_LATENCY, Simulator } from "../../../src/providers/sim/index.js";
import { hostResource, vm } from "../../support/fixtures.js";
import { MemoryStore } from "../../support/memory-store.js";
import { simRuntime } from "../../support/sim-runtime.js";

let rt: Runtime | undefined;
afterEach(async () => {
  await rt?.stop(100);
});

it("a snapshot applied with its VM is taken once the VM's domain exists, not failed", async () => {
  // Slow volume creation: the VM is placed (assigned a host) long before its domain is defined.
  const sim = new Simulator({
    seed: 5,
    latency: { ...NO_LATENCY, volumeCreateMs: 400, defineMs: 100 },
    baseImages: [{ pool: "default", name: "base.qcow2", capacityBytes: 1024 ** 3 }],
  });
  const store = new MemoryStore();
  sim.addHost("h0", { cpus: 8, memoryBytes: 16 * 1024 ** 3 });
  store.apply(hostResource("h0"));
  rt = await simRuntime(sim, store);
  store.apply(
    vm("db")
      .spec({
        resources: { cpu: 1, memory: "1Gi" },
        disks: [{ name: "root", size: "1Gi", source: { image: { name: "base.qcow2" } } }],
      })
      .build(),
  );
  store.apply({
    apiVersion: "virtwarden.io/v1alpha1",
    kind: "VirtualMachineSnapshot",
    metadata: { name: "first", namespace: "default" },
    spec: { vmName: "db", type: "disk" },
  });
  const phase = () => store.get("VirtualMachineSnapshot", "default/first")?.status?.phase;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && phase() !== "Succeeded" && phase() !== "Failed")
    await new Promise((r) => setTimeout(r, 20));
  expect(phase(), JSON.stringify(store.get("VirtualMachineSnapshot", "default/first")?.status)).toBe(
    "Succeeded",
  );
}, 60_000);
