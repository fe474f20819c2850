/**
 * VirtualMachineClass end to end on the simulator: the real Runtime, an in-memory store. Sizes
 * are read from the simulator's own table of defined domains, never from virtwarden's status.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { VirtualMachine, VirtualMachineClass, VirtualMachineClassSpec } from "../../src/api/types.js";
import type { Runtime } from "../../src/cli/runtime.js";
import { Simulator } from "../../src/providers/sim/index.js";
import { eventually } from "../support/eventually.js";
import { hostResource, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";
import { simRuntime } from "../support/sim-runtime.js";

const GiB = 1024 ** 3;
let runtimes: Runtime[] = [];

afterEach(async () => {
  await Promise.all(runtimes.map((r) => r.stop(100)));
  runtimes = [];
});

function world(hosts = 2) {
  const sim = new Simulator({
    seed: 7,
    latency: "none",
    baseImages: [{ pool: "default", name: "base.qcow2", capacityBytes: 2 * GiB }],
  });
  const store = new MemoryStore();
  for (let i = 0; i < hosts; i++) {
    sim.addHost(`h${i}`, { cpus: 32, memoryBytes: 64 * GiB });
    store.apply(hostResource(`h${i}`, `sim://h${i}`, { zone: i === 0 ? "a" : "b" }));
  }
  return { sim, store };
}

async function start(sim: Simulator, store: MemoryStore): Promise<Runtime> {
  const rt = await simRuntime(sim, store, { inventoryIntervalMs: 500 });
  runtimes.push(rt);
  return rt;
}

function vmClass(name: string, spec: VirtualMachineClassSpec): VirtualMachineClass {
  return { apiVersion: "virtwarden.io/v1alpha1", kind: "VirtualMachineClass", metadata: { name }, spec };
}

function classVM(
  name: string,
  instanceType: string,
  patch: Partial<VirtualMachine["spec"]> = {},
): VirtualMachine {
  const v = vm(name)
    .spec({ instanceType, ...patch })
    .noFinalizer()
    .build();
  delete v.spec.resources;
  return v;
}

/** The domain as the simulator defined it, wherever it is. */
function defined(sim: Simulator, domain: string) {
  for (const h of sim.hosts()) {
    const d = h.domains.get(domain);
    if (d) return { host: h.name, ...d };
  }
  return undefined;
}

const condition = (store: MemoryStore, key: string, type: string) =>
  store.get("VirtualMachine", key)?.status?.conditions?.find((c) => c.type === type);

describe("scenario: VirtualMachineClass", () => {
  it("VMs naming a class are defined with its cpu and memory, and its placement default", async () => {
    const { sim, store } = world(2);
    store.apply(vmClass("compute", { cpu: 6, memory: "3Gi", placement: { hostSelector: { zone: "b" } } }));
    store.apply(classVM("c-0", "compute"));
    store.apply(classVM("c-1", "compute"));
    await start(sim, store);
    await eventually(
      () => sim.runningCopies("default_c-0").length === 1 && sim.runningCopies("default_c-1").length === 1,
      "both running",
    );
    for (const d of ["default_c-0", "default_c-1"]) {
      const dom = defined(sim, d);
      expect(dom?.spec.vcpus).toBe(6);
      expect(dom?.spec.memoryBytes).toBe(3 * GiB);
      expect(dom?.host).toBe("h1"); // the class's hostSelector: zone b only
    }
  });

  it("a class's default disks are its VMs' disks (cloned from the class's image); a VM's own list replaces them", async () => {
    const { sim, store } = world(1);
    store.apply(
      vmClass("std", {
        cpu: 1,
        memory: "1Gi",
        disks: [{ name: "root", size: "4Gi", source: { image: { name: "base.qcow2" } } }],
      }),
    );
    store.apply(classVM("d-0", "std"));
    store.apply(classVM("own", "std", { disks: [{ name: "scratch", size: "1Gi" }] }));
    await start(sim, store);
    await eventually(
      () => sim.runningCopies("default_d-0").length === 1 && sim.runningCopies("default_own").length === 1,
      "both running",
    );
    const volumes = sim.hosts()[0]?.pools.get("default")?.volumes;
    expect(volumes?.get("default_d-0-root.qcow2")?.backingPath).toContain("base.qcow2");
    expect(volumes?.has("default_own-root.qcow2")).toBe(false);
    expect(volumes?.has("default_own-scratch.qcow2")).toBe(true);
    expect(defined(sim, "default_d-0")?.spec.disks.map((d) => d.volume)).toEqual(["default_d-0-root.qcow2"]);
  });

  it("a VM's own placement overrides the class's", async () => {
    const { sim, store } = world(2);
    store.apply(vmClass("compute", { cpu: 1, memory: "1Gi", placement: { hostSelector: { zone: "b" } } }));
    store.apply(classVM("mine", "compute", { placement: { hostSelector: { zone: "a" } } }));
    await start(sim, store);
    await eventually(() => sim.runningCopies("default_mine").length === 1, "running");
    expect(defined(sim, "default_mine")?.host).toBe("h0");
  });

  it("a class change reaches its VMs by the restart rules: live within the maxima, else RestartRequired", async () => {
    const { sim, store } = world(1);
    store.apply(vmClass("elastic", { cpu: 1, memory: "1Gi", maxCpu: 4, maxMemory: "4Gi" }));
    store.apply(classVM("e-0", "elastic"));
    store.apply(classVM("other", "small"));
    await start(sim, store);
    await eventually(() => sim.runningCopies("default_e-0").length === 1, "running");
    await eventually(() => sim.runningCopies("default_other").length === 1, "other running");
    const dom = () => defined(sim, "default_e-0");
    expect(dom()?.starts).toBe(1);
    const otherBefore = structuredClone(defined(sim, "default_other")?.spec);

    // Within the maxima: changed on the running domain, not restarted.
    store.apply(vmClass("elastic", { cpu: 3, memory: "2Gi", maxCpu: 4, maxMemory: "4Gi" }));
    await eventually(() => dom()?.spec.vcpus === 3 && dom()?.spec.memoryBytes === 2 * GiB, "resized live");
    expect(dom()?.starts).toBe(1);

    // Beyond them: waits for a restart, named as the class's field; the domain is untouched.
    store.apply(vmClass("elastic", { cpu: 8, memory: "2Gi", maxCpu: 8, maxMemory: "4Gi" }));
    await eventually(
      () => condition(store, "default/e-0", "RestartRequired")?.status === "True",
      "RestartRequired",
    );
    expect(condition(store, "default/e-0", "RestartRequired")?.message).toMatch(/spec\.instanceType/);
    expect(dom()?.starts).toBe(1);
    expect(dom()?.spec.vcpus).toBe(3);
    // A VM of another class was not touched by any of this.
    expect(defined(sim, "default_other")?.spec).toEqual(otherBefore);
    expect(defined(sim, "default_other")?.starts).toBe(1);
  });

  it("updateStrategy Automatic: a class change beyond the maxima restarts the VM with the new size", async () => {
    const { sim, store } = world(1);
    store.apply(vmClass("fixed", { cpu: 1, memory: "1Gi" }));
    store.apply(classVM("f-0", "fixed", { updateStrategy: "Automatic" }));
    await start(sim, store);
    await eventually(() => sim.runningCopies("default_f-0").length === 1, "running");
    store.apply(vmClass("fixed", { cpu: 2, memory: "2Gi" }));
    await eventually(() => defined(sim, "default_f-0")?.starts === 2, "restarted", 20_000);
    await eventually(() => sim.runningCopies("default_f-0").length === 1, "running again");
    expect(defined(sim, "default_f-0")?.spec).toMatchObject({ vcpus: 2, memoryBytes: 2 * GiB });
  });

  it("a missing class: the VM waits with a condition naming it, nothing is defined; the class arriving starts it", async () => {
    const { sim, store } = world(1);
    store.apply(classVM("w-0", "gpu-large"));
    store.apply(classVM("ok", "small"));
    await start(sim, store);
    await eventually(() => sim.runningCopies("default_ok").length === 1, "the other VM runs");
    await eventually(
      () => condition(store, "default/w-0", "Ready")?.reason === "ClassNotFound",
      "ClassNotFound",
    );
    const ready = condition(store, "default/w-0", "Ready");
    expect(ready?.status).toBe("False");
    expect(ready?.message).toContain('VirtualMachineClass "gpu-large"');
    expect(condition(store, "default/w-0", "Scheduled")?.status).toBe("False");
    expect(defined(sim, "default_w-0")).toBeUndefined();
    const events = store.listEvents({ kind: "VirtualMachine", namespace: "default", name: "w-0" });
    expect(events.map((e) => e.reason)).toContain("ClassNotFound");
    // A built-in name still works with no class object: "small" is 1 vCPU, 1 GiB.
    expect(defined(sim, "default_ok")?.spec).toMatchObject({ vcpus: 1, memoryBytes: GiB });

    store.apply(vmClass("gpu-large", { cpu: 4, memory: "2Gi" }));
    await eventually(() => sim.runningCopies("default_w-0").length === 1, "started once its class exists");
    expect(defined(sim, "default_w-0")?.spec).toMatchObject({ vcpus: 4, memoryBytes: 2 * GiB });
    await eventually(() => condition(store, "default/w-0", "Ready")?.status === "True", "Ready");
  });

  it("a class deleted under a running VM: it keeps running as it was, and says which class it waits for", async () => {
    const { sim, store } = world(1);
    store.apply(vmClass("batch", { cpu: 2, memory: "1Gi" }));
    store.apply(classVM("b-0", "batch"));
    await start(sim, store);
    await eventually(() => sim.runningCopies("default_b-0").length === 1, "running");
    store.remove("VirtualMachineClass", "batch");
    await eventually(
      () => condition(store, "default/b-0", "Ready")?.reason === "ClassNotFound",
      "ClassNotFound",
    );
    expect(condition(store, "default/b-0", "Ready")?.message).toContain('"batch"');
    expect(sim.runningCopies("default_b-0")).toHaveLength(1);
    expect(defined(sim, "default_b-0")?.starts).toBe(1);
    // And it can still be deleted: deletion waits for no class.
    const v = store.get("VirtualMachine", "default/b-0") as VirtualMachine;
    store.apply({ ...v, metadata: { ...v.metadata, finalizers: ["virtwarden.io/cleanup"] } });
    store.remove("VirtualMachine", "default/b-0");
    await eventually(() => store.get("VirtualMachine", "default/b-0") === undefined, "deleted");
    expect(defined(sim, "default_b-0")).toBeUndefined();
  });
});
