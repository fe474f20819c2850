/**
 * Every field of every CRD has a description (issue 17: `kubectl explain` printed
 * `<no description>` for 300 of 316 fields). The walker reads the parsed YAML of crds/ itself,
 * not schema.ts's compiled validators, and reaches every schema a field can live in: properties,
 * array items, additionalProperties (map values) at any depth. It is checked against schemas
 * with a description stripped in memory at each of those places, so a walker that stops early
 * fails here rather than passing everything. The one exception is the root `metadata`, which the
 * API server requires to be exactly {type: object} (test/crds/kubectl.test.ts applies the CRDs).
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

const CRDS = join(import.meta.dirname, "..", "..", "crds");

type Schema = {
  type?: string;
  description?: unknown;
  properties?: Record<string, Schema>;
  items?: Schema;
  additionalProperties?: Schema | boolean;
};

interface CRD {
  spec: { names: { kind: string }; versions: { name: string; schema: { openAPIV3Schema: Schema } }[] };
}

function load(): { file: string; crd: CRD }[] {
  return readdirSync(CRDS)
    .filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml")
    .sort()
    .map((file) => ({ file, crd: parse(readFileSync(join(CRDS, file), "utf8")) as CRD }));
}

/** What a description must be: a few words, not the field's own name, nothing JSDoc would mangle. */
function problem(name: string, d: unknown): string | undefined {
  if (typeof d !== "string" || d.trim() === "") return "no description";
  const words = d.trim().split(/\s+/).length;
  if (words < 4) return `too short (${words} words): "${d}"`;
  const bare = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, "");
  if (bare(d) === bare(name)) return `only repeats the field name: "${d}"`;
  if (d.includes("*/")) return `contains */, which the type generator escapes in JSDoc: "${d}"`;
  return undefined;
}

/**
 * Field paths (as `kubectl explain` spells them: spec.disks.source.image.name) with what is wrong.
 * Every property needs a description. Array items and map values need one only when they are
 * objects with fields of their own (kubectl explain shows the array's or map's description for
 * them), and their fields are walked in all cases.
 */
function undescribed(root: Schema, rootName: string): string[] {
  const out: string[] = [];
  const visit = (s: Schema, path: string, name: string, needs: boolean) => {
    if (path === "metadata") {
      // The API server refuses a CRD whose root metadata says anything but its type (it is
      // ObjectMeta, described by Kubernetes itself): no description here, and none required.
      if (JSON.stringify(s) !== JSON.stringify({ type: "object" }))
        out.push(`metadata: must be exactly {type: object} (the API server forbids more)`);
      return;
    }
    if (needs) {
      const p = problem(name, s.description);
      if (p) out.push(`${path}: ${p}`);
    }
    // YAML aliases (&term / *term) share one object: it is walked again under each path, so
    // every path that reaches it is reported.
    for (const [k, v] of Object.entries(s.properties ?? {})) visit(v, path ? `${path}.${k}` : k, k, true);
    const inner = (v: Schema | boolean | undefined, p: string) => {
      if (!v || typeof v !== "object") return;
      visit(v, p, name, v.type === "object" && !!v.properties);
    };
    inner(s.items, `${path}[]`);
    inner(s.additionalProperties, `${path}.*`);
  };
  visit(root, "", rootName, true);
  return out.map((l) => (l.startsWith(":") ? `(root)${l}` : l));
}

function countFields(root: Schema): number {
  let n = 0;
  const visit = (s: Schema) => {
    for (const v of Object.values(s.properties ?? {})) {
      n++;
      visit(v);
    }
    if (s.items && typeof s.items === "object") visit(s.items);
    if (s.additionalProperties && typeof s.additionalProperties === "object") visit(s.additionalProperties);
  };
  visit(root);
  return n;
}

const clone = <T>(v: T): T => structuredClone(v);

describe("CRD descriptions", () => {
  const crds = load();

  it("finds all seven CRDs, each with a served schema", () => {
    expect(crds.map((c) => c.crd.spec.names.kind).sort()).toEqual([
      "Host",
      "SnapshotPolicy",
      "VirtualMachine",
      "VirtualMachineClass",
      "VirtualMachineRestore",
      "VirtualMachineSnapshot",
      "VirtualNetwork",
    ]);
    for (const { crd } of crds) expect(crd.spec.versions.length).toBeGreaterThan(0);
  });

  it("every field of every version of every CRD has a real description", () => {
    const missing: string[] = [];
    let fields = 0;
    for (const { file, crd } of crds)
      for (const v of crd.spec.versions) {
        const root = v.schema.openAPIV3Schema;
        fields += countFields(root);
        for (const m of undescribed(root, crd.spec.names.kind)) missing.push(`${file} ${v.name} ${m}`);
      }
    expect(missing).toEqual([]);
    // The walk saw the whole schema: 317 fields when this test was written; fewer means a part
    // of the schema was not reached (or fields were removed: then lower this bound knowingly).
    expect(fields).toBeGreaterThanOrEqual(317);
  });

  describe("the walker reaches every place a field can hide", () => {
    const vm = () =>
      clone(
        crds.find((c) => c.crd.spec.names.kind === "VirtualMachine")?.crd.spec.versions[0]?.schema
          .openAPIV3Schema as Schema,
      );
    const at = (root: Schema, path: (string | "[]" | "*")[]): Schema => {
      let s = root;
      for (const p of path) {
        const next =
          p === "[]" ? s.items : p === "*" ? (s.additionalProperties as Schema) : s.properties?.[p];
        if (!next) throw new Error(`no ${p} in schema`);
        s = next;
      }
      return s;
    };
    const cases: [string, (string | "[]" | "*")[], string][] = [
      ["the root", [], "(root): no description"],
      ["a top-level field", ["spec"], "spec: no description"],
      [
        "a field of a nested object",
        ["spec", "availability", "restartBackoff", "maxSeconds"],
        "spec.availability.restartBackoff.maxSeconds: no description",
      ],
      [
        "a field of an array's items",
        ["spec", "disks", "[]", "bootOrder"],
        "spec.disks[].bootOrder: no description",
      ],
      [
        "a field deep under array items",
        ["spec", "disks", "[]", "source", "image", "clone"],
        "spec.disks[].source.image.clone: no description",
      ],
      [
        "items two arrays deep",
        ["spec", "placement", "affinity", "[]", "selector", "matchExpressions", "[]", "operator"],
        "spec.placement.affinity[].selector.matchExpressions[].operator: no description",
      ],
      ["an object array's items", ["status", "interfaces", "[]"], "status.interfaces[]: no description"],
      [
        "a status field",
        ["status", "lastRecovery", "seconds"],
        "status.lastRecovery.seconds: no description",
      ],
    ];
    for (const [what, path, expected] of cases)
      it(`a description stripped from ${what} is reported`, () => {
        const root = vm();
        expect(undescribed(root, "VirtualMachine")).toEqual([]);
        delete at(root, path).description;
        expect(undescribed(root, "VirtualMachine")).toContain(expected);
      });

    it("a field under additionalProperties (map values that are objects) is reached", () => {
      const root: Schema = {
        type: "object",
        description: "a root object for this test",
        properties: {
          byName: {
            type: "object",
            description: "a map from names to objects",
            additionalProperties: {
              type: "object",
              description: "the object each name maps to",
              properties: { size: { type: "string" } },
            },
          },
        },
      };
      expect(undescribed(root, "X")).toEqual(["byName.*.size: no description"]);
    });

    it("the root metadata is exempt, and a description there (which the API server refuses) is reported", () => {
      const root = vm();
      expect(at(root, ["metadata"])).toEqual({ type: "object" });
      at(root, ["metadata"]).description = "standard object metadata of the resource";
      expect(undescribed(root, "VirtualMachine")).toEqual([
        "metadata: must be exactly {type: object} (the API server forbids more)",
      ]);
    });

    it("descriptions that say nothing are refused", () => {
      const root = vm();
      at(root, ["spec", "group"]).description = "group";
      at(root, ["spec", "boot", "kernel"]).description = "the kernel";
      at(root, ["spec", "runStrategy"]).description = "   ";
      at(root, ["spec", "migration", "live"]).description = "live: see 0 */6 * * * for more words";
      const found = undescribed(root, "VirtualMachine");
      expect(found).toContain('spec.group: too short (1 words): "group"');
      expect(found).toContain('spec.boot.kernel: too short (2 words): "the kernel"');
      expect(found).toContain("spec.runStrategy: no description");
      expect(found.some((f) => f.startsWith("spec.migration.live: contains */"))).toBe(true);
      expect(found).toHaveLength(4);
    });
  });
});
