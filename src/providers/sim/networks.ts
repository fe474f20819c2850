/**
 * Simulated libvirt networks and their DHCP leases (dnsmasq's behaviour: fixed leases by MAC,
 * otherwise the first free address of the range, kept while the host lives).
 */
import type { NetworkInfo, NetworkLease, NetworkSpec } from "../types.js";
import { clone, type SimSession } from "./session.js";

export async function listNetworks(s: SimSession, signal?: AbortSignal): Promise<NetworkInfo[]> {
  return s.call("listNetworks", "callMs", signal, (h) => [...h.networks.values()].map(clone));
}

export async function ensureNetwork(s: SimSession, spec: NetworkSpec, signal?: AbortSignal): Promise<void> {
  await s.call("ensureNetwork", "defineMs", signal, (h) => {
    h.networks.set(spec.name, { spec: clone(spec), active: true, autostart: true });
    s.sim.emitNetwork(h, spec.name, "defined");
    s.sim.emitNetwork(h, spec.name, "started");
  });
}

export async function getNetwork(
  s: SimSession,
  name: string,
  signal?: AbortSignal,
): Promise<NetworkInfo | undefined> {
  return s.call("getNetwork", "callMs", signal, (h) => {
    const n = h.networks.get(name);
    return n ? clone(n) : undefined;
  });
}

export async function removeNetwork(s: SimSession, name: string, signal?: AbortSignal): Promise<void> {
  await s.call("removeNetwork", "callMs", signal, (h) => {
    if (!h.networks.delete(name)) throw s.err("NotFound", "removeNetwork", `network ${name} not found`);
    s.sim.emitNetwork(h, name, "stopped");
    s.sim.emitNetwork(h, name, "undefined");
  });
}

/**
 * Like dnsmasq: a running guest on the network holds a lease, its fixed one when the network
 * names its MAC, otherwise the first free address of the range (kept while the host lives).
 */
export async function networkLeases(
  s: SimSession,
  name: string,
  signal?: AbortSignal,
): Promise<NetworkLease[]> {
  return s.call("networkLeases", "callMs", signal, (h) => {
    const n = h.networks.get(name);
    if (!n) throw s.err("NotFound", "networkLeases", `network ${name} not found`);
    if (!n.active) return [];
    const prefix = Number(n.spec.address?.split("/")[1] ?? 24);
    const table = h.dhcp.get(name) ?? new Map<string, string>();
    h.dhcp.set(name, table);
    const leases: NetworkLease[] = [];
    for (const d of h.domains.values()) {
      if (d.state.state !== "running") continue;
      for (const nic of d.spec.interfaces) {
        if (nic.network !== name) continue;
        const mac = nic.mac.toLowerCase();
        const fixed = n.spec.leases?.find((l) => l.mac.toLowerCase() === mac);
        let ip = fixed?.ip ?? table.get(mac);
        if (!ip && n.spec.dhcpRange)
          ip = freeAddress(n.spec.dhcpRange, new Set(table.values()), n.spec.leases);
        if (!ip) continue;
        if (!fixed) table.set(mac, ip);
        leases.push({
          mac,
          ip,
          prefix,
          ...(fixed?.hostname ? { hostname: fixed.hostname } : {}),
          expiresAt: 0,
        });
      }
    }
    return leases;
  });
}

const ipNum = (ip: string) => ip.split(".").reduce((a, o) => a * 256 + Number(o), 0);
const ipStr = (n: number) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");

/** The range's first address neither handed out nor reserved by a fixed lease. */
function freeAddress(
  range: { start: string; end: string },
  taken: Set<string>,
  fixed: NetworkSpec["leases"],
): string | undefined {
  const reserved = new Set((fixed ?? []).map((l) => l.ip));
  for (let a = ipNum(range.start); a <= ipNum(range.end); a++) {
    const ip = ipStr(a);
    if (!taken.has(ip) && !reserved.has(ip)) return ip;
  }
  return undefined;
}
