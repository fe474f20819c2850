/**
 * Network, volume, pool and snapshot XML for libvirt. Networks carry virtwarden's ownership in
 * <metadata> like domains, so a network edited behind our back is told apart from a spec change.
 */
import { XMLBuilder } from "fast-xml-parser";
import type { CreateVolumeOptions, NetworkSpec, SnapshotInfo, VolumeInfo } from "../types.js";
import { xmlParser } from "./domain-xml.js";

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

export function parseNetworkXML(xml: string): NetworkSpec {
  const net: X = xmlParser.parse(xml).network;
  const fwd = net.forward?.["@_mode"];
  const mode: NetworkSpec["mode"] =
    fwd === "nat" ? "nat" : fwd === "route" ? "route" : fwd === "bridge" ? "bridge" : "isolated";
  const spec: NetworkSpec = { name: String(net.name), mode };
  if (net.bridge?.["@_name"]) spec.bridge = String(net.bridge["@_name"]);
  const ip = (net.ip ?? [])[0];
  if (ip?.["@_address"] && ip["@_prefix"]) spec.address = `${ip["@_address"]}/${ip["@_prefix"]}`;
  const range = ip?.dhcp?.range?.[0];
  if (range) spec.dhcpRange = { start: range["@_start"], end: range["@_end"] };
  const hosts = ip?.dhcp?.host ?? [];
  if (hosts.length) {
    spec.leases = hosts.map((h: X) => ({
      mac: String(h["@_mac"]).toLowerCase(),
      ip: h["@_ip"],
      ...(h["@_name"] ? { hostname: h["@_name"] } : {}),
    }));
  }
  if (net.mtu?.["@_size"]) spec.mtu = Number(net.mtu["@_size"]);
  if (net.vlan?.tag?.["@_id"]) spec.vlan = Number(net.vlan.tag["@_id"]);
  const owner = Object.entries((net.metadata ?? {}) as Record<string, X>).find(([k]) =>
    k.endsWith("owner"),
  )?.[1];
  if (owner && Object.values(owner).includes(NETWORK_NS)) {
    spec.ownership = {
      uid: owner["@_uid"],
      namespace: owner["@_namespace"],
      name: owner["@_name"],
      specHash: owner["@_specHash"],
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
  const vol: X = xmlParser.parse(xml).volume ?? {};
  const fmt = vol.target?.format?.["@_type"];
  const backing = vol.backingStore?.path;
  return {
    format: fmt === "raw" ? "raw" : "qcow2",
    ...(backing ? { backingPath: String(backing) } : {}),
    ...(vol.target?.path ? { path: String(vol.target.path) } : {}),
  };
}

export function parsePoolPath(xml: string): string | undefined {
  const pool: X = xmlParser.parse(xml).pool ?? {};
  return pool.target?.path ? String(pool.target.path) : undefined;
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
  const s: X = xmlParser.parse(xml).domainsnapshot ?? {};
  const state = String(s.state ?? "shutoff");
  return {
    name: String(s.name),
    domain,
    createdAt: new Date(Number(s.creationTime ?? 0) * 1000),
    memory:
      s.memory?.["@_snapshot"] === "internal" ||
      s.memory?.["@_snapshot"] === "external" ||
      state === "running" ||
      state === "paused",
    state: (["running", "paused", "shutoff", "crashed", "blocked", "shutdown", "pmsuspended"].includes(state)
      ? state
      : "nostate") as SnapshotInfo["state"],
    ...(s.parent?.name ? { parent: String(s.parent.name) } : {}),
    ...(s.description ? { description: String(s.description) } : {}),
  };
}
