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
    [
      "disk",
      "interface",
      "serial",
      "host",
      "range",
      "ip",
      "disk-snapshot",
      "controller",
      "memballoon",
    ].includes(name),
});

// biome-ignore lint/suspicious/noExplicitAny: parsed XML is untyped
type X = any;

export function renderDomainXML(spec: DomainSpec, opts: { kvm: boolean }): string {
  const disks = spec.disks.map(diskElement);
  const nics = spec.interfaces.map(interfaceElement);
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
      // With a maximum, <memory> is the domain's size and <currentMemory> the balloon's target
      // (not <maxMemory>: that is DIMM hotplug, which needs guest NUMA).
      memory: { "@_unit": "KiB", "#text": kib(spec.maxMemoryBytes ?? spec.memoryBytes) },
      ...(spec.maxMemoryBytes !== undefined
        ? { currentMemory: { "@_unit": "KiB", "#text": kib(spec.memoryBytes) } }
        : {}),
      vcpu:
        spec.maxVcpus !== undefined && spec.maxVcpus > spec.vcpus
          ? { "@_current": String(spec.vcpus), "#text": String(spec.maxVcpus) }
          : String(spec.vcpus),
      os,
      // ACPI: PCI hotplug of NICs (and a guest's orderly shutdown on request) go through it.
      features: { acpi: "" },
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
        // A balloon only where memory may change live: it is the device that does it.
        memballoon: { "@_model": spec.maxMemoryBytes !== undefined ? "virtio" : "none" },
      },
    },
  };
  return builder.build(doc) as string;
}

const kib = (bytes: number): string => String(Math.floor(bytes / 1024));

function diskElement(d: DomainDiskSpec): X {
  return {
    "@_type": "volume",
    "@_device": "disk",
    driver: { "@_name": "qemu", "@_type": d.format },
    source: { "@_pool": d.pool, "@_volume": d.volume },
    target: { "@_dev": d.target, "@_bus": d.bus },
    ...(d.readOnly ? { readonly: "" } : {}),
    ...(d.bootOrder !== undefined ? { boot: { "@_order": String(d.bootOrder) } } : {}),
  };
}

/** One disk as a device document, for attach and detach (libvirt matches a disk to detach by target). */
export function renderDiskXML(d: DomainDiskSpec): string {
  return builder.build({ disk: diskElement(d) }) as string;
}

function interfaceElement(n: DomainInterfaceSpec): X {
  return {
    "@_type": "network",
    mac: { "@_address": n.mac },
    source: { "@_network": n.network },
    model: { "@_type": n.model },
  };
}

/** One NIC as a device document, for attach and detach (libvirt matches a NIC to detach by MAC). */
export function renderInterfaceXML(n: DomainInterfaceSpec): string {
  return builder.build({ interface: interfaceElement(n) }) as string;
}

/**
 * XML from a host that does not say what we need, or is not XML at all: the document kind, the
 * object's name when known, and the element or attribute at fault.
 */
export class LibvirtXmlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LibvirtXmlError";
  }
}

/** Parse `xml` and return its `root` element as an object (attributes and children). */
export function parseRoot(xml: string, root: string): X {
  if (typeof xml !== "string") throw new LibvirtXmlError(`${root} XML: not a string`);
  let doc: X;
  try {
    doc = xmlParser.parse(xml);
  } catch (e) {
    throw new LibvirtXmlError(`${root} XML: not well-formed: ${(e as Error).message}`);
  }
  const el = isObject(doc) ? doc[root] : undefined;
  if (el === "") return {};
  if (!isObject(el)) throw new LibvirtXmlError(`${root} XML: no single <${root}> element`);
  return el;
}

export const isObject = (v: X): boolean => typeof v === "object" && v !== null && !Array.isArray(v);

/** An element that may appear at most once: its object form ({} for `<x/>`), or undefined. */
export function element(parent: X, name: string, where: string): X {
  const v = isObject(parent) ? parent[name] : undefined;
  if (v === undefined) return undefined;
  if (Array.isArray(v)) throw new LibvirtXmlError(`${where}: more than one <${name}>`);
  return isObject(v) ? v : { "#text": v };
}

/** Repeated elements (declared in the parser's isArray list) as objects; text-only ones wrapped. */
export function elements(parent: X, name: string): X[] {
  const v = isObject(parent) ? parent[name] : undefined;
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).map((e: X) => (isObject(e) ? e : { "#text": e }));
}

/** The text of an element (its `#text`), or undefined. */
export function textOf(parent: X, name: string, where: string): string | undefined {
  const el = element(parent, name, where);
  const t = el?.["#text"];
  return t === undefined || t === "" ? (el ? "" : undefined) : String(t);
}

/** A string attribute of an element object, or undefined. */
export function attr(el: X, name: string): string | undefined {
  const v = isObject(el) ? el[`@_${name}`] : undefined;
  return v === undefined ? undefined : String(v);
}

function integer(v: string | undefined, what: string, min: number): number {
  const n = v === undefined ? Number.NaN : Number(v.trim());
  if (!Number.isSafeInteger(n) || n < min)
    throw new LibvirtXmlError(
      `${what} is ${v === undefined ? "missing" : `"${v}"`}, not an integer >= ${min}`,
    );
  return n;
}

/** libvirt's memory units (virScaleInteger): SI for KB/MB/..., binary for k/KiB/M/MiB/... */
const UNITS: Record<string, number> = {
  b: 1,
  bytes: 1,
  KB: 1e3,
  k: 1024,
  KiB: 1024,
  MB: 1e6,
  M: 1024 ** 2,
  MiB: 1024 ** 2,
  GB: 1e9,
  G: 1024 ** 3,
  GiB: 1024 ** 3,
  TB: 1e12,
  T: 1024 ** 4,
  TiB: 1024 ** 4,
};

function memoryElementBytes(dom: X, name: "memory" | "currentMemory", where: string): number | undefined {
  const m = element(dom, name, where);
  if (!m) return undefined;
  const unit = attr(m, "unit") ?? "KiB";
  const mult = UNITS[unit];
  if (!mult) throw new LibvirtXmlError(`${where}: <${name} unit='${unit}'> is not a unit libvirt knows`);
  return integer(m["#text"] === undefined ? undefined : String(m["#text"]), `${where}: <${name}>`, 0) * mult;
}

/**
 * The guest's memory and, for a domain with a virtio balloon, its size (the most it can be given
 * live): <currentMemory> and <memory>. Without a balloon the two are one figure, <memory>.
 */
function memory(dom: X, devices: X, where: string): { memoryBytes: number; maxMemoryBytes?: number } {
  const size = memoryElementBytes(dom, "memory", where);
  if (size === undefined) throw new LibvirtXmlError(`${where}: no <memory>`);
  const balloon = elements(devices, "memballoon").some((b: X) => attr(b, "model") === "virtio");
  if (!balloon) return { memoryBytes: size };
  const current = memoryElementBytes(dom, "currentMemory", where) ?? size;
  if (current > size)
    throw new LibvirtXmlError(`${where}: <currentMemory> ${current} B is above <memory> ${size} B`);
  return { memoryBytes: current, maxMemoryBytes: size };
}

/** The vCPUs the domain runs with (`<vcpu current='N'>` when present, else the maximum) and the maximum when above. */
function vcpus(dom: X, where: string): { vcpus: number; maxVcpus?: number } {
  const v = element(dom, "vcpu", where);
  if (!v) return { vcpus: 1 };
  const max = integer(v["#text"] === undefined ? undefined : String(v["#text"]), `${where}: <vcpu>`, 1);
  const current = attr(v, "current");
  if (current === undefined) return { vcpus: max };
  const n = integer(current, `${where}: <vcpu current>`, 1);
  if (n > max) throw new LibvirtXmlError(`${where}: <vcpu current='${n}'> is above its maximum ${max}`);
  return n < max ? { vcpus: n, maxVcpus: max } : { vcpus: n };
}

/**
 * Read a domain's XML. Throws LibvirtXmlError (never a TypeError) when the document is not XML,
 * has no single <domain>, or lacks or garbles a field the spec needs (name, memory, vcpu, a
 * disk's target).
 */
export function parseDomainXML(xml: string): DomainSpec {
  const dom = parseRoot(xml, "domain");
  const name = textOf(dom, "name", "domain XML");
  if (!name) throw new LibvirtXmlError("domain XML: no <name>");
  const where = `domain ${name}`;
  const devices = element(dom, "devices", where) ?? {};
  const disks: DomainDiskSpec[] = elements(devices, "disk")
    .filter((d: X) => (attr(d, "device") ?? "disk") === "disk")
    .map((d: X) => {
      const target = element(d, "target", `${where}: <disk>`);
      const dev = attr(target, "dev");
      if (!dev) throw new LibvirtXmlError(`${where}: a <disk> without <target dev>`);
      const source = element(d, "source", `${where}: disk ${dev}`);
      const driver = element(d, "driver", `${where}: disk ${dev}`);
      const disk: DomainDiskSpec = {
        target: dev,
        bus: (attr(target, "bus") ?? "virtio") as DomainDiskSpec["bus"],
        pool: attr(source, "pool") ?? "",
        volume: attr(source, "volume") ?? attr(source, "file") ?? "",
        format: attr(driver, "type") === "raw" ? "raw" : "qcow2",
      };
      if (isObject(d) && d.readonly !== undefined) disk.readOnly = true;
      const order = attr(element(d, "boot", `${where}: disk ${dev}`), "order");
      if (order) disk.bootOrder = integer(order, `${where}: disk ${dev} <boot order>`, 1);
      return disk;
    });
  const interfaces: DomainInterfaceSpec[] = elements(devices, "interface").map((n: X) => {
    const source = element(n, "source", `${where}: <interface>`);
    return {
      network: attr(source, "network") ?? attr(source, "bridge") ?? "",
      mac: (attr(element(n, "mac", `${where}: <interface>`), "address") ?? "").toLowerCase(),
      model: (attr(element(n, "model", `${where}: <interface>`), "type") ??
        "virtio") as DomainInterfaceSpec["model"],
    };
  });
  const cpu = vcpus(dom, where);
  const mem = memory(dom, devices, where);
  const spec: DomainSpec = {
    name,
    vcpus: cpu.vcpus,
    memoryBytes: mem.memoryBytes,
    disks,
    interfaces,
  };
  if (cpu.maxVcpus !== undefined) spec.maxVcpus = cpu.maxVcpus;
  if (mem.maxMemoryBytes !== undefined) spec.maxMemoryBytes = mem.maxMemoryBytes;
  const uuid = textOf(dom, "uuid", where);
  if (uuid) spec.uuid = uuid;
  const os = element(dom, "os", where) ?? {};
  const kernel = textOf(os, "kernel", where);
  const initrd = textOf(os, "initrd", where);
  const cmdline = textOf(os, "cmdline", where);
  if (kernel || initrd || cmdline) {
    spec.boot = {};
    if (kernel) spec.boot.kernel = kernel;
    if (initrd) spec.boot.initrd = initrd;
    if (cmdline) spec.boot.cmdline = cmdline;
  }
  const serial = elements(devices, "serial").find((s: X) => attr(s, "type") === "file");
  const serialPath = attr(element(serial, "source", `${where}: <serial>`), "path");
  if (serialPath) spec.serialLogPath = serialPath;
  const owner = parseOwner(dom.metadata);
  if (owner) spec.ownership = owner;
  return spec;
}

/**
 * For a domain whose XML parseDomainXML refuses: whether it carries virtwarden's ownership mark
 * (our namespace appears anywhere in it: a mark too garbled to read still counts, so such a
 * domain is never mistaken for a foreign one), and the mark itself when it can still be read.
 * Never throws.
 */
export function readOwnershipMark(xml: string): { marked: boolean; ownership?: DomainOwnership } {
  if (typeof xml !== "string" || !xml.includes(OWNER_NS)) return { marked: false };
  try {
    const ownership = parseOwner(parseRoot(xml, "domain").metadata);
    return ownership ? { marked: true, ownership } : { marked: true };
  } catch {
    return { marked: true };
  }
}

function parseOwner(metadata: X): DomainOwnership | undefined {
  if (!isObject(metadata)) return undefined;
  for (const [k, v] of Object.entries(metadata as Record<string, X>)) {
    if ((!k.endsWith(":owner") && k !== "owner") || !isObject(v)) continue;
    const ns = Object.entries(v).find(([a]) => a.startsWith("@_xmlns"))?.[1];
    if (ns !== OWNER_NS) continue;
    const generation = Number(attr(v, "generation") ?? 0);
    return {
      uid: attr(v, "uid") ?? "",
      kind: "VirtualMachine",
      namespace: attr(v, "namespace") ?? "",
      name: attr(v, "name") ?? "",
      generation: Number.isSafeInteger(generation) ? generation : 0,
      specHash: attr(v, "specHash") ?? "",
    };
  }
  return undefined;
}
