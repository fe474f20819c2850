import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import type { LocatedResource } from "../../src/api/addresses.js";
import { loadPaths, loadText, validateResource } from "../../src/api/loader.js";
import { formatManifestError, formatSkipped } from "../../src/api/manifest.js";

const FIXTURES = join(import.meta.dirname, "..", "fixtures", "invalid");
const EXAMPLES = join(import.meta.dirname, "..", "..", "examples");

interface Expected {
  line: number;
  path: string;
  messageIncludes: string;
  apiServer: boolean;
}

const expected = JSON.parse(readFileSync(join(FIXTURES, "expected.json"), "utf8")) as Record<
  string,
  Expected
>;

describe("examples", () => {
  it("every example validates", async () => {
    // on-demand/ (one-shot restores) is ignored by examples/.virtwardenignore: named explicitly.
    const r = await loadPaths([EXAMPLES, join(EXAMPLES, "on-demand")]);
    expect(r.errors.map(formatManifestError)).toEqual([]);
    const kinds = new Set(r.resources.map((x) => x.resource.kind));
    expect([...kinds].sort()).toEqual(
      [
        "Host",
        "SnapshotPolicy",
        "VirtualMachine",
        "VirtualMachineClass",
        "VirtualMachineRestore",
        "VirtualMachineSnapshot",
        "VirtualNetwork",
      ].sort(),
    );
  });

  it("applies the schema's defaults", async () => {
    const r = await loadPaths([join(EXAMPLES, "web.yaml")]);
    const web = r.resources[0]?.resource;
    expect(web?.kind).toBe("VirtualMachine");
    if (web?.kind !== "VirtualMachine") return;
    expect(web.spec.disks?.[0]?.bus).toBe("virtio");
    expect(web.spec.networks?.[0]?.model).toBe("virtio");
    // No schema default for fields a VirtualMachineClass may default: a materialised "spread"
    // would always override the class's strategy (the scheduler's fallback is spread).
    expect(web.spec.placement?.strategy).toBeUndefined();
    expect(web.spec.placement?.antiAffinity?.[0]?.topology).toBe("host");
  });
});

describe("invalid manifest corpus", () => {
  const files = readdirSync(FIXTURES).filter((f) => f.endsWith(".yaml"));
  it("has at least 35 cases, each with an expectation", () => {
    expect(files.length).toBeGreaterThanOrEqual(35);
    expect(Object.keys(expected).sort()).toEqual([...files].sort());
  });
  for (const f of files) {
    const want = expected[f] as Expected;
    it(`${f}: line ${want.line}, ${want.path || "(document)"}`, () => {
      const file = join(FIXTURES, f);
      const r = loadText(readFileSync(file, "utf8"), file);
      expect(r.errors.length).toBeGreaterThan(0);
      const hit = r.errors.find((e) => e.path === want.path && e.message.includes(want.messageIncludes));
      expect(hit, `errors were:\n${r.errors.map(formatManifestError).join("\n")}`).toBeDefined();
      expect(hit?.line).toBe(want.line);
      expect(hit?.file).toBe(file);
      expect(hit?.column).toBeGreaterThanOrEqual(1);
      // A file holding one object: nothing of it is loaded once it is invalid.
      if (f !== "duplicate-object.yaml") expect(r.resources).toEqual([]);
    });
  }
});

describe("loading", () => {
  const good = (name: string) =>
    `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: ${name}\nspec:\n  instanceType: small\n`;

  it("keeps the good documents of a file with a bad one, unchanged", () => {
    const text = `${good("a")}---\n${good("b").replace("small", "Enormous")}---\n${good("c")}`;
    const r = loadText(text, "mixed.yaml");
    expect(r.resources.map((x) => x.resource.metadata.name)).toEqual(["a", "c"]);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ document: 2, line: 13, path: "spec.instanceType", name: "b" });
    expect(r.resources[1]?.source).toMatchObject({ document: 3, line: 15 });
  });

  it("skips empty documents and comments", () => {
    const r = loadText(`# nothing here\n---\n---\n${good("a")}---\n`, "f.yaml");
    expect(r.errors).toEqual([]);
    expect(r.resources).toHaveLength(1);
  });

  it("defaults the namespace of namespaced kinds and drops it from cluster-scoped ones", () => {
    const r = loadText(
      `${good("a")}---\napiVersion: virtwarden.io/v1alpha1\nkind: Host\nmetadata: {name: h1, namespace: x}\nspec: {uri: "sim://h1"}\n`,
      "f.yaml",
    );
    expect(r.resources.map((x) => x.resource.metadata.namespace)).toEqual(["default", undefined]);
  });

  it("reports the same object in two files once, on the second", async () => {
    const r = await loadPaths([join(FIXTURES, "vm-cpu-zero.yaml"), EXAMPLES, join(EXAMPLES, "web.yaml")]);
    const dup = r.errors.filter((e) => e.message.includes("defined twice"));
    expect(dup).toHaveLength(3);
    expect(dup.every((e) => e.file.endsWith("web.yaml"))).toBe(true);
  });

  it("reads JSON and stdin", async () => {
    const json = JSON.stringify({
      apiVersion: "virtwarden.io/v1alpha1",
      kind: "Host",
      metadata: { name: "h" },
      spec: { uri: "sim://h" },
    });
    const r = await loadPaths(["-"], { stdin: json });
    expect(r.errors).toEqual([]);
    expect(r.resources[0]?.source.file).toBe("<stdin>");
  });

  it("names a path that does not exist", async () => {
    const r = await loadPaths(["/nonexistent/manifests"]);
    expect(r.errors[0]).toMatchObject({
      file: "/nonexistent/manifests",
      message: "no such file or directory",
    });
  });

  it("validateResource never mutates its input", () => {
    const input = {
      apiVersion: "virtwarden.io/v1alpha1",
      kind: "VirtualMachine",
      metadata: { name: "x" },
      spec: { instanceType: "small" },
    };
    const copy = structuredClone(input);
    const r = validateResource(input);
    expect(r.errors).toEqual([]);
    expect(input).toEqual(copy);
    expect(r.resource?.metadata.namespace).toBe("default");
  });
});

describe(".virtwardenignore", () => {
  it("skips the names it lists (examples/gitops holds Argo CD and Flux objects)", async () => {
    const { isIgnoredPath, manifestFiles } = await import("../../src/api/loader.js");
    const files = await manifestFiles([EXAMPLES]);
    expect(files.some((f) => f.includes("gitops"))).toBe(false);
    expect(await isIgnoredPath(EXAMPLES, join(EXAMPLES, "gitops", "flux.yaml"))).toBe(true);
    expect(await isIgnoredPath(EXAMPLES, join(EXAMPLES, "web.yaml"))).toBe(false);
  });
});

describe("documents of other API groups", () => {
  // What a GitOps repository holds next to the VMs: each is skipped and counted, never an error.
  const foreign = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {replicas: 2}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: fleet, namespace: argocd}
spec: {project: default}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: vms, namespace: flux-system}
spec: {path: ./vms}
---
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [vms.yaml]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cm}
data: {a: b}
---
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata: {name: not-ours}
spec: {running: true}
---
apiVersion: virtwarden.io/v1alpha1
kind: VirtualMachine
metadata: {name: db}
spec: {resources: {cpu: 1, memory: 1Gi}}
`;

  it("skips and counts them with where they are; loads virtwarden's own", () => {
    const r = loadText(foreign, "repo.yaml");
    expect(r.errors.map(formatManifestError)).toEqual([]);
    expect(r.resources.map((x) => `${x.resource.kind}/${x.resource.metadata.name}`)).toEqual([
      "VirtualMachine/db",
    ]);
    expect(
      r.skipped?.map((s) => `${s.document} ${s.line} ${s.apiVersion} ${s.kind} ${s.name ?? "-"}`),
    ).toEqual([
      "1 1 apps/v1 Deployment web",
      "2 6 argoproj.io/v1alpha1 Application fleet",
      "3 11 kustomize.toolkit.fluxcd.io/v1 Kustomization vms",
      "4 16 kustomize.config.k8s.io/v1beta1 Kustomization -",
      "5 20 v1 ConfigMap argocd-cm",
      "6 25 kubevirt.io/v1 VirtualMachine not-ours",
    ]);
    expect(formatSkipped(r.skipped ?? [])).toBe(
      "6 documents of other API groups skipped (1 apps/v1 Deployment, 1 argoproj.io/v1alpha1 Application, 1 kustomize.toolkit.fluxcd.io/v1 Kustomization, 1 kustomize.config.k8s.io/v1beta1 Kustomization, 1 v1 ConfigMap, 1 kubevirt.io/v1 VirtualMachine)",
    );
  });

  it("an unknown kind inside virtwarden.io stays an error (a typo), and so does a document without apiVersion or kind", () => {
    const r = loadText(
      "apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachines\nmetadata: {name: a}\n---\nkind: Deployment\nmetadata: {name: b}\n---\napiVersion: apps/v1\nmetadata: {name: c}\n",
      "typo.yaml",
    );
    expect(r.skipped).toBeUndefined();
    expect(r.errors.map((e) => `${e.document} ${e.path}: ${e.message.split(" (")[0]}`)).toEqual([
      "1 kind: unknown kind VirtualMachines in virtwarden.io/v1alpha1",
      "2 apiVersion: Required value: apiVersion",
      "3 kind: Required value: kind",
    ]);
  });

  it("counts them across files, and a broken document of another group is still a YAML error", async () => {
    const dir = mkdtempSync(join(tmpdir(), "vw-foreign-"));
    try {
      writeFileSync(join(dir, "apps.yaml"), foreign);
      writeFileSync(
        join(dir, "cm.json"),
        JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "x" } }),
      );
      writeFileSync(join(dir, "broken.yaml"), "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: [\n");
      const r = await loadPaths([dir]);
      expect(r.skipped?.length).toBe(7);
      expect(r.resources).toHaveLength(1);
      expect(r.errors.map((e) => `${e.file.slice(dir.length + 1)}: ${e.message.slice(0, 12)}`)).toEqual([
        "broken.yaml: YAML syntax:",
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("validateResource (a create through the store) still refuses them: only the loader skips", () => {
    const { resource, errors } = validateResource({
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "w" },
    });
    expect(resource).toBeUndefined();
    expect(errors[0]?.message).toMatch(/unknown kind Deployment in apps\/v1/);
  });
});

describe("where a loaded resource's fields are", () => {
  const text = [1, 2, 3]
    .map(
      (i) =>
        `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: vm-${i}\nspec:\n  instanceType: small\n  networks:\n    - network: back\n      mac: "52:54:00:aa:00:0${i}"\n`,
    )
    .join("---\n");

  it("is still known once the syntax trees are collected (a store keeps the resources, not the trees)", async () => {
    const loaded = loadText(text, "vms.yaml").resources as LocatedResource[];
    const before = loaded.map((r) => r.locate?.("spec.networks[0].mac"));
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    // A WeakRef's target lives to the end of the job that read it: collect after this one.
    await new Promise((r) => setTimeout(r, 0));
    gc();
    await new Promise((r) => setTimeout(r, 0));
    gc();
    const after = loaded.map((r) => r.locate?.("spec.networks[0].mac"));
    expect(after).toEqual(before);
    expect(after.map((l) => [l?.document, l?.line, l?.column])).toEqual([
      [1, 9, 7],
      [2, 19, 7],
      [3, 29, 7],
    ]);
  });
});
