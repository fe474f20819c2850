import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseDomainXML, renderDomainXML } from "../../../src/providers/libvirt/domain-xml.js";
import { parseNetworkXML, renderNetworkXML } from "../../../src/providers/libvirt/xml.js";
import type { DomainSpec, NetworkSpec } from "../../../src/providers/types.js";

const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,20}_[a-z][a-z0-9-]{0,20}$/);
const mac = fc
  .tuple(fc.nat(255), fc.nat(255), fc.nat(255))
  .map((b) => `52:54:00:${b.map((x) => x.toString(16).padStart(2, "0")).join(":")}`);
const word = fc.stringMatching(/^[a-zA-Z0-9._-]{1,30}$/);

const baseSpec: fc.Arbitrary<DomainSpec> = fc.record(
  {
    name,
    vcpus: fc.integer({ min: 1, max: 64 }),
    memoryBytes: fc.integer({ min: 1, max: 65536 }).map((mib) => mib * 1024 * 1024),
    disks: fc.uniqueArray(
      fc.record(
        {
          target: fc.constantFrom("vda", "vdb", "vdc", "sda", "sdb", "hda"),
          bus: fc.constantFrom("virtio" as const, "scsi" as const, "sata" as const, "ide" as const),
          pool: word,
          volume: word,
          format: fc.constantFrom("qcow2" as const, "raw" as const),
          readOnly: fc.constant(true),
          bootOrder: fc.integer({ min: 1, max: 8 }),
        },
        { requiredKeys: ["target", "bus", "pool", "volume", "format"] },
      ),
      { selector: (d) => d.target, maxLength: 4 },
    ),
    interfaces: fc.array(
      fc.record({
        network: word,
        mac,
        model: fc.constantFrom("virtio" as const, "e1000" as const, "rtl8139" as const),
      }),
      { maxLength: 3 },
    ),
    boot: fc
      .record(
        {
          kernel: fc.constant("/boot/vmlinuz"),
          initrd: fc.constant("/boot/initrd.img"),
          cmdline: fc.constant("console=ttyS0 quiet"),
        },
        { requiredKeys: [] },
      )
      .filter((b) => Object.keys(b).length > 0),
    serialLogPath: fc.constant("/var/log/vw/serial.log"),
    ownership: fc.record({
      uid: fc.uuid(),
      kind: fc.constant("VirtualMachine" as const),
      namespace: fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/),
      name: fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/),
      generation: fc.integer({ min: 0, max: 10_000 }),
      specHash: fc.stringMatching(/^[0-9a-f]{16}$/),
    }),
  },
  { requiredKeys: ["name", "vcpus", "memoryBytes", "disks", "interfaces"] },
);

/** With or without a vCPU maximum above the count, and a balloon with a size at or above memory. */
const domainSpec: fc.Arbitrary<DomainSpec> = fc
  .tuple(
    baseSpec,
    fc.option(fc.integer({ min: 1, max: 64 }), { nil: undefined }),
    fc.option(fc.integer({ min: 0, max: 65536 }), { nil: undefined }),
  )
  .map(([spec, moreCpus, moreMiB]) => {
    const out = { ...spec };
    if (moreCpus !== undefined) out.maxVcpus = spec.vcpus + moreCpus;
    if (moreMiB !== undefined) out.maxMemoryBytes = spec.memoryBytes + moreMiB * 1024 * 1024;
    return out;
  });

describe("domain XML", () => {
  it("parse(render(spec)) = spec for any spec (property)", () => {
    fc.assert(
      fc.property(domainSpec, fc.boolean(), (spec, kvm) => {
        expect(parseDomainXML(renderDomainXML(spec, { kvm }))).toEqual(spec);
      }),
      { numRuns: 300 },
    );
  });

  it("reads the same spec back from the XML libvirt rewrites (defaults, addresses, controllers)", () => {
    const spec: DomainSpec = {
      name: "default_web-0",
      vcpus: 2,
      memoryBytes: 2 * 1024 ** 3,
      disks: [
        {
          target: "vda",
          bus: "virtio",
          pool: "default",
          volume: "default_web-0-root.qcow2",
          format: "qcow2",
        },
      ],
      interfaces: [{ network: "default_backend", mac: "52:54:00:12:34:56", model: "virtio" }],
      ownership: {
        uid: "u-1",
        kind: "VirtualMachine",
        namespace: "default",
        name: "web-0",
        generation: 4,
        specHash: "0123456789abcdef",
      },
    };
    const libvirtXml = `<domain type='kvm'>
  <name>default_web-0</name>
  <uuid>5b1e2c6e-8d1f-4a57-9c2e-2f0e7d3c9a11</uuid>
  <metadata>
    <vw:owner xmlns:vw="https://virtwarden.io/xmlns/domain/v1" uid="u-1" kind="VirtualMachine" namespace="default" name="web-0" generation="4" specHash="0123456789abcdef"/>
  </metadata>
  <memory unit='KiB'>2097152</memory>
  <currentMemory unit='KiB'>2097152</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='default' volume='default_web-0-root.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>
    <controller type='usb' index='0' model='piix3-uhci'/>
    <controller type='pci' index='0' model='pci-root'/>
    <interface type='network'>
      <mac address='52:54:00:12:34:56'/>
      <source network='default_backend'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </interface>
    <memballoon model='none'/>
  </devices>
</domain>`;
    expect(parseDomainXML(libvirtXml)).toEqual({ ...spec, uuid: "5b1e2c6e-8d1f-4a57-9c2e-2f0e7d3c9a11" });
  });

  it("renders the maxima as libvirt knows them: <vcpu current>, <memory> + <currentMemory>, a virtio balloon", () => {
    const spec: DomainSpec = {
      name: "default_web",
      vcpus: 2,
      maxVcpus: 4,
      memoryBytes: 256 * 1024 * 1024,
      maxMemoryBytes: 512 * 1024 * 1024,
      disks: [],
      interfaces: [],
    };
    const xml = renderDomainXML(spec, { kvm: false });
    expect(xml).toMatch(/<memory unit="KiB">524288<\/memory>/);
    expect(xml).toMatch(/<currentMemory unit="KiB">262144<\/currentMemory>/);
    expect(xml).toMatch(/<vcpu current="2">4<\/vcpu>/);
    expect(xml).toMatch(/<memballoon model="virtio"/);
    // Without maxima: one memory figure, no balloon (as before: existing domains read the same).
    const plain = renderDomainXML(
      { ...spec, maxVcpus: undefined, maxMemoryBytes: undefined },
      { kvm: false },
    );
    expect(plain).not.toMatch(/currentMemory/);
    expect(plain).toMatch(/<memballoon model="none"/);
    // libvirt's own rewrite of a domain with no balloon: currentMemory equal to memory is no maximum.
    const rewritten = `<domain type='qemu'><name>x</name><memory unit='KiB'>1024</memory><currentMemory unit='KiB'>1024</currentMemory><vcpu placement='static'>2</vcpu><devices><memballoon model='none'/></devices></domain>`;
    expect(parseDomainXML(rewritten)).toMatchObject({ memoryBytes: 1024 * 1024, vcpus: 2 });
    expect(parseDomainXML(rewritten).maxMemoryBytes).toBeUndefined();
    expect(parseDomainXML(rewritten).maxVcpus).toBeUndefined();
  });

  it("ignores metadata in someone else's namespace", () => {
    const xml = `<domain><name>x</name><metadata><foo:owner xmlns:foo="https://example.com/x" uid="1"/></metadata><memory unit='KiB'>1024</memory><vcpu>1</vcpu><devices/></domain>`;
    expect(parseDomainXML(xml).ownership).toBeUndefined();
  });
});

describe("network XML", () => {
  it("round-trips every mode with leases, MTU and ownership", () => {
    for (const mode of ["nat", "route", "isolated"] as const) {
      const n: NetworkSpec = {
        name: "default_backend",
        mode,
        bridge: "vw-12345678",
        address: "10.10.0.1/24",
        dhcpRange: { start: "10.10.0.100", end: "10.10.0.200" },
        leases: [{ mac: "52:54:00:10:00:10", ip: "10.10.0.10", hostname: "db-0" }],
        mtu: 9000,
        ownership: { uid: "u", namespace: "default", name: "backend", specHash: "h" },
      };
      expect(parseNetworkXML(renderNetworkXML(n))).toEqual(n);
    }
    const bridge: NetworkSpec = { name: "default_storage", mode: "bridge", bridge: "br-storage", vlan: 120 };
    expect(parseNetworkXML(renderNetworkXML(bridge))).toEqual(bridge);
  });
});
