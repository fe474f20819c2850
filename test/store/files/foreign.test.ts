/**
 * Directory mode on a GitOps repository that holds other things too: documents of other API
 * groups are skipped and counted in the load summary, never reported as manifest errors, and
 * never become objects; an unknown kind inside virtwarden.io still is an error.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { FileStore } from "../../../src/store/files/index.js";
import { eventuallyWith } from "../../support/eventually.js";

const roots: string[] = [];
const stores: FileStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.stop().catch(() => undefined)));
  for (const d of roots.splice(0)) rmSync(d, { recursive: true, force: true });
});

const eventually = eventuallyWith({ timeoutMs: 20_000 });

describe("directory mode with documents of other API groups", () => {
  it("skips and counts them in the load summary; a virtwarden.io typo is an error", async () => {
    const root = mkdtempSync(join(tmpdir(), "vw-foreign-"));
    roots.push(root);
    const dir = join(root, "repo");
    mkdirSync(join(dir, "flux"), { recursive: true });
    writeFileSync(
      join(dir, "vm.yaml"),
      "apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: db}\nspec: {resources: {cpu: 1, memory: 1Gi}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1}\n",
    );
    writeFileSync(
      join(dir, "flux", "sync.yaml"),
      "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: fleet}\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: vms}\n",
    );
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString().split("\n")) if (l.trim()) lines.push(JSON.parse(l));
        done();
      },
    });
    const store = new FileStore({
      manifestDir: dir,
      stateDir: join(root, "state"),
      logger: pino({ level: "info" }, sink),
    });
    stores.push(store);
    await store.start();
    const summary = lines.find((l) => String(l.msg).startsWith("manifests loaded"));
    expect(summary).toMatchObject({ files: 2, resources: 1, errors: 0, skipped: 3 });
    expect(String(summary?.msg)).toContain(
      "3 documents of other API groups skipped (1 source.toolkit.fluxcd.io/v1 GitRepository, 1 kustomize.toolkit.fluxcd.io/v1 Kustomization, 1 apps/v1 Deployment)",
    );
    expect(store.errors()).toEqual([]);
    expect(store.list("VirtualMachine").map((v) => v.metadata.name)).toEqual(["db"]);

    // Added while watching: a ConfigMap is left alone, a misspelt virtwarden kind is reported.
    writeFileSync(join(dir, "cm.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
    writeFileSync(
      join(dir, "typo.yaml"),
      "apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachin\nmetadata: {name: t}\n",
    );
    await eventually(() => store.errors().some((e) => e.file.endsWith("typo.yaml")), "typo reported");
    await eventually(() => store.directorySummary().skipped.length === 4, "the ConfigMap is counted");
    expect(store.errors().map((e) => `${e.file.slice(dir.length + 1)}: ${e.message.split(" (")[0]}`)).toEqual(
      ["typo.yaml: unknown kind VirtualMachin in virtwarden.io/v1alpha1"],
    );
  });
});
