/**
 * Network, volume, pool and snapshot XML for libvirt. Networks carry virtwarden's ownership in
 * <metadata> like domains, so a network edited behind our back is told apart from a spec change.
 */
import { XMLBuilder } from "fast-xml-parser";
import type { CreateVolumeOptions, NetworkSpec, SnapshotInfo, VolumeInfo } from "../types.js";
import { attr, element, elements, isObject, LibvirtXmlError, parseRoot, textOf } from "./domain-xml.js";

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  format: true,
  suppressEmptyNode: true,
});
export const NETWORK_NS = "https://virtwarden.io/xmlns/network/v1";

// biome-ignore lint/suspicious/noExplicitAny: parsed XML is untyped
type X = any;

export function renderNetworkXML(n: NetworkSpec): string {
  const net: X = { name: n.name };
  if (n.ownership) {
    net.metadata = {
      "vw:owner": {
        "@_xmlns:vw": NETWORK_NS,
        "@_uid": n.ownership.uid,
        "@_namespace": n.ownership.namespace,
        "@_name": n.ownership.name,
        "@_specHash": n.ownership.specHash,
      },
    };
  }
  if (n.mode === "nat" || n.mode === "route") net.forward = { "@_mode": n.mode };
  if (n.mode === "bridge") net.forward = { "@_mode": "bridge" };
  // A bridge libvirt makes for a nat, route or isolated network holds only guests' taps: no loop
  // for STP to break, and with STP on the kernel holds each new port for 2 x its 2 s minimum
  // forward delay before it forwards (a guest moved or added would be cut off for ~4 s).
  if (n.bridge)
    net.bridge =
      n.mode === "bridge" ? { "@_name": n.bridge } : { "@_name": n.bridge, "@_stp": "off", "@_delay": "0" };
  if (n.mtu) net.mtu = { "@_size": String(n.mtu) };
  if (n.vlan) net.vlan = { tag: { "@_id": String(n.vlan) } };
  if (n.address && n.mode !== "bridge") {
    const [addr, prefix] = n.address.split("/");
    const ip: X = { "@_address": addr, "@_prefix": prefix };
    if (n.dhcpRange || n.leases?.length) {
      ip.dhcp = {
        ...(n.dhcpRange ? { range: [{ "@_start": n.dhcpRange.start, "@_end": n.dhcpRange.end }] } : {}),
        ...(n.leases?.length
          ? {
              host: n.leases.map((l) => ({
                "@_mac": l.mac,
                "@_ip": l.ip,
                ...(l.hostname ? { "@_name": l.hostname } : {}),
              })),
            }
          : {}),
      };
    }
    net.ip = [ip];
  }
  return builder.build({ network: net }) as string;
}

/**
 * `<ip netmask='255.255.255.0'>` as a prefix length (24); a mask whose one-bits are not
 * contiguous from the top (255.0.255.0) has no prefix and is refused.
 */
export function netmaskToPrefix(mask: string, where: string): number {
  const parts = mask.split(".");
  const octets = parts.map((p) => (/^\d{1,3}$/.test(p) ? Number(p) : Number.NaN));
  if (octets.length !== 4 || octets.some((o) => !(o >= 0 && o <= 255)))
    throw new LibvirtXmlError(`${where}: <ip netmask='${mask}'> is not a dotted-quad IPv4 mask`);
  const bits = octets.reduce((acc, o) => acc * 256 + o, 0);
  let prefix = 0;
  while (prefix < 32 && bits >= 2 ** 32 - 2 ** (32 - prefix - 1)) prefix++;
  const expected = prefix === 0 ? 0 : 2 ** 32 - 2 ** (32 - prefix);
  if (bits !== expected)
    throw new LibvirtXmlError(
      `${where}: <ip netmask='${mask}'> is not a contiguous netmask (no prefix length)`,
    );
  return prefix;
}

function optionalInteger(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v.trim());
  if (!Number.isSafeInteger(n) || n < 0) throw new LibvirtXmlError(`${what} is "${v}", not an integer`);
  return n;
}

/**
 * Read a network's XML: its first IPv4 `<ip>` (prefix= or netmask=), DHCP range and fixed
 * leases, bridge, MTU, VLAN and our ownership mark. Throws LibvirtXmlError, never a TypeError.
 */
export function parseNetworkXML(xml: string): NetworkSpec {
  const net = parseRoot(xml, "network");
  const name = textOf(net, "name", "network XML");
  if (!name) throw new LibvirtXmlError("network XML: no <name>");
  const where = `network ${name}`;
  const fwd = attr(element(net, "forward", where), "mode");
  const mode: NetworkSpec["mode"] =
    fwd === "nat" ? "nat" : fwd === "route" ? "route" : fwd === "bridge" ? "bridge" : "isolated";
  const spec: NetworkSpec = { name, mode };
  const bridge = attr(element(net, "bridge", where), "name");
  if (bridge) spec.bridge = bridge;
  const ip = elements(net, "ip").find((i: X) => (attr(i, "family") ?? "ipv4") === "ipv4");
  const address = attr(ip, "address");
  if (address) {
    const prefix = attr(ip, "prefix");
    const mask = attr(ip, "netmask");
    if (prefix !== undefined) {
      const n = optionalInteger(prefix, `${where}: <ip prefix>`) as number;
      if (n > 32) throw new LibvirtXmlError(`${where}: <ip prefix='${prefix}'> is above 32`);
      spec.address = `${address}/${n}`;
    } else if (mask !== undefined) spec.address = `${address}/${netmaskToPrefix(mask, where)}`;
  }
  const dhcp = element(ip, "dhcp", `${where}: <ip>`);
  const range = elements(dhcp, "range")[0];
  const start = attr(range, "start");
  const end = attr(range, "end");
  if (start && end) spec.dhcpRange = { start, end };
  const hosts = elements(dhcp, "host");
  if (hosts.length) {
    spec.leases = hosts.map((h: X) => {
      const mac = attr(h, "mac");
      const hip = attr(h, "ip");
      if (!mac || !hip) throw new LibvirtXmlError(`${where}: a DHCP <host> without mac= and ip=`);
      const hostname = attr(h, "name");
      return { mac: mac.toLowerCase(), ip: hip, ...(hostname ? { hostname } : {}) };
    });
  }
  const mtu = optionalInteger(attr(element(net, "mtu", where), "size"), `${where}: <mtu size>`);
  if (mtu) spec.mtu = mtu;
  const vlanTag = element(element(net, "vlan", where), "tag", `${where}: <vlan>`);
  const vlan = optionalInteger(attr(vlanTag, "id"), `${where}: <vlan><tag id>`);
  if (vlan) spec.vlan = vlan;
  const metadata = isObject(net.metadata) ? (net.metadata as Record<string, X>) : {};
  const owner = Object.entries(metadata).find(([k, v]) => k.endsWith("owner") && isObject(v))?.[1];
  if (owner && Object.values(owner).includes(NETWORK_NS)) {
    spec.ownership = {
      uid: attr(owner, "uid") ?? "",
      namespace: attr(owner, "namespace") ?? "",
      name: attr(owner, "name") ?? "",
      specHash: attr(owner, "specHash") ?? "",
    };
  }
  return spec;
}

export function renderVolumeXML(o: CreateVolumeOptions, backingPath?: string): string {
  const vol: X = {
    name: o.name,
    capacity: { "@_unit": "bytes", "#text": String(o.capacityBytes) },
    target: { format: { "@_type": o.format } },
  };
  if (backingPath) vol.backingStore = { path: backingPath, format: { "@_type": "qcow2" } };
  return builder.build({ volume: vol }) as string;
}

export function parseVolumeXML(xml: string): {
  format: VolumeInfo["format"];
  backingPath?: string;
  path?: string;
} {
  const vol = parseRoot(xml, "volume");
  const target = element(vol, "target", "volume XML");
  const fmt = attr(element(target, "format", "volume XML: <target>"), "type");
  const backing = textOf(element(vol, "backingStore", "volume XML"), "path", "volume XML: <backingStore>");
  const path = textOf(target, "path", "volume XML: <target>");
  return {
    format: fmt === "raw" ? "raw" : "qcow2",
    ...(backing ? { backingPath: backing } : {}),
    ...(path ? { path } : {}),
  };
}

export function parsePoolPath(xml: string): string | undefined {
  const pool = parseRoot(xml, "pool");
  return textOf(element(pool, "target", "pool XML"), "path", "pool XML: <target>") || undefined;
}

export function renderSnapshotXML(name: string, description?: string): string {
  return builder.build({ domainsnapshot: { name, ...(description ? { description } : {}) } }) as string;
}

/**
 * A snapshot definition for VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE: the metadata of an internal
 * snapshot whose data already sits in the disk images (taken on another host). `domainXML` is the
 * domain's configuration, embedded as libvirt requires for a revert.
 */
export function renderRedefineSnapshotXML(
  s: Pick<SnapshotInfo, "name" | "createdAt" | "state" | "memory">,
  domainXML: string,
): string {
  const running = s.state === "running" || s.state === "paused";
  const head = builder.build({
    name: s.name,
    state: s.state,
    creationTime: String(Math.floor(s.createdAt.getTime() / 1000)),
    memory: { "@_snapshot": running ? "internal" : "no" },
  }) as string;
  const body = domainXML.replace(/^<\?xml[^>]*>\s*/, "");
  return `<domainsnapshot>${head}${body}</domainsnapshot>`;
}

export function parseSnapshotXML(xml: string, domain: string): Omit<SnapshotInfo, "current"> {
  const s = parseRoot(xml, "domainsnapshot");
  const where = `snapshot XML of domain ${domain}`;
  const name = textOf(s, "name", where);
  if (!name) throw new LibvirtXmlError(`${where}: no <name>`);
  const state = textOf(s, "state", where) || "shutoff";
  const created = Number(textOf(s, "creationTime", where) ?? 0);
  const memorySnapshot = attr(element(s, "memory", where), "snapshot");
  const parent = textOf(element(s, "parent", where), "name", `${where}: <parent>`);
  const description = textOf(s, "description", where);
  return {
    name,
    domain,
    createdAt: new Date((Number.isFinite(created) ? created : 0) * 1000),
    memory:
      memorySnapshot === "internal" ||
      memorySnapshot === "external" ||
      state === "running" ||
      state === "paused",
    state: (["running", "paused", "shutoff", "crashed", "blocked", "shutdown", "pmsuspended"].includes(state)
      ? state
      : "nostate") as SnapshotInfo["state"],
    ...(parent ? { parent } : {}),
    ...(description ? { description } : {}),
  };
}
