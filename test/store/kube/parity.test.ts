/**
 * One schema, two validators: a real kube-apiserver (with the CRDs from crds/) and standalone
 * validation must accept and reject the same manifests. Every example is accepted by both; every
 * invalid manifest of the corpus that reaches an API server is rejected by both, and the API
 * server's message names the same field.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadText } from "../../../src/api/loader.js";
import { type KubeApiServer, startKubeApiServer } from "../../support/kube/apiserver.js";

const ROOT = join(import.meta.dirname, "..", "..", "..");
const FIXTURES = join(ROOT, "test", "fixtures", "invalid");
const expected = JSON.parse(readFileSync(join(FIXTURES, "expected.json"), "utf8")) as Record<
  string,
  { path: string; apiServer: boolean }
>;

let kube: KubeApiServer;
beforeAll(async () => {
  kube = await startKubeApiServer();
  kube.kubectl(["apply", "-k", join(ROOT, "crds")]);
  kube.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
}, 900_000);

afterAll(async () => {
  await kube?.stop();
});

describe("API server and standalone validation agree", () => {
  it("both accept every example", () => {
    const files = ["examples", "examples/on-demand"].flatMap((dir) =>
      readdirSync(join(ROOT, dir))
        .filter((f) => f.endsWith(".yaml"))
        .map((f) => join(ROOT, dir, f)),
    );
    expect(files.length).toBeGreaterThanOrEqual(6);
    for (const f of files) {
      const standalone = loadText(readFileSync(f, "utf8"), f);
      expect(standalone.errors, f).toEqual([]);
      expect(standalone.resources.length, f).toBeGreaterThan(0);
    }
    for (const dir of ["examples", "examples/on-demand"]) {
      const r = kube.kubectl(["apply", "--dry-run=server", "-f", join(ROOT, dir)], { allowFail: true });
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
    }
  });

  it("both accept schedule auto with bounds in every unit, and fill in the same defaults", () => {
    // The min <= max rule computes durations in CEL (number times unit): cases where a string
    // comparison would be wrong (9m < 10m, 2h < 1d < 1w) must pass in both validators.
    for (const [min, max] of [
      ["9m", "10m"],
      ["2h", "1d"],
      ["1d", "1w"],
      ["5m", "5m"],
    ]) {
      const text = `apiVersion: virtwarden.io/v1alpha1
kind: SnapshotPolicy
metadata: { name: auto-${min}-${max}, namespace: default }
spec:
  selector: {}
  schedule: auto
  type: disk+memory
  auto: { minInterval: ${min}, maxInterval: ${max} }
`;
      expect(loadText(text, "auto.yaml").errors, `${min}..${max}`).toEqual([]);
      const r = kube.kubectl(["apply", "--dry-run=server", "-o", "json", "-f", "-"], {
        input: text,
        allowFail: true,
      });
      expect(r.stderr, `${min}..${max}`).toBe("");
      expect(JSON.parse(r.stdout).spec.auto).toEqual({
        minInterval: min,
        maxInterval: max,
        assumedMtbf: "7d",
        costFrom: "pause",
        formula: "Daly",
      });
    }
  });

  const cases = Object.entries(expected).filter(([, e]) => e.apiServer);
  it("covers the API-server part of the corpus", () => {
    expect(cases.length).toBeGreaterThanOrEqual(35);
  });
  for (const [file, want] of cases) {
    it(`both reject ${file}`, () => {
      const path = join(FIXTURES, file);
      const standalone = loadText(readFileSync(path, "utf8"), path);
      // Standalone rejects it for the same field (not merely with some error).
      expect(standalone.errors.map((e) => e.path)).toContain(want.path);
      expect(standalone.resources).toEqual([]);
      const r = kube.kubectl(["apply", "--dry-run=server", "-f", path], { allowFail: true });
      expect(r.status, `the API server accepted ${file}: ${r.stdout}`).not.toBe(0);
      // The API server names the field too (its paths use the same dotted form).
      const field = want.path.startsWith("metadata.labels")
        ? "metadata.labels"
        : (want.path
            .replace(/\[\d+\]$/, "")
            .split(".")
            .at(-1) ?? "");
      expect(r.stderr).toContain(field);
    });
  }
});

describe("deployment manifests", () => {
  it("kubectl apply --dry-run=server -k manifests/ succeeds", () => {
    // A server-side dry run cannot see the namespace it would create: create that one for real.
    kube.kubectl(["apply", "-f", join(ROOT, "manifests", "namespace.yaml")]);
    const r = kube.kubectl(["apply", "--dry-run=server", "-k", join(ROOT, "manifests")], { allowFail: true });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    for (const kind of [
      "namespace/virtwarden-system",
      "serviceaccount/virtwarden",
      "clusterrole.rbac.authorization.k8s.io/virtwarden-controller",
      "deployment.apps/virtwarden",
      "service/virtwarden-metrics",
    ]) {
      expect(r.stdout).toContain(kind);
    }
  });
});
