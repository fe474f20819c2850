/**
 * Address checks the schema cannot express: inside one network, and across a directory's
 * documents (through loadPaths, as `virtwarden validate DIR` runs them).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { notAHostOf, parseSubnet } from "../../src/api/addresses.js";
import { loadPaths } from "../../src/api/loader.js";
import { formatManifestError } from "../../src/api/manifest.js";

describe("subnet arithmetic", () => {
  it.each([
    ["10.0.0.0/24", "10.0.0.1", undefined],
    ["10.0.0.0/24", "10.0.0.254", undefined],
    ["10.0.0.0/24", "10.0.0.0", "network address"],
    ["10.0.0.0/24", "10.0.0.255", "broadcast address"],
    ["10.0.0.0/24", "10.0.1.1", "not inside"],
    ["10.0.0.0/24", "9.255.255.255", "not inside"],
    ["192.168.4.0/22", "192.168.7.254", undefined],
    ["192.168.4.0/22", "192.168.8.1", "not inside"],
    ["10.0.0.5/24", "10.0.0.77", undefined], // host bits in the subnet: its network is still 10.0.0.0/24
    ["172.16.0.0/30", "172.16.0.2", undefined],
    ["172.16.0.0/30", "172.16.0.3", "broadcast address"],
    ["255.255.255.0/24", "255.255.255.254", undefined],
    ["255.255.255.0/24", "255.255.255.255", "broadcast address"],
  ])("%s: %s -> %s", (cidr, ip, why) => {
    const subnet = parseSubnet(cidr);
    expect(subnet).toBeDefined();
    const got = subnet && notAHostOf(ip, subnet);
    if (why === undefined) expect(got).toBeUndefined();
    else expect(got).toContain(why);
  });
});

const VNET = (name: string, subnet: string, extra = "") =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualNetwork\nmetadata:\n  name: ${name}\nspec:\n  mode: nat\n  subnet: ${subnet}\n${extra}`;
const VM = (name: string, nics: string) =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: ${name}\nspec:\n  instanceType: small\n  networks:\n${nics}`;
// Both templates: line 5 is "spec:"; a VM's first NIC starts on line 8; a second document
// after a VM of n NIC lines starts on line 7 + n + 2.

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

async function loadDir(files: Record<string, string>) {
  dir = mkdtempSync(join(tmpdir(), "vw-addr-"));
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
  const r = await loadPaths([dir]);
  return {
    ...r,
    shown: r.errors.map(formatManifestError),
    names: r.resources.map((x) => x.resource.metadata.name),
  };
}

describe("across documents", () => {
  it("a VM's fixed IP outside its network's subnet: the VM's line, the VM not loaded", async () => {
    const r = await loadDir({
      "net.yaml": VNET("back", "10.10.0.0/24"),
      "vm.yaml": VM("a", "    - network: back\n      ip: 10.20.0.10\n"),
    });
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({
      file: join(dir ?? "", "vm.yaml"),
      line: 9,
      path: "spec.networks[0].ip",
      kind: "VirtualMachine",
      name: "a",
    });
    expect(r.errors[0]?.message).toContain("not inside the network's subnet 10.10.0.0/24");
    expect(r.names).toEqual(["back"]);
  });

  it("a VM's fixed IP that is the network's gateway (explicit or the default first host)", async () => {
    const r = await loadDir({
      "net.yaml": `${VNET("back", "10.10.0.0/24")}---\n${VNET("front", "10.11.0.0/24", "  gateway: 10.11.0.254\n")}`,
      "vm.yaml": `${VM("a", "    - network: back\n      ip: 10.10.0.1\n")}---\n${VM("b", "    - network: front\n      ip: 10.11.0.254\n")}`,
    });
    expect(r.errors.map((e) => [e.name, e.line, e.path])).toEqual([
      ["a", 9, "spec.networks[0].ip"],
      ["b", 19, "spec.networks[0].ip"],
    ]);
    expect(r.errors.every((e) => e.message.includes("gateway"))).toBe(true);
  });

  it("a network in another namespace (or none in the directory) is not checked against", async () => {
    const r = await loadDir({
      "net.yaml": VNET("back", "10.10.0.0/24").replace("name: back", "name: back\n  namespace: other"),
      "vm.yaml": VM("a", "    - network: back\n      ip: 10.20.0.10\n"),
    });
    expect(r.shown).toEqual([]);
  });

  it("a VM using its own lease (same network, MAC and IP, any case) is one claim", async () => {
    const r = await loadDir({
      "net.yaml": VNET(
        "back",
        "10.10.0.0/24",
        '  dhcp:\n    leases:\n      - { mac: "52:54:00:AA:00:01", ip: 10.10.0.10 }\n',
      ),
      "vm.yaml": `${VM("a", '    - network: back\n      ip: 10.10.0.10\n      mac: "52:54:00:aa:00:01"\n')}---\n${VM("b", '    - network: back\n      mac: "52:54:00:aa:00:02"\n')}`,
    });
    expect(r.shown).toEqual([]);
  });

  it("a MAC claimed on two networks: the later claimant, naming the first", async () => {
    const r = await loadDir({
      "a.yaml": VM("a", '    - network: back\n      mac: "52:54:00:aa:00:01"\n'),
      "b.yaml": VM("b", '    - network: front\n      mac: "52:54:00:AA:00:01"\n'),
      "net.yaml": `${VNET("back", "10.10.0.0/24")}---\n${VNET("front", "10.11.0.0/24")}`,
    });
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ name: "b", line: 9, path: "spec.networks[0].mac" });
    expect(r.errors[0]?.message).toContain(`${join(dir ?? "", "a.yaml")}:9`);
    expect(r.names.sort()).toEqual(["a", "back", "front"]);
  });

  it("a MAC leased by one network and claimed by a VM on another", async () => {
    const r = await loadDir({
      "net.yaml": `${VNET("back", "10.10.0.0/24", '  dhcp:\n    leases:\n      - { mac: "52:54:00:aa:00:01", ip: 10.10.0.10 }\n')}`,
      "vm.yaml": VM("a", '    - network: front\n      mac: "52:54:00:aa:00:01"\n'),
    });
    expect(r.errors.map((e) => [e.file.endsWith("vm.yaml"), e.line, e.path])).toEqual([
      [true, 9, "spec.networks[0].mac"],
    ]);
    expect(r.errors[0]?.message).toMatch(/already claimed by VirtualNetwork default\/back .*net\.yaml:10/);
  });

  it("one VM with the same MAC on two of its NICs", async () => {
    const r = await loadDir({
      "vm.yaml": VM(
        "a",
        '    - network: back\n      mac: "52:54:00:aa:00:01"\n    - network: front\n      mac: "52:54:00:aa:00:01"\n',
      ),
    });
    expect(r.errors.map((e) => [e.line, e.path])).toEqual([[11, "spec.networks[1].mac"]]);
  });

  it("two VMs with one fixed IP on one network: what the controller would refuse, at load", async () => {
    const r = await loadDir({
      "net.yaml": VNET("back", "10.10.0.0/24"),
      "vm.yaml": `${VM("a", "    - network: back\n      ip: 10.10.0.10\n")}---\n${VM("b", "    - network: other\n    - network: back\n      ip: 10.10.0.10\n")}`,
    });
    expect(r.errors.map((e) => [e.name, e.line, e.path])).toEqual([["b", 19, "spec.networks[1]"]]);
    expect(r.errors[0]?.message).toContain("IP 10.10.0.10 on network back is claimed by default/a");
    expect(r.names).toEqual(["back", "a"]);
  });

  it("a fixed IP the network leases to another MAC: with a MAC, and without one", async () => {
    const lease = '  dhcp:\n    leases:\n      - { mac: "52:54:00:aa:00:01", ip: 10.10.0.10 }\n';
    const r = await loadDir({
      "net.yaml": VNET("back", "10.10.0.0/24", lease),
      "vm.yaml": `${VM("a", '    - network: back\n      ip: 10.10.0.10\n      mac: "52:54:00:aa:00:02"\n')}---\n${VM("b", "    - network: back\n      ip: 10.10.0.10\n")}`,
    });
    expect(r.errors.map((e) => [e.name, e.line, e.path])).toEqual([
      ["b", 20, "spec.networks[0].ip"],
      ["a", 8, "spec.networks[0]"],
    ]);
    expect(r.errors[0]?.message).toContain("leases this IP to MAC 52:54:00:aa:00:01");
    expect(r.errors[1]?.message).toContain(
      "leases IP 10.10.0.10 to MAC 52:54:00:aa:00:01, not 52:54:00:aa:00:02",
    );
    expect(r.names).toEqual(["back"]);
  });

  it("the examples have no conflicts", async () => {
    const r = await loadPaths([join(import.meta.dirname, "..", "..", "examples")]);
    expect(r.errors.map(formatManifestError)).toEqual([]);
  });
});
