/**
 * Address checks the CRD schema cannot express, for `virtwarden validate` and the loader:
 *
 * - in one VirtualNetwork: its gateway, DHCP range (start <= end) and fixed leases are host
 *   addresses of its subnet (not the network or broadcast address), and no lease takes the
 *   gateway's address;
 * - across the documents of one directory: a VM's fixed IP is a host address of its network's
 *   subnet, not the gateway, and not leased by that network to another MAC; a MAC is claimed once
 *   in the directory (a VM's NIC and the lease of the network that NIC is on, for the same IP, are
 *   one claim); the per-network conflicts the controller refuses at run time
 *   (address-claims.ts, findAddressConflicts) are reported at load time too, from that
 *   same function, so the two never disagree.
 *
 * What the schema and the CEL rules already check is not repeated here: address syntax, a MAC
 * leased twice in one network (list-map key), an IP leased twice in one network (CEL rule).
 * Contract: pure; errors point at the offending field; the first claimant in load order keeps
 * its claim and the later one is the error.
 */
import { findAddressConflicts } from "./address-claims.js";
import type { FieldError } from "./field-error.js";
import type { LoadedResource, ManifestError, SourceLocation } from "./manifest.js";
import type { Resource, VirtualMachine, VirtualNetwork, VirtualNetworkSpec } from "./types.js";

/** "10.0.0.1" -> 167772161; undefined for anything else. */
export function ipv4ToNumber(ip: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  let n = 0;
  for (const part of m.slice(1)) {
    const v = Number(part);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

export function numberToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");
}

/** The first usable address of a subnet ("10.10.0.0/24" -> "10.10.0.1"). */
export function firstHost(subnet: string): string {
  const [ip] = subnet.split("/");
  const parts = (ip ?? "0.0.0.0").split(".").map(Number);
  parts[3] = (parts[3] ?? 0) + 1;
  return parts.join(".");
}

export interface Subnet {
  cidr: string;
  /** The network address (host bits cleared) and the broadcast address, as numbers. */
  network: number;
  broadcast: number;
}

export function parseSubnet(cidr: string): Subnet | undefined {
  const [ip, len] = cidr.split("/");
  const base = ipv4ToNumber(ip ?? "");
  const prefix = Number(len);
  if (base === undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > 32) return undefined;
  const size = 2 ** (32 - prefix);
  const network = Math.floor(base / size) * size;
  return { cidr, network, broadcast: network + size - 1 };
}

/** Why `ip` is not a host address of `subnet`, or undefined when it is one. */
export function notAHostOf(ip: string, subnet: Subnet): string | undefined {
  const n = ipv4ToNumber(ip);
  if (n === undefined) return undefined; // the schema reports the syntax
  const hosts = `${numberToIpv4(subnet.network + 1)} - ${numberToIpv4(subnet.broadcast - 1)}`;
  if (n < subnet.network || n > subnet.broadcast)
    return `not inside the network's subnet ${subnet.cidr} (hosts ${hosts})`;
  if (n === subnet.network) return `the network address of ${subnet.cidr}, not a host address (${hosts})`;
  if (n === subnet.broadcast) return `the broadcast address of ${subnet.cidr}, not a host address (${hosts})`;
  return undefined;
}

/** The address the network itself takes: its gateway, by default the subnet's first host. */
export function gatewayOf(spec: VirtualNetworkSpec): string | undefined {
  if (!spec.subnet || spec.mode === "bridge") return undefined;
  return spec.gateway ?? firstHost(spec.subnet);
}

const invalid = (path: string, value: string, why: string): FieldError => ({
  path,
  message: `Invalid value: "${value}": ${why}`,
});

/** One VirtualNetwork's own addresses (schema-valid input). */
export function checkNetworkAddresses(spec: VirtualNetworkSpec): FieldError[] {
  const out: FieldError[] = [];
  if (!spec.subnet || spec.mode === "bridge") return out;
  const subnet = parseSubnet(spec.subnet);
  if (!subnet) return out;
  const gateway = gatewayOf(spec);
  if (spec.gateway) {
    const why = notAHostOf(spec.gateway, subnet);
    if (why) out.push(invalid("spec.gateway", spec.gateway, why));
  }
  const range = spec.dhcp?.range;
  if (range) {
    const whyStart = notAHostOf(range.start, subnet);
    const whyEnd = notAHostOf(range.end, subnet);
    if (whyStart) out.push(invalid("spec.dhcp.range.start", range.start, whyStart));
    if (whyEnd) out.push(invalid("spec.dhcp.range.end", range.end, whyEnd));
    const s = ipv4ToNumber(range.start);
    const e = ipv4ToNumber(range.end);
    if (s !== undefined && e !== undefined && s > e)
      out.push(
        invalid("spec.dhcp.range.start", range.start, `the DHCP range starts after its end ${range.end}`),
      );
  }
  for (const [i, lease] of (spec.dhcp?.leases ?? []).entries()) {
    const why =
      notAHostOf(lease.ip, subnet) ??
      (lease.ip === gateway ? `the network's own address (its gateway)` : undefined);
    if (why) out.push(invalid(`spec.dhcp.leases[${i}].ip`, lease.ip, why));
  }
  return out;
}

/** A loaded resource that can say where each of its fields is (the loader provides `locate`). */
export interface LocatedResource extends LoadedResource {
  locate?: (path: string) => SourceLocation;
}

const nsOf = (r: Resource) => r.metadata.namespace ?? "default";

interface MacClaim {
  it: LocatedResource;
  path: string;
  mac: string;
  /** namespace/name of the network the claim is on. */
  net: string;
  owner: string;
}

/**
 * The errors of a whole directory's resources (in load order) that no single document shows.
 * Each error names the later claimant's field; the resources it names should not be applied.
 */
export function checkAcrossDocuments(items: readonly LocatedResource[]): ManifestError[] {
  const out: ManifestError[] = [];
  const where = (it: LocatedResource, path: string): SourceLocation => it.locate?.(path) ?? it.source;
  const report = (it: LocatedResource, path: string, message: string) =>
    out.push({
      ...where(it, path),
      path,
      message,
      kind: it.resource.kind,
      name: it.resource.metadata.name,
    });

  const vnets = new Map<string, { it: LocatedResource; vnet: VirtualNetwork }>();
  for (const it of items)
    if (it.resource.kind === "VirtualNetwork")
      vnets.set(`${nsOf(it.resource)}/${it.resource.metadata.name}`, { it, vnet: it.resource });
  const vms = items.filter(
    (it): it is LocatedResource & { resource: VirtualMachine } => it.resource.kind === "VirtualMachine",
  );

  // A VM's fixed IP against its network's subnet and leases.
  for (const it of vms) {
    for (const [i, nic] of (it.resource.spec.networks ?? []).entries()) {
      if (!nic.ip) continue;
      const net = vnets.get(`${nsOf(it.resource)}/${nic.network}`)?.vnet;
      if (!net?.spec.subnet || net.spec.mode === "bridge") continue;
      const subnet = parseSubnet(net.spec.subnet);
      if (!subnet) continue;
      const path = `spec.networks[${i}].ip`;
      const why =
        notAHostOf(nic.ip, subnet) ??
        (nic.ip === gatewayOf(net.spec)
          ? `the address of network ${nic.network} itself (its gateway)`
          : undefined);
      if (why) {
        report(it, path, `Invalid value: "${nic.ip}": ${why}`);
        continue;
      }
      const lease = net.spec.dhcp?.leases?.find((l) => l.ip === nic.ip);
      if (lease && !nic.mac)
        report(
          it,
          path,
          `Duplicate value: "${nic.ip}": network ${nic.network} leases this IP to MAC ${lease.mac}; set mac: "${lease.mac}" on this NIC if it is that lease's guest`,
        );
    }
  }

  // What the controller would refuse at run time, from its own function.
  const verdicts = findAddressConflicts(
    vms.map((it) => it.resource),
    [...vnets.values()].map((v) => v.vnet),
  );
  for (const it of vms) {
    const verdict = verdicts.get(`${nsOf(it.resource)}/${it.resource.metadata.name}`);
    if (!verdict) continue;
    const nics = it.resource.spec.networks ?? [];
    const i = nics.findIndex((n) => (n.ip || n.mac) && verdict.includes(`network ${n.network}`));
    report(it, i >= 0 ? `spec.networks[${i}]` : "spec.networks", `Duplicate value: ${verdict}`);
  }

  // A MAC claimed once in the directory.
  const claims: MacClaim[] = [];
  for (const it of items) {
    const r = it.resource;
    if (r.kind === "VirtualMachine") {
      for (const [i, nic] of (r.spec.networks ?? []).entries())
        if (nic.mac)
          claims.push({
            it,
            path: `spec.networks[${i}].mac`,
            mac: nic.mac.toLowerCase(),
            net: `${nsOf(r)}/${nic.network}`,
            owner: `VirtualMachine ${nsOf(r)}/${r.metadata.name} (network ${nic.network})`,
          });
    } else if (r.kind === "VirtualNetwork") {
      for (const [i, l] of (r.spec.dhcp?.leases ?? []).entries())
        claims.push({
          it,
          path: `spec.dhcp.leases[${i}].mac`,
          mac: l.mac.toLowerCase(),
          net: `${nsOf(r)}/${r.metadata.name}`,
          owner: `VirtualNetwork ${nsOf(r)}/${r.metadata.name} (the lease of ${l.ip})`,
        });
    }
  }
  const byMac = new Map<string, MacClaim>();
  for (const claim of claims) {
    const first = byMac.get(claim.mac);
    if (!first) {
      byMac.set(claim.mac, claim);
      continue;
    }
    // On one network the lease table (list-map key) and findAddressConflicts above decide.
    if (first.net === claim.net) continue;
    const at = where(first.it, first.path);
    report(
      claim.it,
      claim.path,
      `Duplicate value: "${claim.mac}": MAC already claimed by ${first.owner} at ${at.file}:${at.line}; a MAC may be claimed once in a directory`,
    );
  }
  return out;
}
