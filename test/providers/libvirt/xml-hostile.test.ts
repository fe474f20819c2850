/**
 * Domain and network XML as a hostile or odd host may return it: fields libvirt writes in forms
 * we used to misread (`<vcpu current>`, `<ip netmask>`), and fuzzing with mutated real XML and
 * random strings: every parser returns a value or throws LibvirtXmlError, never a TypeError, and
 * finishes (inputs are bounded; the test timeout is the hang detector).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  LibvirtXmlError,
  parseDomainXML,
  renderDomainXML,
} from "../../../src/providers/libvirt/domain-xml.js";
import { eventWords, stateWords } from "../../../src/providers/libvirt/states.js";
import {
  netmaskToPrefix,
  parseNetworkXML,
  parsePoolPath,
  parseSnapshotXML,
  parseVolumeXML,
  renderNetworkXML,
} from "../../../src/providers/libvirt/xml.js";

const LIBVIRT_DOMAIN = `<domain type='kvm' id='3'>
  <name>default_web-0</name>
  <uuid>5b1e2c6e-8d1f-4a57-9c2e-2f0e7d3c9a11</uuid>
  <metadata>
    <vw:owner xmlns:vw="https://virtwarden.io/xmlns/domain/v1" uid="u-1" kind="VirtualMachine" namespace="default" name="web-0" generation="4" specHash="0123456789abcdef"/>
  </metadata>
  <memory unit='KiB'>2097152</memory>
  <currentMemory unit='KiB'>2097152</currentMemory>
  <vcpu placement='static' current='2'>4</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><kernel>/boot/vmlinuz</kernel><cmdline>console=ttyS0 a=&lt;b&gt;</cmdline></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='default' volume='default_web-0-root.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <boot order='1'/>
    </disk>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>
    <interface type='network'>
      <mac address='52:54:00:12:34:56'/>
      <source network='default_backend'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'><source path='/var/log/vw/serial.log'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>`;

const LIBVIRT_NETWORK = `<network>
  <name>default</name>
  <uuid>0f0b5e8a-2a9e-4f0c-8f43-5b7bb2d1c111</uuid>
  <forward mode='nat'><nat><port start='1024' end='65535'/></nat></forward>
  <bridge name='virbr0' stp='on' delay='0'/>
  <mac address='52:54:00:aa:bb:cc'/>
  <ip family='ipv6' address='fd00::1' prefix='64'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
      <host mac='52:54:00:AA:00:01' name='db-0' ip='192.168.122.10'/>
    </dhcp>
  </ip>
</network>`;

describe("fields libvirt writes that we misread", () => {
  it("vcpus are <vcpu current>, not the maximum", () => {
    expect(parseDomainXML(LIBVIRT_DOMAIN).vcpus).toBe(2);
    expect(parseDomainXML(LIBVIRT_DOMAIN.replace(" current='2'", "")).vcpus).toBe(4);
    expect(() => parseDomainXML(LIBVIRT_DOMAIN.replace("current='2'", "current='9'"))).toThrow(
      /domain default_web-0: <vcpu current='9'> is above its maximum 4/,
    );
    expect(() => parseDomainXML(LIBVIRT_DOMAIN.replace("current='2'", "current='two'"))).toThrow(
      LibvirtXmlError,
    );
  });

  it("reads the rest of a libvirt domain as before (entities decoded, cdrom skipped)", () => {
    const d = parseDomainXML(LIBVIRT_DOMAIN);
    expect(d.boot).toEqual({ kernel: "/boot/vmlinuz", cmdline: "console=ttyS0 a=<b>" });
    expect(d.disks).toEqual([
      {
        target: "vda",
        bus: "virtio",
        pool: "default",
        volume: "default_web-0-root.qcow2",
        format: "qcow2",
        bootOrder: 1,
      },
    ]);
    expect(d.memoryBytes).toBe(2 * 1024 ** 3);
    expect(d.serialLogPath).toBe("/var/log/vw/serial.log");
    expect(d.ownership?.generation).toBe(4);
  });

  it("a network <ip netmask> becomes a prefix; the IPv6 <ip> before it is not taken", () => {
    const n = parseNetworkXML(LIBVIRT_NETWORK);
    expect(n.address).toBe("192.168.122.1/24");
    expect(n.mode).toBe("nat");
    expect(n.dhcpRange).toEqual({ start: "192.168.122.2", end: "192.168.122.254" });
    expect(n.leases).toEqual([{ mac: "52:54:00:aa:00:01", ip: "192.168.122.10", hostname: "db-0" }]);
  });

  it("netmasks: every contiguous mask maps to its prefix, others are refused clearly", () => {
    for (let p = 0; p <= 32; p++) {
      const bits = p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0;
      const mask = [24, 16, 8, 0].map((s) => (bits >>> s) & 255).join(".");
      expect(netmaskToPrefix(mask, "network n")).toBe(p);
    }
    for (const bad of ["255.0.255.0", "255.255.255.1", "0.255.255.255", "255.255.254.128"])
      expect(() => netmaskToPrefix(bad, "network n")).toThrow(
        /network n: <ip netmask='.*'> is not a contiguous netmask/,
      );
    for (const bad of ["255.255.255", "255.255.255.256", "a.b.c.d", "", "255.255.255.0.0"])
      expect(() => netmaskToPrefix(bad, "network n")).toThrow(LibvirtXmlError);
    expect(() => parseNetworkXML(LIBVIRT_NETWORK.replace("255.255.255.0", "255.0.255.0"))).toThrow(
      /network default: <ip netmask='255.0.255.0'> is not a contiguous netmask/,
    );
  });
});

describe("states and event details (libvirt-domain.h)", () => {
  it.each([
    // [event, detail, type, detail word] from virDomainEventType / virDomainEvent*DetailType
    [4, 0, "resumed", "unpaused"],
    [4, 1, "resumed", "migrated"],
    [4, 2, "resumed", "from-snapshot"],
    [4, 3, "resumed", "postcopy"],
    [4, 4, "resumed", "postcopy-failed"],
    [3, 7, "suspended", "postcopy"],
    [3, 8, "suspended", "postcopy-failed"],
    [7, 0, "pmsuspended", "memory"],
    [7, 1, "pmsuspended", "disk"],
    [8, 1, "crashed", "crashloaded"],
    [2, 4, "started", "wakeup"],
  ])("event %i detail %i is %s/%s", (event, detail, type, word) => {
    expect(eventWords(event, detail)).toEqual({ type, detail: word });
  });

  it("unknown numbers never throw", () => {
    expect(eventWords(99, 0)).toBeUndefined();
    expect(eventWords(-27, 0)).toBeUndefined();
    expect(eventWords(4, 99)).toEqual({ type: "resumed", detail: "99" });
    expect(stateWords(3, 14)).toEqual({ state: "paused", reason: "api-error" });
    expect(stateWords(-1, -1)).toEqual({ state: "nostate", reason: "unknown" });
  });
});

/** A seed mutated by a few edits: deletions, insertions of XML-ish junk, duplications. */
const xmlish = fc
  .array(
    fc.constantFrom(
      "<",
      ">",
      "/",
      "=",
      "'",
      '"',
      " ",
      "&",
      ";",
      "a",
      "1",
      "-",
      "!",
      "?",
      "<vcpu>",
      "</name>",
      "<![CDATA[",
      "]]>",
      "&amp;",
      "&#x0;",
      "<!DOCTYPE x [<!ENTITY e 'x'>]>",
    ),
    { maxLength: 20 },
  )
  .map((a) => a.join(""));
const edit = fc.oneof(
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), len: fc.nat(40) }),
  fc.record({
    kind: fc.constant("insert" as const),
    at: fc.nat(),
    text: fc.oneof(xmlish, fc.string({ maxLength: 20 })),
  }),
  fc.record({ kind: fc.constant("duplicate" as const), at: fc.nat(), len: fc.nat(200) }),
);
function mutate(seed: string, edits: { kind: string; at: number; len?: number; text?: string }[]): string {
  let s = seed;
  for (const e of edits) {
    const at = e.at % (s.length + 1);
    if (e.kind === "delete") s = s.slice(0, at) + s.slice(at + (e.len ?? 0));
    else if (e.kind === "insert") s = s.slice(0, at) + (e.text ?? "") + s.slice(at);
    else s = s.slice(0, at) + s.slice(at, at + (e.len ?? 0)) + s.slice(at);
  }
  return s;
}

const rendered = renderDomainXML(
  {
    name: "ns_vm-1",
    vcpus: 2,
    memoryBytes: 1024 ** 3,
    disks: [{ target: "vda", bus: "virtio", pool: "p", volume: "v.qcow2", format: "qcow2", bootOrder: 1 }],
    interfaces: [{ network: "n", mac: "52:54:00:00:00:01", model: "virtio" }],
    ownership: {
      uid: "u",
      kind: "VirtualMachine",
      namespace: "ns",
      name: "vm-1",
      generation: 1,
      specHash: "h",
    },
  },
  { kvm: true },
);
const renderedNet = renderNetworkXML({
  name: "ns_net",
  mode: "nat",
  bridge: "vw-1",
  address: "10.0.0.1/24",
  dhcpRange: { start: "10.0.0.10", end: "10.0.0.20" },
  leases: [{ mac: "52:54:00:00:00:02", ip: "10.0.0.5" }],
  mtu: 1500,
  vlan: 7,
});

const parsers: [string, (x: string) => unknown, string[]][] = [
  ["domain", parseDomainXML, [LIBVIRT_DOMAIN, rendered]],
  ["network", parseNetworkXML, [LIBVIRT_NETWORK, renderedNet]],
  [
    "volume",
    parseVolumeXML,
    [
      "<volume><target><path>/p/v</path><format type='qcow2'/></target><backingStore><path>/b</path></backingStore></volume>",
    ],
  ],
  ["pool", parsePoolPath, ["<pool type='dir'><target><path>/var/lib/libvirt/images</path></target></pool>"]],
  [
    "snapshot",
    (x) => parseSnapshotXML(x, "d"),
    [
      "<domainsnapshot><name>s1</name><state>running</state><creationTime>1700000000</creationTime><memory snapshot='internal'/><parent><name>s0</name></parent></domainsnapshot>",
    ],
  ],
];

describe("XML parsers under fuzzing (property)", () => {
  it.each(parsers)("%s XML: mutated real XML gives a value or LibvirtXmlError", (_n, parse, seeds) => {
    fc.assert(
      fc.property(
        fc.constantFrom(...seeds),
        fc.array(edit, { minLength: 1, maxLength: 6 }),
        (seed, edits) => {
          try {
            parse(mutate(seed, edits));
          } catch (e) {
            if (!(e instanceof LibvirtXmlError)) throw e;
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it.each(parsers)("%s XML: random strings give a value or LibvirtXmlError", (_n, parse) => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ maxLength: 300 }), xmlish, fc.string({ unit: "binary", maxLength: 300 })),
        (s) => {
          try {
            parse(s);
          } catch (e) {
            if (!(e instanceof LibvirtXmlError)) throw e;
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("hand-picked shapes that used to crash or lie", () => {
    const bad = [
      "",
      "<domain/>",
      "<domain>text</domain>",
      "<domain><name>a</name><name>b</name></domain>",
      "<domain><name>x</name><memory unit='furlong'>1</memory></domain>",
      "<domain><name>x</name><memory>lots</memory></domain>",
      "<domain><name>x</name><memory>1</memory><vcpu>zero</vcpu></domain>",
      "<domain><name>x</name><memory>1</memory><devices><disk device='disk'/></devices></domain>",
      "<domain><name>x</name></domain><domain><name>y</name></domain>",
      "<network/>",
      "<network><name>n</name><ip address='1.2.3.4' prefix='33'/></network>",
      "<network><name>n</name><mtu size='big'/></network>",
      "<network><name>n</name><ip address='1.2.3.4' prefix='24'><dhcp><host mac='x'/></dhcp></ip></network>",
    ];
    for (const x of bad) {
      const out = (() => {
        try {
          return parseDomainXML(x);
        } catch (e) {
          return e;
        }
      })();
      const outNet = (() => {
        try {
          return parseNetworkXML(x);
        } catch (e) {
          return e;
        }
      })();
      for (const o of [out, outNet]) expect(o instanceof LibvirtXmlError || typeof o === "object").toBe(true);
      if (x.startsWith("<domain")) expect(out).toBeInstanceOf(LibvirtXmlError);
      if (x.startsWith("<network")) expect(outNet).toBeInstanceOf(LibvirtXmlError);
    }
  });
});
