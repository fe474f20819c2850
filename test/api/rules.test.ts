import { describe, expect, it } from "vitest";
import { checkRules, nodesAt, RULES } from "../../src/api/rules.js";
import { type JSONSchema, loadCRDs } from "../../src/api/schema.js";

/** Every x-kubernetes-validations rule of a schema, with its path ([*] for list items). */
function celRules(
  schema: JSONSchema,
  path: string,
  out: { path: string; cel: string; message: string }[],
): void {
  for (const v of schema["x-kubernetes-validations"] ?? [])
    out.push({ path, cel: v.rule, message: v.message });
  for (const [k, sub] of Object.entries(schema.properties ?? {}))
    celRules(sub, path ? `${path}.${k}` : k, out);
  if (schema.items) celRules(schema.items, `${path}[*]`, out);
}

describe("CEL rules: the CRDs and the standalone table agree", () => {
  it("hold exactly the same rules at the same paths with the same messages", () => {
    const fromCRDs: string[] = [];
    for (const [kind, crd] of loadCRDs()) {
      const found: { path: string; cel: string; message: string }[] = [];
      celRules(crd.spec.versions[0]?.schema.openAPIV3Schema as JSONSchema, "", found);
      for (const r of found) fromCRDs.push(`${kind} ${r.path}: ${r.cel} => ${r.message}`);
    }
    const fromTable = RULES.map((r) => `${r.kind} ${r.path}: ${r.cel} => ${r.message}`);
    expect(fromTable.sort()).toEqual(fromCRDs.sort());
  });
});

describe("rule semantics", () => {
  it.each([
    ["resources only", { resources: { cpu: 1, memory: "1Gi" } }, true],
    ["instanceType only", { instanceType: "small" }, true],
    ["both", { resources: { cpu: 1, memory: "1Gi" }, instanceType: "small" }, false],
    ["neither", {}, false],
  ])("VM spec, %s", (_n, spec, ok) => {
    expect(checkRules("VirtualMachine", { spec }).length === 0).toBe(ok);
  });

  it("reports at the concrete path of each failing list item", () => {
    const errs = checkRules("VirtualMachine", {
      spec: {
        instanceType: "small",
        disks: [
          { name: "a", size: "1Gi" },
          { name: "b" },
          { name: "c", source: { image: { name: "x" }, volume: { name: "y" } } },
        ],
      },
    });
    expect(errs.map((e) => e.path)).toEqual(["spec.disks[1]", "spec.disks[2].source"]);
  });

  it("counts a present-but-false field as set, like CEL has()", () => {
    expect(checkRules("Host", { spec: { uri: "sim://a", allowPowerOff: false } })).toEqual([]);
    expect(checkRules("Host", { spec: { uri: "sim://a", allowPowerOff: true } })).toHaveLength(1);
  });

  it("expands [*] paths over nested lists", () => {
    const obj = { a: [{ b: [{ c: 1 }, { c: 2 }] }, { b: [{ c: 3 }] }] };
    expect(nodesAt(obj, "a[*].b[*]").map((n) => n.path)).toEqual(["a[0].b[0]", "a[0].b[1]", "a[1].b[0]"]);
  });

  it("leases: an IP used twice fails, distinct IPs pass", () => {
    const lease = (mac: string, ip: string) => ({ mac, ip });
    const spec = (leases: unknown[]) => ({ spec: { mode: "nat", subnet: "10.0.0.0/24", dhcp: { leases } } });
    expect(checkRules("VirtualNetwork", spec([lease("a", "10.0.0.1"), lease("b", "10.0.0.2")]))).toEqual([]);
    expect(checkRules("VirtualNetwork", spec([lease("a", "10.0.0.1"), lease("b", "10.0.0.1")]))).toHaveLength(
      1,
    );
  });
});
