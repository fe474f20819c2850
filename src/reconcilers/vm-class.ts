/**
 * The store side of VirtualMachineClass resolution (the rules are in api/classes.ts): every
 * reconciler that renders a VM, sizes it or reads its class-defaulted fields goes through
 * `effectiveVM`, so the domain, its spec hash, the placement request and the failover plan all
 * see the same effective spec.
 */
import { type ClassLookup, resolveVM } from "../api/classes.js";
import type { VirtualMachine } from "../api/types.js";
import type { ResourceStore } from "../store/types.js";
import { InvalidSpecError } from "./virtualmachine/render.js";

/** The VM names a class that neither exists nor is built in: it waits, nothing is started. */
export class ClassNotFoundError extends InvalidSpecError {
  constructor(
    readonly className: string,
    vm: VirtualMachine,
  ) {
    super(
      "spec.instanceType",
      `VirtualMachine ${vm.metadata.name}: spec.instanceType: VirtualMachineClass "${className}" not found; the VM waits for it`,
    );
    this.name = "ClassNotFoundError";
  }
}

export function storeClasses(store: Pick<ResourceStore, "get">): ClassLookup {
  return (name) => store.get("VirtualMachineClass", name)?.spec;
}

/** One list of the classes, for a loop over many VMs. */
export function listedClasses(store: Pick<ResourceStore, "list">): ClassLookup {
  const byName = new Map(store.list("VirtualMachineClass").map((c) => [c.metadata.name, c.spec]));
  return (name) => byName.get(name);
}

/** The VM with its effective spec; a missing class is a ClassNotFoundError. */
export function effectiveVM(classes: ClassLookup, vm: VirtualMachine): VirtualMachine {
  const r = resolveVM(vm, classes);
  if (r.missingClass !== undefined) throw new ClassNotFoundError(r.missingClass, vm);
  return r.vm;
}
