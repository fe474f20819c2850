/**
 * `virtwarden restart vm NAME --kubernetes` against a real kube-apiserver with the real CRDs: the
 * annotation lands on the object (read back with kubectl), written by the field manager
 * virtwarden, and the spec (and so the generation) is untouched. The controller's side of it
 * (waking on the annotation, restarting once) is in test/reconcilers/scenario.test.ts and the
 * real-bed test/reconcilers/libvirt-live-update.test.ts.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type KubeApiServer, startKubeApiServer } from "../support/kube/apiserver.js";

const ROOT = join(import.meta.dirname, "..", "..");
let kube: KubeApiServer;

beforeAll(async () => {
  kube = await startKubeApiServer();
  kube.kubectl(["apply", "-k", join(ROOT, "crds")]);
  kube.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
}, 900_000);

afterAll(async () => {
  await kube?.stop();
});

describe("virtwarden restart vm --kubernetes", () => {
  it("sets the annotation through the API server, as field manager virtwarden, leaving spec alone", () => {
    kube.kubectl(["create", "namespace", "prod"]);
    kube.kubectl(["apply", "-f", "-"], {
      input: `apiVersion: virtwarden.io/v1alpha1
kind: VirtualMachine
metadata: { name: web, namespace: prod }
spec: { resources: { cpu: 1, memory: 256Mi, maxMemory: 512Mi }, updateStrategy: Manual }
`,
    });
    const before = JSON.parse(kube.kubectl(["get", "vm", "web", "-n", "prod", "-o", "json"]).stdout);
    const out = execFileSync(
      process.execPath,
      [
        "--import",
        "tsx",
        join(ROOT, "src/cli/main.ts"),
        "restart",
        "vm",
        "prod/web",
        "--kubernetes",
        "--kubeconfig",
        kube.kubeconfig,
      ],
      { cwd: ROOT, encoding: "utf8" },
    );
    expect(out).toMatch(/^virtualmachine prod\/web: virtwarden\.io\/restartedAt=\S+Z\n$/);
    const after = JSON.parse(
      kube.kubectl(["get", "vm", "web", "-n", "prod", "-o", "json", "--show-managed-fields"]).stdout,
    );
    const stamp = after.metadata.annotations["virtwarden.io/restartedAt"];
    expect(Number.isFinite(Date.parse(stamp))).toBe(true);
    expect(out).toContain(stamp);
    expect(after.metadata.generation).toBe(before.metadata.generation);
    expect(after.spec).toEqual(before.spec);
    const managers = (after.metadata.managedFields ?? []).map((m: { manager: string }) => m.manager);
    expect(managers).toContain("virtwarden");
    // A VM that does not exist: the command fails, saying so.
    let failed = "";
    try {
      execFileSync(
        process.execPath,
        [
          "--import",
          "tsx",
          join(ROOT, "src/cli/main.ts"),
          "restart",
          "vm",
          "prod/nope",
          "--kubernetes",
          "--kubeconfig",
          kube.kubeconfig,
        ],
        { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
      );
    } catch (e) {
      failed = String((e as { stderr?: string }).stderr);
    }
    expect(failed).toMatch(/virtwarden: .*(not found|404)/i);
  }, 120_000);
});
