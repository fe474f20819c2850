/**
 * DomainSpec <-> libvirt domain XML, with virtwarden's ownership mark in <metadata>.
 *
 * Contract: parseDomainXML(renderDomainXML(spec)) equals spec for every DomainSpec field, and
 * parsing the XML libvirt hands back (with its added defaults: uuid, controllers, addresses,
 * emulator, ...) yields the same DomainSpec — so a difference is drift, never formatting.
 * `on_crash` is destroy: a crashed guest is reported (shut off, reason crashed) and restarted by
 * virtwarden's policy, never silently by libvirt.
 */
import { XMLBuilder, XMLParser } from "fast-xml-parser";
import type { DomainDiskSpec, DomainInterfaceSpec, DomainOwnership, DomainSpec } from "../types.js";

export const OWNER_NS = "https://virtwarden.io/xmlns/domain/v1";

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  format: true,
  suppressEmptyNode: true,
});

export const xmlParser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  parseAttributeValue: false,
  parseTagValue: false,
  isArray: (name) =>
    ["disk", "interface", "serial", "host", "range", "ip", "disk-snapshot", "controller"].includes(name),
});

// biome-ignore lint/suspicious/noExplicitAny: parsed XML is untyped
type X = any;

export function renderDomainXML(spec: DomainSpec, opts: { kvm: boolean }): string {
  const disks = spec.disks.map((d) => ({
    "@_type": "volume",
    "@_device": "disk",
    driver: { "@_name": "qemu", "@_type": d.format },
    source: { "@_pool": d.pool, "@_volume": d.volume },
    target: { "@_dev": d.target, "@_bus": d.bus },
    ...(d.readOnly ? { readonly: "" } : {}),
    ...(d.bootOrder !== undefined ? { boot: { "@_order": String(d.bootOrder) } } : {}),
  }));
  const nics = spec.interfaces.map((n) => ({
    "@_type": "network",
    mac: { "@_address": n.mac },
    source: { "@_network": n.network },
    model: { "@_type": n.model },
  }));
  const os: X = { type: { "@_arch": "x86_64", "#text": "hvm" } };
  if (spec.boot?.kernel) os.kernel = spec.boot.kernel;
  if (spec.boot?.initrd) os.initrd = spec.boot.initrd;
  if (spec.boot?.cmdline) os.cmdline = spec.boot.cmdline;
  const o = spec.ownership;
  const doc: X = {
    domain: {
      "@_type": opts.kvm ? "kvm" : "qemu",
      name: spec.name,
      ...(spec.uuid ? { uuid: spec.uuid } : {}),
      ...(o
        ? {
            metadata: {
              "vw:owner": {
                "@_xmlns:vw": OWNER_NS,
                "@_uid": o.uid,
                "@_kind": o.kind,
                "@_namespace": o.namespace,
                "@_name": o.name,
                "@_generation": String(o.generation),
                "@_specHash": o.specHash,
              },
            },
          }
        : {}),
      memory: { "@_unit": "KiB", "#text": String(Math.floor(spec.memoryBytes / 1024)) },
      vcpu: String(spec.vcpus),
      os,
      on_poweroff: "destroy",
      on_reboot: "restart",
      on_crash: "destroy",
      devices: {
        disk: disks,
        interface: nics,
        ...(spec.serialLogPath
          ? {
              serial: [
                { "@_type": "file", source: { "@_path": spec.serialLogPath }, target: { "@_port": "0" } },
              ],
            }
          : {}),
        memballoon: { "@_model": "none" },
      },
    },
  };
  return builder.build(doc) as string;
}

const text = (v: X): string | undefined =>
  v === undefined ? undefined : typeof v === "object" ? v["#text"] : String(v);

function memoryBytes(m: X): number {
  const value = Number(text(m) ?? 0);
  const unit = (typeof m === "object" ? m["@_unit"] : "KiB") ?? "KiB";
  const mult: Record<string, number> = {
    b: 1,
    bytes: 1,
    KiB: 1024,
    k: 1024,
    MiB: 1024 ** 2,
    M: 1024 ** 2,
    GiB: 1024 ** 3,
    G: 1024 ** 3,
  };
  return value * (mult[unit] ?? 1024);
}

export function parseDomainXML(xml: string): DomainSpec {
  const dom: X = xmlParser.parse(xml).domain;
  if (!dom) throw new Error("not a domain XML document");
  const devices: X = dom.devices ?? {};
  const disks: DomainDiskSpec[] = (devices.disk ?? [])
    .filter((d: X) => (d["@_device"] ?? "disk") === "disk")
    .map((d: X) => {
      const disk: DomainDiskSpec = {
        target: d.target?.["@_dev"],
        bus: d.target?.["@_bus"] ?? "virtio",
        pool: d.source?.["@_pool"] ?? "",
        volume: d.source?.["@_volume"] ?? d.source?.["@_file"] ?? "",
        format: d.driver?.["@_type"] === "raw" ? "raw" : "qcow2",
      };
      if (d.readonly !== undefined) disk.readOnly = true;
      if (d.boot?.["@_order"]) disk.bootOrder = Number(d.boot["@_order"]);
      return disk;
    });
  const interfaces: DomainInterfaceSpec[] = (devices.interface ?? []).map((n: X) => ({
    network: n.source?.["@_network"] ?? n.source?.["@_bridge"] ?? "",
    mac: String(n.mac?.["@_address"] ?? "").toLowerCase(),
    model: n.model?.["@_type"] ?? "virtio",
  }));
  const spec: DomainSpec = {
    name: String(dom.name),
    vcpus: Number(text(dom.vcpu) ?? 1),
    memoryBytes: memoryBytes(dom.memory),
    disks,
    interfaces,
  };
  if (dom.uuid) spec.uuid = String(dom.uuid);
  const os = dom.os ?? {};
  if (os.kernel || os.initrd || os.cmdline) {
    spec.boot = {};
    if (os.kernel) spec.boot.kernel = String(os.kernel);
    if (os.initrd) spec.boot.initrd = String(os.initrd);
    if (os.cmdline) spec.boot.cmdline = String(os.cmdline);
  }
  const serial = (devices.serial ?? []).find((s: X) => s["@_type"] === "file");
  if (serial?.source?.["@_path"]) spec.serialLogPath = String(serial.source["@_path"]);
  const owner = parseOwner(dom.metadata);
  if (owner) spec.ownership = owner;
  return spec;
}

function parseOwner(metadata: X): DomainOwnership | undefined {
  if (!metadata || typeof metadata !== "object") return undefined;
  for (const [k, v] of Object.entries(metadata as Record<string, X>)) {
    if (!k.endsWith(":owner") && k !== "owner") continue;
    const ns = Object.entries(v ?? {}).find(([a]) => a.startsWith("@_xmlns"))?.[1];
    if (ns !== OWNER_NS) continue;
    return {
      uid: v["@_uid"] ?? "",
      kind: "VirtualMachine",
      namespace: v["@_namespace"] ?? "",
      name: v["@_name"] ?? "",
      generation: Number(v["@_generation"] ?? 0),
      specHash: v["@_specHash"] ?? "",
    };
  }
  return undefined;
}
