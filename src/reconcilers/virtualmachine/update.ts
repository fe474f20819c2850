/**
 * How a spec change reaches a running VM: what libvirt can change on the running domain (vCPUs
 * up to the defined maximum, memory through the balloon up to the defined size, NICs and
 * virtio/scsi disks plugged in or out at the end of their lists) and what only a restart applies
 * (everything else). Pure; the table is test/reconcilers/virtualmachine/update.test.ts.
 *
 * Contract: `live` holds only changes the running domain as observed can take (its own maxima and
 * balloon, not the desired ones); each field that needs a restart is named in `restart` as the
 * user wrote it (spec.resources.memory, spec.disks, ...), with why. Lowering vCPUs is a restart:
 * a vCPU unplug needs the guest's cooperation, and a guest that ignores it would fail the
 * reconcile forever. NICs and disks are plugged in or unplugged at the end of their lists only
 * (see below).
 */
import { formatBytes } from "../../api/quantity.js";
import type { VirtualMachine } from "../../api/types.js";
import type { DomainDiskSpec, DomainInterfaceSpec, DomainSpec } from "../../providers/types.js";
import { diffDomain } from "./render.js";

export interface LiveChange {
  vcpus?: number;
  memoryBytes?: number;
  /** NICs to plug in, in order (appended after the ones the domain has). */
  attach?: DomainInterfaceSpec[];
  /** NICs to unplug (the last ones the domain has). */
  detach?: DomainInterfaceSpec[];
  /** Disks to plug in (appended; their volumes provisioned first), and the last ones to unplug. */
  attachDisks?: DomainDiskSpec[];
  detachDisks?: DomainDiskSpec[];
}

export interface SpecChangePlan {
  live: LiveChange;
  /** Spec fields that wait for a restart, each with why, e.g. "spec.disks". */
  restart: string[];
}

/** The annotation a user sets (to the current time, RFC 3339) to restart a VM once. */
export const RESTART_ANNOTATION = "virtwarden.io/restartedAt";

const maxVcpus = (d: DomainSpec) => d.maxVcpus ?? d.vcpus;

/**
 * The change from the running domain's definition `running` to `desired`. `running` is the
 * persistent definition read back from the host: the live values never run ahead of it, since
 * every live change here is made to both at once.
 */
export function planSpecChange(
  vm: VirtualMachine,
  desired: DomainSpec,
  running: DomainSpec,
  /** Whether the desired NIC at this index can be plugged in on the VM's host (its network is ready there). */
  nicReady: (index: number) => boolean = () => true,
): SpecChangePlan {
  const live: LiveChange = {};
  const restart: string[] = [];
  // A VM of a class has no resources of its own (the schema allows one of the two); the effective
  // spec's resources are the class's, so the field to name is spec.instanceType (the class).
  const sized = vm.spec.instanceType !== undefined;
  const cpuField = sized ? "spec.instanceType" : "spec.resources.cpu";
  const memField = sized ? "spec.instanceType" : "spec.resources.memory";
  const maxCpuField = sized ? "spec.instanceType (its maxCpu)" : "spec.resources.maxCpu";
  const maxMemField = sized ? "spec.instanceType (its maxMemory)" : "spec.resources.maxMemory";
  const add = (field: string) => {
    if (!restart.includes(field)) restart.push(field);
  };

  if (desired.vcpus !== running.vcpus) {
    if (desired.vcpus > running.vcpus && desired.vcpus <= maxVcpus(running)) live.vcpus = desired.vcpus;
    else if (desired.vcpus > running.vcpus)
      add(
        `${cpuField} (${desired.vcpus} is above the running domain's maximum of ${maxVcpus(running)} vCPUs)`,
      );
    else add(`${cpuField} (fewer vCPUs: ${running.vcpus} -> ${desired.vcpus})`);
  }
  if (diffDomain(desired, running).includes("domain.maxVcpus")) add(maxCpuField);

  if (desired.memoryBytes !== running.memoryBytes) {
    const max = running.maxMemoryBytes;
    if (max !== undefined && desired.memoryBytes <= max) live.memoryBytes = desired.memoryBytes;
    else if (max !== undefined)
      add(
        `${memField} (${formatBytes(desired.memoryBytes)} is above the running domain's maximum ${formatBytes(max)})`,
      );
    else add(`${memField} (the running domain has no maxMemory)`);
  }
  if (desired.maxMemoryBytes !== running.maxMemoryBytes) add(maxMemField);

  // NICs: added after the last one, or the last ones removed, go live (hotplug); any other change
  // (one in the middle: derived MACs of the later ones move with their index; a model or network
  // changed in place) waits for a restart.
  const nic = (n: DomainInterfaceSpec) => `${n.network}|${n.mac.toLowerCase()}|${n.model}`;
  let same = 0;
  while (
    same < desired.interfaces.length &&
    same < running.interfaces.length &&
    nic(desired.interfaces[same] as DomainInterfaceSpec) ===
      nic(running.interfaces[same] as DomainInterfaceSpec)
  )
    same++;
  if (same === running.interfaces.length && same < desired.interfaces.length) {
    const added = desired.interfaces.slice(same);
    const waiting = added.map((_, i) => same + i).filter((i) => !nicReady(i));
    if (waiting.length === 0) live.attach = added;
    else
      add(
        `spec.networks (${waiting.map((i) => vm.spec.networks?.[i]?.network ?? desired.interfaces[i]?.network).join(", ")} not ready on the VM's host)`,
      );
  } else if (same === desired.interfaces.length && same < running.interfaces.length)
    live.detach = running.interfaces.slice(same);
  else if (same < desired.interfaces.length || same < running.interfaces.length) add("spec.networks");

  // Disks likewise, at the end of the list and on a bus that hotplugs (virtio, scsi); a removed
  // disk's volume stays (its data is not deleted by an edit).
  const disk = (d: DomainDiskSpec) =>
    `${d.target}|${d.bus}|${d.pool}|${d.volume}|${d.format}|${!!d.readOnly}|${d.bootOrder ?? ""}`;
  const hotplug = (d: DomainDiskSpec) => d.bus === "virtio" || d.bus === "scsi";
  let kept = 0;
  while (
    kept < desired.disks.length &&
    kept < running.disks.length &&
    disk(desired.disks[kept] as DomainDiskSpec) === disk(running.disks[kept] as DomainDiskSpec)
  )
    kept++;
  const addedDisks = desired.disks.slice(kept);
  const removedDisks = running.disks.slice(kept);
  if (removedDisks.length === 0 && addedDisks.length > 0 && addedDisks.every(hotplug))
    live.attachDisks = addedDisks;
  else if (addedDisks.length === 0 && removedDisks.length > 0 && removedDisks.every(hotplug))
    live.detachDisks = removedDisks;
  else if (addedDisks.length > 0 || removedDisks.length > 0) add("spec.disks");

  if (diffDomain(desired, running).includes("domain.boot")) add("spec.boot");
  return { live, restart };
}

export function hasLiveChange(c: LiveChange): boolean {
  return (
    c.vcpus !== undefined ||
    c.memoryBytes !== undefined ||
    (c.attach?.length ?? 0) > 0 ||
    (c.detach?.length ?? 0) > 0 ||
    (c.attachDisks?.length ?? 0) > 0 ||
    (c.detachDisks?.length ?? 0) > 0
  );
}

/** What a live change did, for an event: "vCPUs 2 -> 3, memory 256Mi -> 384Mi". */
export function describeLiveChange(c: LiveChange, running: DomainSpec): string {
  const parts: string[] = [];
  if (c.vcpus !== undefined) parts.push(`vCPUs ${running.vcpus} -> ${c.vcpus}`);
  if (c.memoryBytes !== undefined)
    parts.push(`memory ${formatBytes(running.memoryBytes)} -> ${formatBytes(c.memoryBytes)}`);
  for (const n of c.attach ?? []) parts.push(`NIC ${n.mac} on ${n.network} plugged in`);
  for (const n of c.detach ?? []) parts.push(`NIC ${n.mac} on ${n.network} unplugged`);
  for (const d of c.attachDisks ?? []) parts.push(`disk ${d.target} (${d.pool}/${d.volume}) plugged in`);
  for (const d of c.detachDisks ?? []) parts.push(`disk ${d.target} (${d.pool}/${d.volume}) unplugged`);
  return parts.join(", ");
}

/**
 * A restart the user asked for with RESTART_ANNOTATION and that has not happened since: the
 * annotation's time, normalised, or undefined. "Since" is the latest of the restart last
 * honoured (status.restartedAt), the VM's creation (an annotation copied with a manifest asks for
 * nothing) and the last time Ready turned True (the VM came up after the request: it already
 * restarted since, for whatever reason).
 */
export function pendingRestartRequest(vm: VirtualMachine): string | undefined {
  const raw = vm.metadata.annotations?.[RESTART_ANNOTATION];
  const asked = Date.parse(raw ?? "");
  if (!Number.isFinite(asked)) return undefined;
  const ready = vm.status?.conditions?.find((c) => c.type === "Ready" && c.status === "True");
  const since = [vm.status?.restartedAt, vm.metadata.creationTimestamp, ready?.lastTransitionTime]
    .map((t) => Date.parse(t ?? ""))
    .filter(Number.isFinite);
  if (since.some((t) => t >= asked)) return undefined;
  return new Date(asked).toISOString();
}

/** status.restartedAt once a request is honoured: never earlier than the request (clock skew). */
export function honouredAt(asked: string, now: Date): string {
  return new Date(Math.max(Date.parse(asked), now.getTime())).toISOString();
}
