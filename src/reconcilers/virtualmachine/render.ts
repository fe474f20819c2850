/**
 * VirtualMachine -> DomainSpec: what the hypervisor should run for this resource, with
 * virtwarden's ownership mark. Pure.
 *
 * Naming contracts (other parts rely on them):
 * - domain name `<namespace>_<name>` (see fleet.domainName);
 * - a disk cloned from an image, or a blank disk, is the volume `<domain>-<disk>.qcow2` in the
 *   image's pool (default "default"); a `source.volume` disk is used as named;
 * - a VirtualNetwork ns/name is the libvirt network `<namespace>_<name>` on the host;
 * - a MAC not fixed in spec is derived from the VM key and interface index (stable across
 *   recreation on another host, so DHCP leases and guest NIC names survive a failover).
 */
import { createHash } from "node:crypto";
import { instanceTypeResources } from "../../api/defaults.js";
import { parseQuantity } from "../../api/quantity.js";
import type { DiskDeletionPolicy, VirtualMachine, VMDisk } from "../../api/types.js";
import { specHash } from "../../providers/spec-hash.js";
import type { DomainDiskSpec, DomainInterfaceSpec, DomainSpec } from "../../providers/types.js";
import { domainName } from "../fleet.js";

export const DEFAULT_POOL = "default";

/**
 * The spec cannot be turned into a domain as written (an unknown instance type, a size that is
 * not a quantity): retrying cannot help, editing the spec does. Thrown only by the code that
 * reads the spec; the reconciler records it as a TerminalError. Anything else (a hypervisor's
 * error, whatever its message says) is retried.
 */
export class InvalidSpecError extends Error {
  constructor(
    /** The field at fault, e.g. "spec.instanceType". */
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = "InvalidSpecError";
  }
}

/** A quantity from the spec; a text that is not one is an InvalidSpecError naming the field. */
export function specQuantity(vm: VirtualMachine, field: string, text: string | number): number {
  try {
    return parseQuantity(text);
  } catch (e) {
    throw new InvalidSpecError(
      field,
      `VirtualMachine ${vm.metadata.name}: ${field}: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
}

export function libvirtNetworkName(namespace: string, network: string): string {
  return `${namespace}_${network}`;
}

export function diskVolumeName(domain: string, disk: string): string {
  return `${domain}-${disk}.qcow2`;
}

export function derivedMac(vmKey: string, index: number): string {
  const h = createHash("sha256").update(`${vmKey}#${index}`).digest();
  const b = [h[0] ?? 0, h[1] ?? 0, h[2] ?? 0].map((x) => x.toString(16).padStart(2, "0"));
  return `52:54:00:${b.join(":")}`;
}

const TARGET_PREFIX: Record<DomainDiskSpec["bus"], string> = {
  virtio: "vd",
  scsi: "sd",
  sata: "sd",
  ide: "hd",
};

export interface VMRequirements {
  vcpus: number;
  memoryBytes: number;
}

/**
 * The most vCPUs and memory the VM's domain is defined with, so a running guest can be given
 * more without a restart (spec.resources.maxCpu / maxMemory). Unset where the spec sets none;
 * a maximum below the current value is an InvalidSpecError naming the field.
 */
export function vmMaximums(vm: VirtualMachine): { maxVcpus?: number; maxMemoryBytes?: number } {
  const r = vm.spec.resources;
  if (!r) return {};
  const out: { maxVcpus?: number; maxMemoryBytes?: number } = {};
  if (r.maxCpu !== undefined) {
    if (r.maxCpu < r.cpu)
      throw new InvalidSpecError(
        "spec.resources.maxCpu",
        `VirtualMachine ${vm.metadata.name}: spec.resources.maxCpu: ${r.maxCpu} is below cpu ${r.cpu}`,
      );
    out.maxVcpus = r.maxCpu;
  }
  if (r.maxMemory !== undefined) {
    const max = specQuantity(vm, "spec.resources.maxMemory", r.maxMemory);
    const memory = specQuantity(vm, "spec.resources.memory", r.memory);
    if (max < memory)
      throw new InvalidSpecError(
        "spec.resources.maxMemory",
        `VirtualMachine ${vm.metadata.name}: spec.resources.maxMemory: ${r.maxMemory} is below memory ${r.memory}`,
      );
    out.maxMemoryBytes = max;
  }
  return out;
}

export function vmRequirements(vm: VirtualMachine): VMRequirements {
  if (vm.spec.resources)
    return {
      vcpus: vm.spec.resources.cpu,
      memoryBytes: specQuantity(vm, "spec.resources.memory", vm.spec.resources.memory),
    };
  const type = vm.spec.instanceType;
  const r = type ? instanceTypeResources(type) : undefined;
  if (!r)
    throw new InvalidSpecError(
      type ? "spec.instanceType" : "spec.resources",
      type
        ? `VirtualMachine ${vm.metadata.name}: spec.instanceType: "${type}" is not a known instance type`
        : `VirtualMachine ${vm.metadata.name}: neither resources nor an instanceType`,
    );
  return { vcpus: r.cpu, memoryBytes: parseQuantity(r.memory) };
}

/**
 * A disk's volume on deletion of its VM, like a PersistentVolume's reclaim policy. Unset: Delete
 * for a disk the VM created (cloned or copied from an image, or blank: named after the VM, no one
 * else holds it), Retain for an existing volume (`source.volume`: someone else made it, and it
 * may outlive this VM by design).
 */
export function diskDeletionPolicy(disk: VMDisk): DiskDeletionPolicy {
  return disk.deletionPolicy ?? (disk.source?.volume ? "Retain" : "Delete");
}

/** The volume a disk of the VM lives in (pool and name), per the naming contract above. */
export function diskVolume(vm: VirtualMachine, disk: VMDisk): { pool: string; name: string } {
  if (disk.source?.volume)
    return { pool: disk.source.volume.pool ?? DEFAULT_POOL, name: disk.source.volume.name };
  const domain = domainName(vm.metadata.namespace ?? "default", vm.metadata.name);
  return { pool: disk.source?.image?.pool ?? DEFAULT_POOL, name: diskVolumeName(domain, disk.name) };
}

/** Which of a deleted VM's volumes go and which stay, by each disk's deletion policy. */
export function disksOnDeletion(vm: VirtualMachine): {
  remove: { pool: string; name: string }[];
  retain: { pool: string; name: string }[];
} {
  const remove: { pool: string; name: string }[] = [];
  const retain: { pool: string; name: string }[] = [];
  for (const disk of vm.spec.disks ?? [])
    (diskDeletionPolicy(disk) === "Delete" ? remove : retain).push(diskVolume(vm, disk));
  return { remove, retain };
}

/** Base images (pool/volume) the VM's disks are cloned from. */
export function vmImages(vm: VirtualMachine): string[] {
  return (vm.spec.disks ?? []).flatMap((d) =>
    d.source?.image ? [`${d.source.image.pool ?? DEFAULT_POOL}/${d.source.image.name}`] : [],
  );
}

/**
 * What a host must have ready for this VM: each of its networks (`namespace/name`), and for a
 * fixed IP that network's DHCP host entry for it (leaseKey), so the guest's first DHCP request
 * already gets its address.
 */
export function vmNetworks(vm: VirtualMachine): string[] {
  const ns = vm.metadata.namespace ?? "default";
  return [
    ...(vm.spec.networks ?? []).map((n) => `${ns}/${n.network}`),
    ...vmFixedLeases(vm).map((l) => leaseKey(`${ns}/${l.network}`, l.mac, l.ip)),
  ];
}

/** A host-readiness key: this network serves this fixed lease there. */
export function leaseKey(networkKey: string, mac: string, ip: string): string {
  return `${networkKey}#${mac.toLowerCase()}=${ip}`;
}

/** The VM's fixed IPs as DHCP host entries: its MAC (fixed or derived) and the IP, per network. */
export function vmFixedLeases(vm: VirtualMachine): { network: string; mac: string; ip: string }[] {
  const key = `${vm.metadata.namespace ?? "default"}/${vm.metadata.name}`;
  return (vm.spec.networks ?? []).flatMap((n, i) =>
    n.ip ? [{ network: n.network, mac: (n.mac ?? derivedMac(key, i)).toLowerCase(), ip: n.ip }] : [],
  );
}

export function renderDomain(vm: VirtualMachine): DomainSpec {
  const ns = vm.metadata.namespace ?? "default";
  const name = domainName(ns, vm.metadata.name);
  const key = `${ns}/${vm.metadata.name}`;
  const req = vmRequirements(vm);
  const counters = new Map<string, number>();
  const disks: DomainDiskSpec[] = (vm.spec.disks ?? []).map((d) => {
    const bus = d.bus ?? "virtio";
    const prefix = TARGET_PREFIX[bus];
    const n = counters.get(prefix) ?? 0;
    counters.set(prefix, n + 1);
    const target = `${prefix}${String.fromCharCode(97 + n)}`;
    const pool = d.source?.volume?.pool ?? d.source?.image?.pool ?? DEFAULT_POOL;
    const volume = d.source?.volume?.name ?? diskVolumeName(name, d.name);
    const disk: DomainDiskSpec = { target, bus, pool, volume, format: "qcow2" };
    if (d.readOnly) disk.readOnly = true;
    if (d.bootOrder !== undefined) disk.bootOrder = d.bootOrder;
    return disk;
  });
  const interfaces: DomainInterfaceSpec[] = (vm.spec.networks ?? []).map((n, i) => ({
    network: libvirtNetworkName(ns, n.network),
    mac: (n.mac ?? derivedMac(key, i)).toLowerCase(),
    model: n.model ?? "virtio",
  }));
  const spec: DomainSpec = { name, vcpus: req.vcpus, memoryBytes: req.memoryBytes, disks, interfaces };
  const max = vmMaximums(vm);
  // Only above the current count: libvirt writes no `current` when they are equal, so a read-back
  // could not tell "max 2 of 2" from "2" (and both are the same domain).
  if (max.maxVcpus !== undefined && max.maxVcpus > req.vcpus) spec.maxVcpus = max.maxVcpus;
  // Kept even when equal to memory: it also says the domain has a balloon device.
  if (max.maxMemoryBytes !== undefined) spec.maxMemoryBytes = max.maxMemoryBytes;
  if (vm.spec.boot && (vm.spec.boot.kernel || vm.spec.boot.initrd || vm.spec.boot.cmdline)) {
    spec.boot = { ...vm.spec.boot };
  }
  spec.ownership = {
    uid: vm.metadata.uid ?? "",
    kind: "VirtualMachine",
    namespace: ns,
    name: vm.metadata.name,
    generation: vm.metadata.generation ?? 0,
    specHash: specHash(spec),
  };
  return spec;
}

/**
 * Fields of the observed configuration that differ from the desired one (ownership and uuid
 * excluded): what a drift report names.
 */
export function diffDomain(desired: DomainSpec, actual: DomainSpec): string[] {
  const fields: string[] = [];
  if (desired.vcpus !== actual.vcpus) fields.push("domain.vcpus");
  // Without a maximum on either side the count is the maximum, and domain.vcpus says it all.
  if (
    (desired.maxVcpus !== undefined || actual.maxVcpus !== undefined) &&
    (desired.maxVcpus ?? desired.vcpus) !== (actual.maxVcpus ?? actual.vcpus)
  )
    fields.push("domain.maxVcpus");
  if (desired.memoryBytes !== actual.memoryBytes) fields.push("domain.memory");
  if (desired.maxMemoryBytes !== actual.maxMemoryBytes) fields.push("domain.maxMemory");
  const disk = (d: DomainDiskSpec) =>
    `${d.target}|${d.bus}|${d.pool}|${d.volume}|${d.format}|${!!d.readOnly}`;
  if (desired.disks.map(disk).join(",") !== actual.disks.map(disk).join(",")) fields.push("domain.disks");
  const nic = (n: DomainInterfaceSpec) => `${n.network}|${n.mac.toLowerCase()}|${n.model}`;
  if (desired.interfaces.map(nic).join(",") !== actual.interfaces.map(nic).join(","))
    fields.push("domain.interfaces");
  const boot = (s: DomainSpec) => `${s.boot?.kernel ?? ""}|${s.boot?.initrd ?? ""}|${s.boot?.cmdline ?? ""}`;
  if (boot(desired) !== boot(actual)) fields.push("domain.boot");
  return fields;
}
