/**
 * readDeclaredState (what `virtwarden diff` compares with): the manifest objects a FileStore took,
 * read back from the state dir without writing to it, through a compaction (snapshot.json), a
 * torn last record, controller-created objects and a deletion under way.
 */
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { loadPaths } from "../../../src/api/loader.js";
import { FileStore, readDeclaredState } from "../../../src/store/files/index.js";
import { eventuallyWith } from "../../support/eventually.js";

const roots: string[] = [];
afterEach(() => {
  for (const d of roots.splice(0)) rmSync(d, { recursive: true, force: true });
});

const vmYaml = (name: string, memory: string) =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: ${name}}\nspec:\n  resources: {cpu: 1, memory: ${memory}}\n`;

const eventually = eventuallyWith({ timeoutMs: 10_000, everyMs: 20 });

it("reads the declared forms through a compaction and a torn tail, leaving every byte as it was", async () => {
  const root = mkdtempSync(join(tmpdir(), "vw-declared-"));
  roots.push(root);
  const manifests = join(root, "m");
  const state = join(root, "s");
  mkdirSync(manifests);
  for (let i = 0; i < 6; i++) writeFileSync(join(manifests, `vm${i}.yaml`), vmYaml(`vm${i}`, `${i + 1}Gi`));
  const store = new FileStore({
    manifestDir: manifests,
    stateDir: state,
    compactEvery: 3,
    deleteSettleMs: 50,
  });
  await store.start();
  // A controller-created object: not the manifests', never compared.
  await store.create({
    apiVersion: "virtwarden.io/v1alpha1",
    kind: "VirtualMachineSnapshot",
    metadata: { name: "snap", namespace: "default" },
    spec: { vmName: "vm0" },
  } as never);
  // vm5 with a finalizer, its manifest removed: its deletion is under way.
  const v5 = store.get("VirtualMachine", "default/vm5");
  if (!v5) throw new Error("vm5 not loaded");
  await store.addFinalizer(v5, "virtwarden.io/test");
  rmSync(join(manifests, "vm5.yaml"));
  await eventually(
    () => !!store.get("VirtualMachine", "default/vm5")?.metadata.deletionTimestamp,
    "vm5 deleting",
  );
  await store.stop();
  expect(readFileSync(join(state, "snapshot.json"), "utf8").length).toBeGreaterThan(0);
  appendFileSync(join(state, "journal.log"), '0badc0de {"t":"meta","id":"VirtualMachine|default/torn"'); // a crash mid-write
  const before = {
    journal: readFileSync(join(state, "journal.log")),
    snapshot: readFileSync(join(state, "snapshot.json")),
  };

  const declared = await readDeclaredState(state);

  expect(readFileSync(join(state, "journal.log"))).toEqual(before.journal); // the torn tail is not cut
  expect(readFileSync(join(state, "snapshot.json"))).toEqual(before.snapshot);
  expect([...declared.keys()].sort()).toEqual([0, 1, 2, 3, 4, 5].map((i) => `VirtualMachine|default/vm${i}`));
  expect(declared.get("VirtualMachine|default/vm5")?.deleting).toBe(true);
  expect(declared.get("VirtualMachine|default/vm4")?.deleting).toBe(false);
  // Each is the resource exactly as the loader makes it from its manifest.
  writeFileSync(join(manifests, "vm5.yaml"), vmYaml("vm5", "6Gi"));
  const loaded = await loadPaths([manifests]);
  for (const lr of loaded.resources)
    expect(declared.get(`VirtualMachine|default/${lr.resource.metadata.name}`)?.resource).toEqual(
      JSON.parse(JSON.stringify(lr.resource)),
    );
});

it("a state dir without a journal or snapshot is an error naming it", async () => {
  const root = mkdtempSync(join(tmpdir(), "vw-declared-"));
  roots.push(root);
  await expect(readDeclaredState(root)).rejects.toThrow(`no controller state in ${root}`);
});
