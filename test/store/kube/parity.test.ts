/**
 * One schema, two validators: a real kube-apiserver (with the CRDs from crds/) and standalone
 * validation must accept and reject the same manifests. Every example is accepted by both; every
 * invalid manifest of the corpus that reaches an API server is rejected by both with the same
 * error: standalone names the corpus's field with the corpus's message, and the API server's error
 * for that same field says the same (or, where the API server words it its own way, what the
 * corpus records as its wording: `apiServerMessageIncludes`, e.g. "should match" for a pattern).
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
  { path: string; messageIncludes: string; apiServer: boolean; apiServerMessageIncludes?: string }
>;

/**
 * The API server's error about `path` in kubectl's stderr: from "path: " to the next error of the
 * list, or the whole answer when the field is only quoted in it (a strict decoding error's
 * `unknown field "spec.cpus"`). Undefined when the field is not named at all.
 */
function apiServerError(stderr: string, path: string): string | undefined {
  const flat = stderr.replaceAll("\n", " ");
  const at = flat.indexOf(`${path}: `);
  if (at < 0) return flat.includes(`"${path}"`) ? flat : undefined;
  const next = flat.indexOf(" * ", at);
  return flat.slice(at, next < 0 ? undefined : next);
}

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
      // Standalone rejects it for the same field with the corpus's message (not merely some error).
      expect(
        standalone.errors.filter((e) => e.path === want.path).map((e) => e.message),
        JSON.stringify(standalone.errors),
      ).toContainEqual(expect.stringContaining(want.messageIncludes));
      expect(standalone.resources).toEqual([]);
      const r = kube.kubectl(["apply", "--dry-run=server", "-f", path], { allowFail: true });
      expect(r.status, `the API server accepted ${file}: ${r.stdout}`).not.toBe(0);
      // The API server's error for that same field says the same thing (its paths use the same
      // dotted form; a label's error is about metadata.labels as a whole).
      const field = want.path.startsWith("metadata.labels.") ? "metadata.labels" : want.path;
      const error = apiServerError(r.stderr, field);
      expect(error, `the API server does not name ${field}: ${r.stderr}`).toBeDefined();
      expect(error).toContain(want.apiServerMessageIncludes ?? want.messageIncludes);
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
