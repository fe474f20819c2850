/**
 * VirtualNetwork -> NetworkSpec for libvirt, and the pure per-host decision. The libvirt network
 * is named `<namespace>_<name>` (render.ts of the VM reconciler uses the same name for NICs).
 */
import { createHash } from "node:crypto";
import { firstHost } from "../../api/addresses.js";
import type { VirtualNetwork } from "../../api/types.js";
import { canonical } from "../../providers/spec-hash.js";
import type { NetworkInfo, NetworkSpec } from "../../providers/types.js";
import { libvirtNetworkName } from "../virtualmachine/render.js";

/**
 * The libvirt network for a VirtualNetwork. `claims` are the fixed IPs its VMs ask for (with their
 * MACs and names): they join the network's own leases as DHCP host entries (the network's own
 * entry wins for the same MAC).
 */
export function renderNetwork(
  vnet: VirtualNetwork,
  claims: { mac: string; ip: string; hostname?: string }[] = [],
): NetworkSpec {
  const ns = vnet.metadata.namespace ?? "default";
  const name = libvirtNetworkName(ns, vnet.metadata.name);
  const s = vnet.spec;
  // Linux bridge names are at most 15 characters: derive a stable one for networks libvirt makes.
  const bridge =
    s.mode === "bridge"
      ? s.bridge
      : (s.bridge ?? `vw-${createHash("sha1").update(name).digest("hex").slice(0, 8)}`);
  const spec: NetworkSpec = { name, mode: s.mode };
  if (bridge) spec.bridge = bridge;
  if (s.subnet && s.mode !== "bridge")
    spec.address = `${s.gateway ?? firstHost(s.subnet)}/${s.subnet.split("/")[1]}`;
  if (s.dhcp?.range) spec.dhcpRange = { ...s.dhcp.range };
  const leases = (s.dhcp?.leases ?? []).map((l) => ({ ...l, mac: l.mac.toLowerCase() }));
  const macs = new Set(leases.map((l) => l.mac));
  const ips = new Set(leases.map((l) => l.ip));
  for (const c of [...claims].sort((a, b) => a.ip.localeCompare(b.ip))) {
    const mac = c.mac.toLowerCase();
    if (macs.has(mac) || ips.has(c.ip)) continue;
    macs.add(mac);
    ips.add(c.ip);
    leases.push({ mac, ip: c.ip, ...(c.hostname ? { hostname: c.hostname } : {}) });
  }
  if (leases.length) spec.leases = leases;
  if (s.mtu) spec.mtu = s.mtu;
  if (s.vlan) spec.vlan = s.vlan;
  const hash = createHash("sha256").update(JSON.stringify(spec)).digest("hex").slice(0, 16);
  spec.ownership = { uid: vnet.metadata.uid ?? "", namespace: ns, name: vnet.metadata.name, specHash: hash };
  return spec;
}

export type NetworkAction = "ensure" | "none";

/** What one host needs: create or correct the network, or nothing. `drift` names what differed. */
export function decideHostNetwork(
  desired: NetworkSpec,
  actual: NetworkInfo | undefined,
): { action: NetworkAction; drift?: string } {
  if (!actual) return { action: "ensure", drift: "missing" };
  const { ownership: _a, ...want } = desired;
  const { ownership: _b, ...have } = actual.spec;
  if (JSON.stringify(canonical(want)) !== JSON.stringify(canonical(have)))
    return { action: "ensure", drift: "configuration" };
  if (!actual.active) return { action: "ensure", drift: "inactive" };
  if (actual.relinkPending) return { action: "ensure", drift: "relink" };
  return { action: "none" };
}
