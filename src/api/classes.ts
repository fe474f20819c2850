/**
 * A VirtualMachine's effective spec: its own spec with the VirtualMachineClass it names in
 * `spec.instanceType` merged in. Pure: the caller hands in how to look a class up.
 *
 * Contract (what the rest of virtwarden relies on):
 * - The effective spec is what is rendered, hashed and compared. A class change therefore is a
 *   spec change of each of its VMs and goes through the same restart rules (live where libvirt
 *   can, RestartRequired or an Automatic restart otherwise).
 * - Resolution: a VirtualMachineClass object of that name; else, for the six built-in names
 *   (defaults.ts), the built-in size as an implicit class with no other defaults; else the class
 *   is missing (`missingClass` names it) and the VM must wait: nothing is rendered or started.
 *   Consequence worth knowing: deleting a class object named like a built-in (`small`) falls back
 *   to the built-in size rather than making its VMs wait.
 * - Merge rules (the VM wins wherever it says something):
 *   - size: the class's cpu, memory, maxCpu, maxMemory become `resources` (a VM naming a class has
 *     no `resources` of its own: the schema allows exactly one of the two);
 *   - disks: the VM's list if it sets one (even an empty one), else the class's, as a whole;
 *   - placement, migration: field by field, the VM's field over the class's;
 *   - availability: field by field, and restartBackoff field by field inside it.
 * - `instanceType` stays in the effective spec, so messages can name it as the field at fault.
 */
import { instanceTypeResources } from "./defaults.js";
import type { VirtualMachine, VirtualMachineClassSpec, VirtualMachineSpec } from "./types.js";

/** A class's spec by name, or undefined when there is none (the store's get, in the product). */
export type ClassLookup = (name: string) => VirtualMachineClassSpec | undefined;

export type ResolvedSpec =
  | { spec: VirtualMachineSpec; from: "resources" | "class" | "builtin"; missingClass?: undefined }
  | { missingClass: string; spec?: undefined; from?: undefined };

/** The class a name stands for: the object, else the built-in size, else undefined. */
export function lookupClass(name: string, classes: ClassLookup): VirtualMachineClassSpec | undefined {
  const object = classes(name);
  if (object) return object;
  const builtin = instanceTypeResources(name);
  return builtin ? { cpu: builtin.cpu, memory: builtin.memory } : undefined;
}

function merged<T extends object>(base: T | undefined, own: T | undefined): T | undefined {
  if (base === undefined) return own;
  if (own === undefined) return base;
  return { ...base, ...own };
}

/** The spec a VM runs with, per the merge rules above; a missing class is named, not thrown. */
export function resolveSpec(spec: VirtualMachineSpec, classes: ClassLookup): ResolvedSpec {
  const name = spec.instanceType;
  if (name === undefined || spec.resources) return { spec, from: "resources" };
  const object = classes(name);
  const cls = object ?? lookupClass(name, () => undefined);
  if (!cls) return { missingClass: name };
  const out: VirtualMachineSpec = {
    ...spec,
    resources: {
      cpu: cls.cpu,
      memory: cls.memory,
      ...(cls.maxCpu !== undefined ? { maxCpu: cls.maxCpu } : {}),
      ...(cls.maxMemory !== undefined ? { maxMemory: cls.maxMemory } : {}),
    },
  };
  const disks = spec.disks ?? cls.disks;
  if (disks !== undefined) out.disks = disks;
  const placement = merged(cls.placement, spec.placement);
  if (placement !== undefined) out.placement = placement;
  const migration = merged(cls.migration, spec.migration);
  if (migration !== undefined) out.migration = migration;
  const availability = merged(cls.availability, spec.availability);
  if (availability !== undefined) {
    const backoff = merged(cls.availability?.restartBackoff, spec.availability?.restartBackoff);
    out.availability = backoff !== undefined ? { ...availability, restartBackoff: backoff } : availability;
  }
  return { spec: out, from: object ? "class" : "builtin" };
}

/** The VM with its effective spec, or the name of the class it waits for. */
export function resolveVM(
  vm: VirtualMachine,
  classes: ClassLookup,
): { vm: VirtualMachine; missingClass?: undefined } | { missingClass: string; vm?: undefined } {
  const r = resolveSpec(vm.spec, classes);
  if (r.missingClass !== undefined) return { missingClass: r.missingClass };
  return { vm: r.spec === vm.spec ? vm : { ...vm, spec: r.spec } };
}
