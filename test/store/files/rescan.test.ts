/**
 * What the watcher does not report must not stay wrong: a manifest created and removed while the
 * controller starts (before or while its watcher lists the directory), and a removal or add made
 * while the watcher is not listening at all, are corrected by the store's own reads of the
 * directory. Also: the checks across documents (a MAC claimed by two VM files) are run by the
 * FileStore, and the later claimant is reported and not applied.
 */
import { mkdirSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { ManifestError } from "../../../src/api/manifest.js";
import { FileStore } from "../../../src/store/files/index.js";
import { eventuallyWith } from "../../support/eventually.js";

const roots: string[] = [];
const stores: FileStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.stop().catch(() => undefined)));
  for (const d of roots.splice(0)) rmSync(d, { recursive: true, force: true });
});

const VM = (name: string, nics = "") =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: ${name}\nspec:\n  resources: {cpu: 1, memory: 1Gi}\n${nics ? `  networks:\n${nics}` : ""}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const eventually = eventuallyWith({ timeoutMs: 20_000 });

function dirs(): { dir: string; state: string } {
  const root = mkdtempSync(join(tmpdir(), "vw-rescan-"));
  roots.push(root);
  const dir = join(root, "manifests");
  const state = join(root, "state");
  mkdirSync(dir, { recursive: true });
  return { dir, state };
}

/** Drop every event the store's watcher would report (as if it had missed them all). */
function deafen(store: FileStore): void {
  type Emitter = { removeAllListeners(e: string): void; on(e: string, f: () => void): Emitter };
  const w = (store as unknown as { directory: { watcher?: Emitter } }).directory.watcher;
  if (!w) throw new Error("the store has no watcher to deafen");
  for (const e of ["add", "change", "unlink", "addDir", "unlinkDir"]) w.removeAllListeners(e);
}

/** Resolves once every manifest operation queued so far (the read after start-up too) has run. */
function drained(store: FileStore): Promise<void> {
  const d = (store as unknown as { directory: { op(fn: () => Promise<void>): void } }).directory;
  return new Promise((r) => d.op(async () => r()));
}

const names = (s: FileStore) => s.list("VirtualMachine").map((v) => v.metadata.name);

describe("missed watcher events are corrected", () => {
  // Created at `createAt` ms after start() began, removed `removeAfter` ms later: the windows
  // around readAll, the watcher's initial listing and its ready event (seed 486: 20 and 320).
  const timings: [number, number][] = [
    [0, 0],
    [0, 5],
    [2, 30],
    [10, 60],
    [20, 320],
    [40, 10],
    [80, 150],
  ];
  for (const [createAt, removeAfter] of timings)
    it(`a VM created ${createAt} ms into start-up and removed ${removeAfter} ms later is gone`, async () => {
      const { dir, state } = dirs();
      writeFileSync(join(dir, "keep.yaml"), VM("keep"));
      const store = new FileStore({
        manifestDir: dir,
        stateDir: state,
        deleteSettleMs: 200,
        rescanIntervalMs: 500,
      });
      stores.push(store);
      const started = store.start();
      await sleep(createAt);
      writeFileSync(join(dir, "brief.yaml"), VM("brief"));
      await sleep(removeAfter);
      unlinkSync(join(dir, "brief.yaml"));
      await started;
      // Whatever the store saw of it, it must end up not holding it; "keep" is untouched.
      await eventually(() => !names(store).includes("brief"), "the removed VM leaves the store");
      // Stay for two more rescan periods: it does not come back, and nothing else goes.
      await sleep(1200);
      expect(names(store).sort()).toEqual(["keep"]);
    });

  it("a removal and an add the watcher never reports are found by the periodic read", async () => {
    const { dir, state } = dirs();
    writeFileSync(join(dir, "a.yaml"), VM("a"));
    writeFileSync(join(dir, "b.yaml"), VM("b"));
    const store = new FileStore({
      manifestDir: dir,
      stateDir: state,
      deleteSettleMs: 200,
      rescanIntervalMs: 400,
    });
    stores.push(store);
    await store.start();
    await eventually(() => names(store).length === 2, "both VMs are there");
    // Deafen the watcher (as if it had dropped events): the store must not depend on it.
    await drained(store);
    deafen(store);
    unlinkSync(join(dir, "a.yaml"));
    writeFileSync(join(dir, "c.yaml"), VM("c"));
    await eventually(
      () => JSON.stringify(names(store).sort()) === JSON.stringify(["b", "c"]),
      "a is deleted and c created without a watcher event",
    );
  });

  it("without the periodic read the deafened store stays wrong (the test can fail)", async () => {
    const { dir, state } = dirs();
    writeFileSync(join(dir, "a.yaml"), VM("a"));
    const store = new FileStore({
      manifestDir: dir,
      stateDir: state,
      deleteSettleMs: 200,
      rescanIntervalMs: 0,
    });
    stores.push(store);
    await store.start();
    await eventually(() => names(store).includes("a"), "a is there");
    await drained(store);
    deafen(store);
    unlinkSync(join(dir, "a.yaml"));
    await sleep(1500);
    expect(names(store)).toEqual(["a"]);
  });
});

describe("checks across documents", () => {
  const nic = (mac: string) => `    - network: back\n      mac: "${mac}"\n`;

  it("a second VM file claiming a running VM's MAC is reported with file:line and not applied", async () => {
    const { dir, state } = dirs();
    writeFileSync(join(dir, "a.yaml"), VM("a", nic("52:54:00:aa:00:01")));
    const store = new FileStore({ manifestDir: dir, stateDir: state, deleteSettleMs: 200 });
    stores.push(store);
    const reported: ManifestError[][] = [];
    store.onErrors((e) => reported.push(e));
    await store.start();
    await eventually(() => names(store).includes("a"), "a is applied");
    const aUid = store.get("VirtualMachine", "default/a")?.metadata.uid;

    // A new file, with a comment first so that the error's line is not 1.
    writeFileSync(join(dir, "b.yaml"), `# second\n${VM("b", nic("52:54:00:AA:00:01"))}`);
    await eventually(() => store.errors().some((e) => e.file.endsWith("b.yaml")), "b's error is reported");
    const err = store.errors().find((e) => e.file.endsWith("b.yaml"));
    expect(err).toMatchObject({ kind: "VirtualMachine", name: "b", path: "spec.networks[0]" });
    expect(err?.line).toBeGreaterThan(1);
    expect(err?.message).toMatch(/MAC 52:54:00:aa:00:01 .*default\/a/);
    expect(reported.at(-1)?.some((e) => e.file.endsWith("b.yaml"))).toBe(true);
    expect(store.listEvents().some((e) => e.reason === "InvalidManifest" && e.note.includes("b.yaml"))).toBe(
      true,
    );
    // b is not created; a keeps running, unchanged.
    await sleep(500);
    expect(names(store)).toEqual(["a"]);
    expect(store.get("VirtualMachine", "default/a")?.metadata.uid).toBe(aUid);
    expect(store.errors().some((e) => e.file.endsWith("a.yaml"))).toBe(false);

    // b fixed: applied, its error cleared.
    writeFileSync(join(dir, "b.yaml"), VM("b", nic("52:54:00:aa:00:02")));
    await eventually(() => names(store).includes("b"), "b is applied once fixed");
    expect(store.errors()).toEqual([]);

    // An edit of a running VM that newly conflicts changes nothing: b keeps its earlier form.
    writeFileSync(join(dir, "b.yaml"), VM("b", nic("52:54:00:aa:00:01")));
    await eventually(() => store.errors().some((e) => e.file.endsWith("b.yaml")), "b's new error");
    await sleep(500);
    expect(store.get("VirtualMachine", "default/b")?.spec.networks?.[0]?.mac).toBe("52:54:00:aa:00:02");
    expect(store.get("VirtualMachine", "default/a")?.spec.networks?.[0]?.mac).toBe("52:54:00:aa:00:01");
    expect(names(store).sort()).toEqual(["a", "b"]);
  });

  it("two conflicting files present at start: the later one is reported, the first applied", async () => {
    const { dir, state } = dirs();
    writeFileSync(join(dir, "a.yaml"), VM("z-first", nic("52:54:00:aa:00:07")));
    writeFileSync(join(dir, "b.yaml"), VM("a-second", nic("52:54:00:aa:00:07")));
    const store = new FileStore({ manifestDir: dir, stateDir: state });
    stores.push(store);
    await store.start();
    expect(names(store).length).toBe(1);
    const flagged = store.errors().map((e) => e.name);
    expect(flagged.length).toBe(1);
    expect(names(store)).not.toContain(flagged[0]);
  });
});
