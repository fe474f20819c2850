import { describe, expect, it } from "vitest";
import { loadText } from "../../src/api/loader.js";
import { FORMAT_RULES, PATTERN_RULES } from "../../src/api/messages.js";
import { loadCRDs } from "../../src/api/schema.js";

/** Every `pattern` and `format` in the CRDs, with where it is (for the failure message). */
function schemaStrings(
  node: unknown,
  path: string,
  key: "pattern" | "format",
  out: Map<string, string>,
): void {
  if (!node || typeof node !== "object") return;
  if (Array.isArray(node)) {
    for (const [i, v] of node.entries()) schemaStrings(v, `${path}[${i}]`, key, out);
    return;
  }
  for (const [k, v] of Object.entries(node)) {
    if (k === key && typeof v === "string") out.set(v, path);
    else schemaStrings(v, path ? `${path}.${k}` : k, key, out);
  }
}

function crdStrings(key: "pattern" | "format"): Map<string, string> {
  const out = new Map<string, string>();
  for (const [kind, crd] of loadCRDs()) schemaStrings(crd, kind, key, out);
  return out;
}

describe("messages say the rule, not the regex", () => {
  it("every pattern in crds/ has its rule in words, and the table holds no pattern the CRDs lost", () => {
    const patterns = crdStrings("pattern");
    const missing = [...patterns].filter(([p]) => !(p in PATTERN_RULES)).map(([p, at]) => `${at}: ${p}`);
    expect(missing, "add these patterns to PATTERN_RULES in src/api/messages.ts").toEqual([]);
    expect(Object.keys(PATTERN_RULES).filter((p) => !patterns.has(p))).toEqual([]);
  });

  it("every format in crds/ has its rule in words", () => {
    const formats = crdStrings("format");
    expect([...formats.keys()].filter((f) => !(f in FORMAT_RULES))).toEqual([]);
    expect(Object.keys(FORMAT_RULES).filter((f) => !formats.has(f))).toEqual([]);
  });

  it.each(Object.entries(PATTERN_RULES))("%s: words, and any example they give is valid", (pattern, rule) => {
    expect(rule).toMatch(/^not an? /);
    expect(rule).not.toContain(pattern);
    expect(rule).not.toMatch(/[\^$]|\[[^\]]*-[^\]]*\]/);
    // An example in the message must itself be accepted: a message that lies is worse than none.
    for (const m of rule.matchAll(/such as ("[^"]+"|[^\s,()]+)/g)) {
      const example = (m[1] ?? "").replace(/^"|"$/g, "");
      expect(new RegExp(pattern).test(example), `${example} vs ${pattern}`).toBe(true);
    }
  });

  it.each([
    [
      "spec:\n  resources: {cpu: 1, memory: 4GB}\n",
      "spec.resources.memory",
      '"4GB": not a quantity such as 4Gi',
    ],
    [
      "spec:\n  instanceType: small\n  networks: [{network: n, ip: 10.0.0.256}]\n",
      "spec.networks[0].ip",
      "not an IPv4 address",
    ],
    [
      "spec:\n  instanceType: small\n  networks: [{network: n, mac: 52-54-00-12-34-56}]\n",
      "spec.networks[0].mac",
      "not a MAC address",
    ],
    [
      "spec:\n  instanceType: small\n  networks: [{network: Net_1}]\n",
      "spec.networks[0].network",
      "not a DNS-1123 label",
    ],
  ])("a VM with %j says %s: %s", (spec, path, words) => {
    const text = `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: a\n${spec}`;
    const r = loadText(text, "vm.yaml");
    const hit = r.errors.find((e) => e.path === path);
    expect(hit?.message).toContain(words);
    expect(hit?.message).not.toMatch(/should match|pattern|\^/);
  });
});
