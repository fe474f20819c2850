/**
 * Fixed addresses: a VM may ask for a fixed IP and/or MAC on a VirtualNetwork
 * (`spec.networks[].ip`, `.mac`); the network's DHCP lease table (`spec.dhcp.leases`) hands them
 * out. Two claimants of one address on one network would fight on the wire, so the second one
 * is an error, not a silent conflict:
 *
 * - per network (namespace/name), VMs claim in creation order (then by name): an IP or MAC an
 *   earlier VM claims is refused to a later one;
 * - a claim contradicting the network's leases is refused too: the IP leased to another MAC, or
 *   the VM's MAC leased to another IP.
 *
 * Pure, and part of the API's rules: the controller refuses these claims at run time
 * (reconcilers/addresses.ts) and the loader reports them at load time (addresses.ts), from this
 * one function, so the two never disagree.
 */
import type { VirtualMachine, VirtualNetwork } from "./types.js";

interface Claim {
  vm: string;
  ip?: string;
  mac?: string;
}

const ns = (o: { metadata: { namespace?: string } }) => o.metadata.namespace ?? "default";

export function findAddressConflicts(vms: VirtualMachine[], vnets: VirtualNetwork[]): Map<string, string> {
  const out = new Map<string, string>();
  const leases = new Map<string, { byIp: Map<string, string>; byMac: Map<string, string> }>();
  for (const n of vnets) {
    const byIp = new Map<string, string>();
    const byMac = new Map<string, string>();
    for (const l of n.spec.dhcp?.leases ?? []) {
      byIp.set(l.ip, l.mac.toLowerCase());
      byMac.set(l.mac.toLowerCase(), l.ip);
    }
    leases.set(`${ns(n)}/${n.metadata.name}`, { byIp, byMac });
  }
  const ordered = vms
    .filter((v) => !v.metadata.deletionTimestamp && (v.spec.networks ?? []).some((n) => n.ip || n.mac))
    .sort(
      (a, b) =>
        new Date(a.metadata.creationTimestamp ?? 0).getTime() -
          new Date(b.metadata.creationTimestamp ?? 0).getTime() ||
        `${ns(a)}/${a.metadata.name}`.localeCompare(`${ns(b)}/${b.metadata.name}`),
    );
  const claimed = new Map<string, { ip: Map<string, string>; mac: Map<string, string> }>();
  for (const vm of ordered) {
    const key = `${ns(vm)}/${vm.metadata.name}`;
    const problems: string[] = [];
    const mine: { net: string; c: Claim }[] = [];
    for (const n of vm.spec.networks ?? []) {
      if (!n.ip && !n.mac) continue;
      const net = `${ns(vm)}/${n.network}`;
      const c: Claim = {
        vm: key,
        ...(n.ip ? { ip: n.ip } : {}),
        ...(n.mac ? { mac: n.mac.toLowerCase() } : {}),
      };
      const taken = claimed.get(net);
      if (c.ip && taken?.ip.has(c.ip))
        problems.push(`IP ${c.ip} on network ${n.network} is claimed by ${taken.ip.get(c.ip)}`);
      if (c.mac && taken?.mac.has(c.mac))
        problems.push(`MAC ${c.mac} on network ${n.network} is claimed by ${taken.mac.get(c.mac)}`);
      const l = leases.get(net);
      if (c.ip && l?.byIp.has(c.ip) && c.mac && l.byIp.get(c.ip) !== c.mac)
        problems.push(`network ${n.network} leases IP ${c.ip} to MAC ${l.byIp.get(c.ip)}, not ${c.mac}`);
      if (c.mac && l?.byMac.has(c.mac) && c.ip && l.byMac.get(c.mac) !== c.ip)
        problems.push(`network ${n.network} leases MAC ${c.mac} the IP ${l.byMac.get(c.mac)}, not ${c.ip}`);
      mine.push({ net, c });
    }
    if (problems.length > 0) {
      out.set(key, problems.join("; "));
      continue; // a refused VM claims nothing
    }
    for (const { net, c } of mine) {
      let t = claimed.get(net);
      if (!t) {
        t = { ip: new Map(), mac: new Map() };
        claimed.set(net, t);
      }
      if (c.ip) t.ip.set(c.ip, key);
      if (c.mac) t.mac.set(c.mac, key);
    }
  }
  return out;
}
