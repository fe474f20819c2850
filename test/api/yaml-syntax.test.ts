/**
 * YAML syntax faults are reported at the line where the fault is (the expected lines are written
 * by hand from the text, not taken from either parser).
 */
import { describe, expect, it } from "vitest";
import { loadText } from "../../src/api/loader.js";

const head = "apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: a\n"; // lines 1-4

// [name, text from line 5 on, expected line, words in the message]
const FAULTS: [string, string, number, string][] = [
  ["over-indented key", "spec:\n  runStrategy: Always\n    memory: 4Gi\n  cpus: 2\n", 7, "bad indentation"],
  ["over-indented key, deeper", "spec:\n  resources:\n    cpu: 2\n      memory: 4Gi\n", 8, "bad indentation"],
  ["a mapping under a scalar", "spec: Always\n  cpu: 2\n", 6, "bad indentation"],
  ["a second mapping on a scalar's line", "spec:\n  runStrategy: Always\n  cpu: 2 memory: 4Gi\n", 7, ""],
  ["under-indented key", "spec:\n    runStrategy: Always\n  cpu: 2\n", 7, "indentation"],
  ["tab as indentation", "spec:\n\trunStrategy: Always\n", 6, "tab"],
  ["tab inside the indentation", "spec:\n  resources:\n  \tcpu: 2\n", 7, "tab"],
  ["unclosed double quote", 'spec:\n  runStrategy: "Always\n  cpu: 2\n  x: 3\n', 6, "never closed"],
  ["unclosed single quote", "spec:\n  runStrategy: 'Always\n  cpu: 2\n", 6, "never closed"],
  [
    "unclosed flow mapping",
    "spec:\n  resources: { cpu: 2, memory: 4Gi\n  runStrategy: Always\n",
    6,
    "flow mapping",
  ],
  ["unclosed flow sequence", "spec:\n  disks: [a, b\n  runStrategy: Always\n", 6, "flow sequence"],
  ["unclosed flow sequence at the end of the file", "spec:\n  disks: [a, b\n", 6, "flow sequence"],
  ["duplicate key", "spec:\n  runStrategy: Always\n  cpu: 2\n  runStrategy: Manual\n", 8, "duplicate"],
  ["a list item inside a mapping", "spec:\n  runStrategy: Always\n  - cpu: 2\n", 7, ""],
  ["an alias to no anchor", "spec:\n  instanceType: *small\n", 6, "alias"],
];

describe("YAML syntax faults: the line of the fault", () => {
  it.each(FAULTS)("%s -> line %i", (_name, body, line, words) => {
    const text = head + body;
    const r = loadText(text, "m.yaml");
    expect(r.resources).toEqual([]);
    expect(r.errors).toHaveLength(1);
    const e = r.errors[0];
    expect(e).toMatchObject({ file: "m.yaml", document: 1, line, path: "" });
    expect(e?.message).toMatch(/^YAML syntax: /);
    expect(e?.message.toLowerCase()).toContain(words);
    expect(e?.column).toBeGreaterThanOrEqual(1);
    expect(e?.column).toBeLessThanOrEqual((text.split("\n")[line - 1]?.length ?? 0) + 1);
  });

  it.each(FAULTS)("%s, in the second document of three: the others still load", (_name, body, line) => {
    const good = (n: string) => `${head.replace("name: a", `name: ${n}`)}spec:\n  instanceType: small\n`; // 6 lines
    const text = `${good("x")}---\n${head}${body}---\n${good("y")}`;
    const r = loadText(text, "m.yaml");
    const bad = r.errors.filter((e) => e.document === 2);
    expect(bad).toHaveLength(1);
    expect(bad[0]?.line).toBe(line + 7);
    // A fault that runs to the end of the stream (an unclosed quote or flow) can swallow the
    // next document; one that does not leaves it loaded.
    const names = r.resources.map((x) => x.resource.metadata.name);
    expect(names[0]).toBe("x");
    expect(names).not.toContain("a");
  });

  it("an error at the very end of a file is on its last line, not the empty one after", () => {
    const text = `${head}spec:\n  disks: [a, b`;
    const r = loadText(`${text}\n`, "m.yaml");
    expect(r.errors[0]?.line).toBeLessThanOrEqual(text.split("\n").length);
  });
});

describe("keys JSON cannot hold", () => {
  it.each([
    ["a flow mapping as a key", "spec:\n  {agent: ipmi}: x\n", 6],
    ["a complex key", "spec:\n  instanceType: small\n  ? [a, b]\n  : c\n", 7],
    ["an alias to a mapping as a key", "spec:\n  instanceType: small\n  x: &m {a: 1}\n  *m : c\n", 8],
  ])("%s: an error at the key's line, nothing on stderr", (_n, body, line) => {
    const r = loadText(head + body, "k.yaml");
    expect(r.resources).toEqual([]);
    expect(r.errors.map((e) => [e.line, e.path])).toEqual([[line, ""]]);
    expect(r.errors[0]?.message).toContain("mapping key must be a string");
  });
});
