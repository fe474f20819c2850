/**
 * What a VM asks of the placement planner (scheduler/placement.ts): its resources, its placement
 * rules, the networks and images its host must have, and the free disk space its new disks need.
 * Pure, from the VM's spec alone: the VM reconciler (observe.ts), the restore reconciler and the
 * failover capacity assessment all ask the same question the same way.
 */
import type { VirtualMachine } from "../../api/types.js";
import type { Capacity, PlacementRequest } from "../../scheduler/placement.js";
import { DEFAULT_POOL, specQuantity, vmImages, vmNetworks, vmRequirements } from "./render.js";

/** What the VM takes of a host's capacity: its vCPUs (in milli-CPUs) and memory. */
export function vmCapacity(vm: VirtualMachine): Capacity {
  const req = vmRequirements(vm);
  return { cpuMilli: req.vcpus * 1000, memoryBytes: req.memoryBytes };
}

export function placementRequest(key: string, vm: VirtualMachine): PlacementRequest {
  const p = vm.spec.placement ?? {};
  return {
    key,
    namespace: vm.metadata.namespace ?? "default",
    request: vmCapacity(vm),
    hostSelector: p.hostSelector,
    affinity: (p.affinity ?? []).map((t) => ({ selector: t.selector, topology: t.topology ?? "host" })),
    antiAffinity: (p.antiAffinity ?? []).map((t) => ({
      selector: t.selector,
      topology: t.topology ?? "host",
    })),
    ...(p.preferredAffinity?.length
      ? {
          preferredAffinity: p.preferredAffinity.map((t) => ({
            selector: t.selector,
            topology: t.topology ?? "host",
            weight: t.weight,
          })),
        }
      : {}),
    ...(p.preferredAntiAffinity?.length
      ? {
          preferredAntiAffinity: p.preferredAntiAffinity.map((t) => ({
            selector: t.selector,
            topology: t.topology ?? "host",
            weight: t.weight,
          })),
        }
      : {}),
    strategy: p.strategy ?? "spread",
    ...(p.preferReliableHosts ? { preferReliable: true } : {}),
    networks: vmNetworks(vm),
    images: vmImages(vm),
    diskBytes: diskNeeds(vm),
  };
}

/** Headroom each new thin disk (linked clone, blank qcow2) needs in its pool to start. */
export const THIN_DISK_HEADROOM_BYTES = 256 * 1024 ** 2;

/**
 * Free space a VM's new disks need per pool: a full copy its size (allocated up front), a thin
 * disk (linked clone, blank qcow2) a headroom. Existing volumes (`source.volume`) need none.
 */
export function diskNeeds(vm: VirtualMachine): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [i, d] of (vm.spec.disks ?? []).entries()) {
    if (d.source?.volume) continue;
    const pool = d.source?.image?.pool ?? DEFAULT_POOL;
    const size = d.size ? specQuantity(vm, `spec.disks[${i}].size`, d.size) : 0;
    const bytes =
      d.source?.image?.clone === "full" ? Math.max(size, THIN_DISK_HEADROOM_BYTES) : THIN_DISK_HEADROOM_BYTES;
    out[pool] = (out[pool] ?? 0) + bytes;
  }
  return out;
}
