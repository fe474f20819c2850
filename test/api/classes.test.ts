/**
 * VirtualMachineClass resolution (src/api/classes.ts): merge rules, which side wins, built-in
 * sizes standing in for missing objects, and a missing class named. Expected specs are written
 * out by hand, not computed with the code under test.
 */
import { describe, expect, it } from "vitest";
import { type ClassLookup, lookupClass, resolveSpec } from "../../src/api/classes.js";
import type { VirtualMachineClassSpec, VirtualMachineSpec } from "../../src/api/types.js";

const gpuClass: VirtualMachineClassSpec = {
  cpu: 8,
  memory: "32Gi",
  maxCpu: 16,
  disks: [{ name: "root", size: "40Gi", source: { image: { name: "cuda.qcow2" } } }],
  placement: { hostSelector: { gpu: "yes" }, strategy: "pack" },
  availability: { priority: 700, restartBackoff: { initialSeconds: 5, maxSeconds: 60 }, onCrashLoop: "Stop" },
  migration: { live: false, timeoutSeconds: 120 },
};
const classes =
  (objects: Record<string, VirtualMachineClassSpec>): ClassLookup =>
  (name) =>
    Object.hasOwn(objects, name) ? objects[name] : undefined;

describe("resolveSpec", () => {
  it("a VM with its own resources is left as it is, classes or not", () => {
    const spec: VirtualMachineSpec = { resources: { cpu: 3, memory: "3Gi" } };
    const r = resolveSpec(spec, classes({ gpu: gpuClass }));
    expect(r.spec).toBe(spec);
    expect(r.from).toBe("resources");
  });

  it("a VM naming a class gets its size and every default it leaves unset", () => {
    const r = resolveSpec({ instanceType: "gpu", runStrategy: "Always" }, classes({ gpu: gpuClass }));
    expect(r.from).toBe("class");
    expect(r.spec).toEqual({
      instanceType: "gpu",
      runStrategy: "Always",
      resources: { cpu: 8, memory: "32Gi", maxCpu: 16 },
      disks: [{ name: "root", size: "40Gi", source: { image: { name: "cuda.qcow2" } } }],
      placement: { hostSelector: { gpu: "yes" }, strategy: "pack" },
      availability: {
        priority: 700,
        restartBackoff: { initialSeconds: 5, maxSeconds: 60 },
        onCrashLoop: "Stop",
      },
      migration: { live: false, timeoutSeconds: 120 },
    });
  });

  const rows: { title: string; vm: Partial<VirtualMachineSpec>; want: Partial<VirtualMachineSpec> }[] = [
    {
      title: "the VM's disks replace the class's as a whole list",
      vm: { disks: [{ name: "data", size: "1Gi" }] },
      want: { disks: [{ name: "data", size: "1Gi" }] },
    },
    { title: "an empty disk list is the VM's say too: no disks", vm: { disks: [] }, want: { disks: [] } },
    {
      title: "placement merges field by field, the VM's field winning",
      vm: { placement: { strategy: "spread", antiAffinity: [{ selector: { matchLabels: { app: "x" } } }] } },
      want: {
        placement: {
          hostSelector: { gpu: "yes" },
          strategy: "spread",
          antiAffinity: [{ selector: { matchLabels: { app: "x" } } }],
        },
      },
    },
    {
      title: "the VM's hostSelector replaces the class's (a map is one field, not merged key by key)",
      vm: { placement: { hostSelector: { rack: "r1" } } },
      want: { placement: { hostSelector: { rack: "r1" }, strategy: "pack" } },
    },
    {
      title: "availability merges field by field, and restartBackoff inside it",
      vm: { availability: { priority: 50, restartBackoff: { maxSeconds: 600 } } },
      want: {
        availability: {
          priority: 50,
          restartBackoff: { initialSeconds: 5, maxSeconds: 600 },
          onCrashLoop: "Stop",
        },
      },
    },
    {
      title: "migration merges field by field",
      vm: { migration: { live: true } },
      want: { migration: { live: true, timeoutSeconds: 120 } },
    },
  ];
  for (const row of rows) {
    it(row.title, () => {
      const r = resolveSpec({ instanceType: "gpu", ...row.vm }, classes({ gpu: gpuClass }));
      expect(r.spec).toMatchObject(row.want);
      // The size always comes from the class.
      expect(r.spec?.resources).toEqual({ cpu: 8, memory: "32Gi", maxCpu: 16 });
      for (const [field, value] of Object.entries(row.want))
        expect(r.spec?.[field as keyof VirtualMachineSpec]).toEqual(value);
    });
  }

  it("does not change the class it read from (two VMs of one class stay independent)", () => {
    const before = structuredClone(gpuClass);
    resolveSpec({ instanceType: "gpu", availability: { priority: 1 } }, classes({ gpu: gpuClass }));
    expect(gpuClass).toEqual(before);
  });

  it("a built-in name with no object is the built-in size, with no other defaults", () => {
    const r = resolveSpec({ instanceType: "medium" }, classes({}));
    expect(r.from).toBe("builtin");
    expect(r.spec).toEqual({ instanceType: "medium", resources: { cpu: 2, memory: "4Gi" } });
  });

  it("an object named like a built-in wins over the built-in size", () => {
    const r = resolveSpec({ instanceType: "small" }, classes({ small: { cpu: 2, memory: "3Gi" } }));
    expect(r.from).toBe("class");
    expect(r.spec?.resources).toEqual({ cpu: 2, memory: "3Gi" });
  });

  it("a name that is neither an object nor built in is missing, and named", () => {
    const r = resolveSpec({ instanceType: "gpu" }, classes({ other: gpuClass }));
    expect(r).toEqual({ missingClass: "gpu" });
  });

  it("names that only look like built-ins are not built in", () => {
    for (const name of ["Small", "constructor", "toString", "hasOwnProperty", "__proto__"])
      expect(resolveSpec({ instanceType: name }, classes({}))).toEqual({ missingClass: name });
  });
});

describe("lookupClass", () => {
  it("object, else built-in, else nothing", () => {
    expect(lookupClass("gpu", classes({ gpu: gpuClass }))).toBe(gpuClass);
    expect(lookupClass("xlarge", classes({}))).toEqual({ cpu: 8, memory: "16Gi" });
    expect(lookupClass("gpu", classes({}))).toBeUndefined();
  });
});
