/**
 * Deleting is deliberate: real filesystem operations on a watched directory (chokidar), in
 * adversarial orders, must never delete a VM that is still defined once the burst is over.
 *
 * Each burst also removes a sentinel VM for good: its deletion is the barrier that says a settle
 * pass has run after the burst (so "nothing else was deleted" is not checked too early).
 */
import { execFileSync } from "node:child_process";
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FileStore } from "../../../src/store/files/index.js";
import { eventuallyWith } from "../../support/eventually.js";

const SETTLE_MS = 1000;
const roots: string[] = [];
const stores: FileStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.stop().catch(() => undefined)));
  for (const d of roots.splice(0)) rmSync(d, { recursive: true, force: true });
});

const vmYaml = (name: string, cpu = 1) =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: ${name}\nspec:\n  resources: {cpu: ${cpu}, memory: 1Gi}\n`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const eventually = eventuallyWith({ timeoutMs: 20_000 });

interface Rig {
  dir: string;
  store: FileStore;
  /** Every watch event: "type:name". */
  events: string[];
  deletedAt: Map<string, number>;
  uid(name: string): string | undefined;
  cpu(name: string): number | undefined;
  write(rel: string, text: string): void;
}

async function rig(files: Record<string, string>, opts: { gitInit?: boolean } = {}): Promise<Rig> {
  const root = mkdtempSync(join(tmpdir(), "vw-settle-"));
  roots.push(root);
  const dir = join(root, "manifests");
  mkdirSync(dir);
  const write = (rel: string, text: string) => {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), text);
  };
  for (const [rel, text] of Object.entries(files)) write(rel, text);
  if (opts.gitInit) {
    const git = (...args: string[]) => execFileSync("git", args, { cwd: dir, stdio: "pipe" });
    git("init", "-q", "-b", "main");
    git("add", "-A");
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "main");
  }
  const store = new FileStore({
    manifestDir: dir,
    stateDir: join(root, "state"),
    deleteSettleMs: SETTLE_MS,
    viewIntervalMs: 50,
  });
  stores.push(store);
  await store.start();
  const events: string[] = [];
  const deletedAt = new Map<string, number>();
  store.watch("VirtualMachine", (e) => {
    events.push(`${e.type}:${e.object.metadata.name}`);
    if (e.type === "deleted") deletedAt.set(e.object.metadata.name, performance.now());
  });
  return {
    dir,
    store,
    events,
    deletedAt,
    uid: (n) => store.get("VirtualMachine", `default/${n}`)?.metadata.uid,
    cpu: (n) => store.get("VirtualMachine", `default/${n}`)?.spec.resources?.cpu,
    write,
  };
}

/** Wait for the sentinel's deletion (a settle pass ran after the burst) and one more window. */
async function settled(r: Rig, sentinel = "gone"): Promise<void> {
  await eventually(() => r.deletedAt.has(sentinel), `${sentinel} deleted after the burst`);
  await sleep(2 * SETTLE_MS);
}

function expectKept(r: Rig, uids: Record<string, string | undefined>): void {
  for (const [name, uid] of Object.entries(uids)) {
    expect(uid, `${name} had a uid`).toBeDefined();
    expect(r.uid(name), `${name} kept its uid`).toBe(uid);
    expect(
      r.events.filter((e) => e === `deleted:${name}`),
      `${name} never deleted`,
    ).toEqual([]);
  }
}

describe("FileStore: a rename, an editor's save or a checkout is not a deletion", () => {
  it("mv vms/vm-1.yaml vms/sub/vm-1.yaml keeps the VM, and the new path is the live definition", async () => {
    const r = await rig({ "vms/vm-1.yaml": vmYaml("vm-1"), "gone.yaml": vmYaml("gone") });
    const uid = r.uid("vm-1");
    mkdirSync(join(r.dir, "vms/sub"));
    renameSync(join(r.dir, "vms/vm-1.yaml"), join(r.dir, "vms/sub/vm-1.yaml"));
    unlinkSync(join(r.dir, "gone.yaml"));
    await settled(r);
    expectKept(r, { "vm-1": uid });
    expect(r.store.errors()).toEqual([]);
    r.write("vms/sub/vm-1.yaml", vmYaml("vm-1", 3));
    await eventually(() => r.cpu("vm-1") === 3, "an edit of the new path applied");
    expect(r.store.get("VirtualMachine", "default/vm-1")?.metadata.generation).toBe(2);
  }, 60_000);

  it("the new path seen first (add before unlink): a duplicate at first, then it takes over", async () => {
    const r = await rig({ "vm-1.yaml": vmYaml("vm-1"), "gone.yaml": vmYaml("gone") });
    const uid = r.uid("vm-1");
    r.write("moved/vm-1.yaml", vmYaml("vm-1"));
    await eventually(
      () => r.store.errors().some((e) => e.message.includes("already defined in")),
      "the copy reported as a duplicate",
    );
    unlinkSync(join(r.dir, "vm-1.yaml"));
    unlinkSync(join(r.dir, "gone.yaml"));
    await settled(r);
    expectKept(r, { "vm-1": uid });
    expect(r.store.errors()).toEqual([]);
    r.write("moved/vm-1.yaml", vmYaml("vm-1", 5));
    await eventually(() => r.cpu("vm-1") === 5, "the new file is the live definition");
  }, 60_000);

  it("the old path gone first (unlink before add) keeps the VM", async () => {
    const r = await rig({ "vm-1.yaml": vmYaml("vm-1"), "gone.yaml": vmYaml("gone") });
    const uid = r.uid("vm-1");
    unlinkSync(join(r.dir, "vm-1.yaml"));
    unlinkSync(join(r.dir, "gone.yaml"));
    await sleep(200);
    r.write("elsewhere/vm-1.yaml", vmYaml("vm-1"));
    await settled(r);
    expectKept(r, { "vm-1": uid });
  }, 60_000);

  it("rapid moves back and forth end where they end, with the VM kept", async () => {
    const r = await rig({ "a/vm-1.yaml": vmYaml("vm-1"), "gone.yaml": vmYaml("gone") });
    const uid = r.uid("vm-1");
    mkdirSync(join(r.dir, "b"));
    for (let i = 0; i < 20; i++) {
      const [from, to] = i % 2 === 0 ? ["a", "b"] : ["b", "a"];
      renameSync(join(r.dir, from, "vm-1.yaml"), join(r.dir, to, "vm-1.yaml"));
      if (i % 3 === 0) await sleep(30);
    }
    unlinkSync(join(r.dir, "gone.yaml"));
    await settled(r);
    expectKept(r, { "vm-1": uid });
    expect(r.store.errors()).toEqual([]);
  }, 60_000);

  it("an editor's save by rename-over, repeated, keeps the VM and applies the last content", async () => {
    const r = await rig({ "vm-1.yaml": vmYaml("vm-1"), "gone.yaml": vmYaml("gone") });
    const uid = r.uid("vm-1");
    for (let cpu = 2; cpu <= 12; cpu++) {
      // vim / VS Code: write a temporary file, rename it over the original.
      writeFileSync(join(r.dir, "vm-1.yaml.tmp"), vmYaml("vm-1", cpu));
      renameSync(join(r.dir, "vm-1.yaml.tmp"), join(r.dir, "vm-1.yaml"));
      if (cpu % 4 === 0) await sleep(80);
    }
    unlinkSync(join(r.dir, "gone.yaml"));
    await settled(r);
    expectKept(r, { "vm-1": uid });
    await eventually(() => r.cpu("vm-1") === 12, "the last save applied");
  }, 60_000);

  it("truncate-then-write (the empty file seen in between) keeps the VM", async () => {
    const r = await rig({ "vm-1.yaml": vmYaml("vm-1"), "gone.yaml": vmYaml("gone") });
    const uid = r.uid("vm-1");
    for (let cpu = 2; cpu <= 5; cpu++) {
      const fd = openSync(join(r.dir, "vm-1.yaml"), "w"); // O_TRUNC
      await sleep(150); // longer than the watcher's write-finish threshold: the empty file is read
      writeSync(fd, vmYaml("vm-1", cpu));
      closeSync(fd);
      await sleep(20);
    }
    unlinkSync(join(r.dir, "gone.yaml"));
    await settled(r);
    expectKept(r, { "vm-1": uid });
    await eventually(() => r.cpu("vm-1") === 5, "the last write applied");
  }, 60_000);

  it("git checkout of a reorganised branch deletes only what the branch removed, and back", async () => {
    const r = await rig(
      {
        "vms/a.yaml": vmYaml("a"),
        "vms/b.yaml": vmYaml("b"),
        "c.yaml": vmYaml("c"),
        "gone.yaml": vmYaml("gone"),
        ...Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`many/vm-${i}.yaml`, vmYaml(`vm-${i}`)])),
      },
      { gitInit: true },
    );
    const git = (...args: string[]) => execFileSync("git", args, { cwd: r.dir, stdio: "pipe" });
    git("checkout", "-q", "-b", "reorg");
    git("mv", "vms/a.yaml", "prod-a.yaml");
    git("mv", "vms/b.yaml", "vms/b-renamed.yaml");
    git("mv", "many", "fleet");
    writeFileSync(join(r.dir, "c.yaml"), vmYaml("c", 4));
    git("rm", "-q", "gone.yaml");
    git("add", "-A");
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "reorg");
    // The commit above was made in the watched tree; start from main again, then check out.
    git("checkout", "-q", "main");
    await eventually(() => !!r.uid("gone") && r.cpu("c") === 1, "back on main");
    await sleep(2 * SETTLE_MS);
    const names = ["a", "b", "c", ...Array.from({ length: 30 }, (_, i) => `vm-${i}`)];
    const uids = Object.fromEntries(names.map((n) => [n, r.uid(n)]));
    r.deletedAt.clear();
    r.events.splice(0);
    git("checkout", "-q", "reorg");
    await settled(r);
    expectKept(r, uids);
    await eventually(() => r.cpu("c") === 4, "c's edit applied");
    expect(r.store.errors()).toEqual([]);
    expect(r.uid("gone")).toBeUndefined();
    git("checkout", "-q", "main");
    await eventually(() => !!r.uid("gone"), "gone declared again on main");
    await sleep(2 * SETTLE_MS);
    expectKept(r, uids);
  }, 120_000);

  it("a directory removed and written again by a tool keeps every VM it still defines", async () => {
    const files = Object.fromEntries(
      Array.from({ length: 10 }, (_, i) => [`gen/vm-${i}.yaml`, vmYaml(`vm-${i}`)]),
    );
    const r = await rig({ ...files, "gone.yaml": vmYaml("gone") });
    const uids = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`vm-${i}`, r.uid(`vm-${i}`)]));
    for (let round = 0; round < 3; round++) {
      rmSync(join(r.dir, "gen"), { recursive: true });
      if (round === 1) await sleep(300); // the removal seen alone before the files come back
      for (const [rel, text] of Object.entries(files).reverse()) r.write(rel, text);
    }
    unlinkSync(join(r.dir, "gone.yaml"));
    await settled(r);
    expectKept(r, uids);
  }, 60_000);

  it("the watched root itself removed and written again: VMs kept, and later edits still seen", async () => {
    const files = Object.fromEntries(
      Array.from({ length: 5 }, (_, i) => [`vm-${i}.yaml`, vmYaml(`vm-${i}`)]),
    );
    const r = await rig({ ...files, "gone.yaml": vmYaml("gone") });
    const uids = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`vm-${i}`, r.uid(`vm-${i}`)]));
    rmSync(r.dir, { recursive: true });
    await sleep(200);
    mkdirSync(r.dir);
    for (const [rel, text] of Object.entries(files)) r.write(rel, text);
    await settled(r);
    expectKept(r, uids);
    r.write("vm-0.yaml", vmYaml("vm-0", 7));
    r.write("new.yaml", vmYaml("new"));
    await eventually(() => r.cpu("vm-0") === 7 && !!r.uid("new"), "edits in the new directory seen");
  }, 60_000);

  it("a duplicate definition takes over, same uid, when the first file goes", async () => {
    const r = await rig({ "1.yaml": vmYaml("x", 1), "2.yaml": vmYaml("x", 8), "gone.yaml": vmYaml("gone") });
    const uid = r.uid("x");
    expect(r.cpu("x")).toBe(1);
    expect(r.store.errors().map((e) => e.message)).toEqual([
      expect.stringContaining(`already defined in ${join(r.dir, "1.yaml")}`),
    ]);
    unlinkSync(join(r.dir, "1.yaml"));
    unlinkSync(join(r.dir, "gone.yaml"));
    await settled(r);
    expectKept(r, { x: uid });
    expect(r.cpu("x")).toBe(8);
    expect(r.store.get("VirtualMachine", "default/x")?.metadata.generation).toBe(2);
    expect(r.store.errors()).toEqual([]);
  }, 60_000);

  it("a VM removed for good is deleted, only after the directory was quiet for the window", async () => {
    const r = await rig({
      "keep.yaml": vmYaml("keep"),
      "gone.yaml": vmYaml("gone"),
      "two.yaml": `${vmYaml("t1")}---\n${vmYaml("t2")}`,
    });
    unlinkSync(join(r.dir, "gone.yaml"));
    // Keep the directory busy for a while: nothing may be deleted while it is.
    let lastChange = performance.now();
    for (let i = 0; i < 6; i++) {
      await sleep(SETTLE_MS / 3);
      r.write("keep.yaml", vmYaml("keep", 2 + (i % 2)));
      lastChange = performance.now();
    }
    r.write("two.yaml", vmYaml("t1"));
    lastChange = performance.now();
    await eventually(() => r.deletedAt.has("gone") && r.deletedAt.has("t2"), "gone and t2 deleted");
    // A lower bound only (a slow machine makes it later, never earlier).
    expect((r.deletedAt.get("gone") as number) - lastChange).toBeGreaterThanOrEqual(SETTLE_MS - 60);
    expect(r.uid("keep")).toBeDefined();
    expect(r.uid("t1")).toBeDefined();
  }, 60_000);
});
