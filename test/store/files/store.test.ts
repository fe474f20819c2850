import { spawn } from "node:child_process";
import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { VirtualMachine } from "../../../src/api/types.js";
import { FileStore, openStateReadOnly } from "../../../src/store/files/index.js";
import { decodeJournal } from "../../../src/store/files/journal.js";
import type { WatchEvent } from "../../../src/store/types.js";
import { eventuallyWith } from "../../support/eventually.js";

const roots: string[] = [];
const stores: FileStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.stop().catch(() => undefined)));
  for (const d of roots.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(): { manifests: string; state: string; secrets: string } {
  const root = mkdtempSync(join(tmpdir(), "vw-files-"));
  roots.push(root);
  const dirs = {
    manifests: join(root, "manifests"),
    state: join(root, "state"),
    secrets: join(root, "secrets"),
  };
  mkdirSync(dirs.manifests);
  mkdirSync(dirs.secrets);
  return dirs;
}

async function open(d: ReturnType<typeof setup>, deleteSettleMs = 100): Promise<FileStore> {
  const s = new FileStore({
    manifestDir: d.manifests,
    stateDir: d.state,
    secretsDir: d.secrets,
    viewIntervalMs: 20,
    deleteSettleMs,
  });
  stores.push(s);
  await s.start();
  return s;
}

async function close(s: FileStore): Promise<void> {
  stores.splice(stores.indexOf(s), 1);
  await s.stop();
}

const vmYaml = (name: string, cpu = 1, extra = "") =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: ${name}\nspec:\n  resources: {cpu: ${cpu}, memory: 1Gi}\n${extra}`;

const eventually = eventuallyWith({ timeoutMs: 5_000 });

describe("FileStore: manifests", () => {
  it("turns file creation, edits and removal into watch events with generations", async () => {
    const d = setup();
    writeFileSync(join(d.manifests, "a.yaml"), vmYaml("a"));
    const s = await open(d);
    const events: string[] = [];
    s.watch("VirtualMachine", (e: WatchEvent<"VirtualMachine">) =>
      events.push(`${e.type}:${e.object.metadata.name}:${e.object.metadata.generation}`),
    );
    expect(events).toEqual(["added:a:1"]);
    writeFileSync(join(d.manifests, "b.yml"), vmYaml("b"));
    await eventually(() => events.includes("added:b:1"), "b added");
    writeFileSync(join(d.manifests, "a.yaml"), vmYaml("a", 2));
    await eventually(() => events.includes("modified:a:2"), "a's generation bumped");
    unlinkSync(join(d.manifests, "b.yml"));
    await eventually(() => events.includes("deleted:b:1"), "b deleted");
    expect(s.get("VirtualMachine", "default/a")?.metadata.namespace).toBe("default");
  });

  it("keeps the last good object when an edit is invalid, and reports file and line", async () => {
    const d = setup();
    const file = join(d.manifests, "vms.yaml");
    writeFileSync(file, `${vmYaml("a")}---\n${vmYaml("b")}`);
    const s = await open(d);
    const errors: string[] = [];
    s.onErrors((errs) => errors.push(...errs.map((e) => `${e.file}:${e.line}:${e.path}`)));
    // b becomes invalid, a is edited, and the rest of the file is cut short.
    writeFileSync(file, `${vmYaml("a", 4)}---\n${vmYaml("b").replace("cpu: 1", "cpu: many")}`);
    await eventually(() => errors.length > 0, "error reported");
    expect(errors[0]).toBe(`${file}:13:spec.resources.cpu`);
    await eventually(
      () => s.get("VirtualMachine", "default/a")?.spec.resources?.cpu === 4,
      "valid document applied",
    );
    expect(s.get("VirtualMachine", "default/b")?.spec.resources?.cpu).toBe(1);
    // Removing b from a broken file deletes nothing...
    writeFileSync(file, `${vmYaml("a", 4)}---\nkind: [`);
    await eventually(() => s.errors().some((e) => e.message.startsWith("YAML")), "syntax error reported");
    expect(s.get("VirtualMachine", "default/b")).toBeDefined();
    // ...removing it from a file that loads cleanly does.
    writeFileSync(file, vmYaml("a", 4));
    await eventually(
      () => s.get("VirtualMachine", "default/b") === undefined,
      "b deleted once the file is valid",
    );
    expect(s.errors()).toEqual([]);
    const warnings = s.listEvents().filter((e) => e.reason === "InvalidManifest");
    expect(warnings.length).toBeGreaterThan(0);
  });

  it("rejects a second definition of the same object in another file", async () => {
    const d = setup();
    writeFileSync(join(d.manifests, "1.yaml"), vmYaml("a"));
    writeFileSync(join(d.manifests, "2.yaml"), vmYaml("a", 8));
    const s = await open(d);
    expect(s.get("VirtualMachine", "default/a")?.spec.resources?.cpu).toBe(1);
    expect(s.errors()[0]?.message).toContain("already defined in");
  });

  it("deletes through finalizers: deletionTimestamp first, gone when the last finalizer goes", async () => {
    const d = setup();
    writeFileSync(join(d.manifests, "a.yaml"), vmYaml("a"));
    const s = await open(d);
    const vm = s.get("VirtualMachine", "default/a") as VirtualMachine;
    await s.addFinalizer(vm, "virtwarden.io/cleanup");
    unlinkSync(join(d.manifests, "a.yaml"));
    await eventually(
      () => !!s.get("VirtualMachine", "default/a")?.metadata.deletionTimestamp,
      "marked for deletion",
    );
    await s.removeFinalizer(s.get("VirtualMachine", "default/a") as VirtualMachine, "virtwarden.io/cleanup");
    expect(s.get("VirtualMachine", "default/a")).toBeUndefined();
  });

  it("keeps uid, generation, finalizers and status across restarts; a manifest removed while down is deleted", async () => {
    const d = setup();
    writeFileSync(join(d.manifests, "a.yaml"), vmYaml("a"));
    writeFileSync(join(d.manifests, "b.yaml"), vmYaml("b"));
    let s = await open(d);
    const a = s.get("VirtualMachine", "default/a") as VirtualMachine;
    await s.addFinalizer(a, "virtwarden.io/cleanup");
    await s.updateStatus(s.get("VirtualMachine", "default/a") as VirtualMachine, {
      phase: "Running",
      host: "h1",
    });
    await close(s);
    writeFileSync(join(d.manifests, "a.yaml"), vmYaml("a", 2));
    unlinkSync(join(d.manifests, "b.yaml"));
    s = await open(d);
    const again = s.get("VirtualMachine", "default/a");
    expect(again?.metadata.uid).toBe(a.metadata.uid);
    expect(again?.metadata.generation).toBe(2);
    expect(again?.metadata.finalizers).toEqual(["virtwarden.io/cleanup"]);
    expect(again?.status).toEqual({ phase: "Running", host: "h1" });
    // b is deleted once the directory has settled, not before.
    expect(s.get("VirtualMachine", "default/b")?.metadata.generation).toBe(1);
    await eventually(() => s.get("VirtualMachine", "default/b") === undefined, "b deleted after settling");
  });

  it("does not write status that did not change", async () => {
    const d = setup();
    writeFileSync(join(d.manifests, "a.yaml"), vmYaml("a"));
    const s = await open(d);
    const first = await s.updateStatus(s.get("VirtualMachine", "default/a") as VirtualMachine, {
      phase: "Running",
    });
    const second = await s.updateStatus(first, { phase: "Running" });
    expect(second.metadata.resourceVersion).toBe(first.metadata.resourceVersion);
    await close(s);
    const lines = decodeJournal(readFileSync(join(d.state, "journal.log"), "utf8")).records.filter(
      (r) => r.t === "status",
    );
    expect(lines).toHaveLength(1);
  });

  it("keeps controller-created objects, and serves a read-only view to other processes", async () => {
    const d = setup();
    const s = await open(d);
    await s.create({
      apiVersion: "virtwarden.io/v1alpha1",
      kind: "VirtualMachineSnapshot",
      metadata: { name: "snap-1", namespace: "default" },
      spec: { vmName: "a" },
    });
    s.recordEvent({
      regarding: { kind: "VirtualMachineSnapshot", namespace: "default", name: "snap-1" },
      type: "Normal",
      reason: "Taken",
      action: "Snapshot",
      note: "ok",
    });
    s.recordEvent({
      regarding: { kind: "VirtualMachineSnapshot", namespace: "default", name: "snap-1" },
      type: "Normal",
      reason: "Taken",
      action: "Snapshot",
      note: "again",
    });
    await close(s);
    const view = await openStateReadOnly(d.state);
    expect(view.list("VirtualMachineSnapshot").map((r) => r.metadata.name)).toEqual(["snap-1"]);
    expect(
      view.listEvents({ kind: "VirtualMachineSnapshot", namespace: "default", name: "snap-1" }),
    ).toMatchObject([{ reason: "Taken", count: 2, note: "again" }]);
    const s2 = await open(d);
    expect(s2.get("VirtualMachineSnapshot", "default/snap-1")?.spec).toEqual({ vmName: "a", type: "disk" });
  });

  it("reads standalone secrets as maps or Secret manifests", async () => {
    const d = setup();
    writeFileSync(join(d.secrets, "bmc.yaml"), "username: admin\npassword: s3cret\n");
    writeFileSync(
      join(d.secrets, "bmc2.yaml"),
      `kind: Secret\ndata:\n  password: ${Buffer.from("p").toString("base64")}\nstringData:\n  username: root\n`,
    );
    const s = await open(d);
    expect(await s.readSecret({ name: "bmc" })).toEqual({ username: "admin", password: "s3cret" });
    expect(await s.readSecret({ name: "bmc2" })).toEqual({ password: "p", username: "root" });
    await expect(s.readSecret({ name: "nope" })).rejects.toThrow(/not found/);
  });
});

describe("FileStore: crash safety", () => {
  it("ignores a torn journal tail and keeps appending after the last good record", async () => {
    const d = setup();
    writeFileSync(join(d.manifests, "a.yaml"), vmYaml("a"));
    let s = await open(d);
    await s.updateStatus(s.get("VirtualMachine", "default/a") as VirtualMachine, {
      phase: "Running",
      restartCount: 7,
    });
    await close(s);
    appendFileSync(
      join(d.state, "journal.log"),
      '0badf00d {"t":"status","id":"VirtualMachine|default/a","status":{"resta',
    );
    s = await open(d);
    expect(s.get("VirtualMachine", "default/a")?.status?.restartCount).toBe(7);
    await s.updateStatus(s.get("VirtualMachine", "default/a") as VirtualMachine, {
      phase: "Running",
      restartCount: 8,
    });
    await close(s);
    s = await open(d);
    expect(s.get("VirtualMachine", "default/a")?.status?.restartCount).toBe(8);
  });

  it("loses no acknowledged write when killed at random moments (20 SIGKILLs)", async () => {
    const d = setup();
    writeFileSync(join(d.manifests, "crash.yaml"), vmYaml("crash"));
    let acked = 0;
    for (let round = 0; round < 20; round++) {
      const child = spawn(
        process.execPath,
        [
          "--import",
          "tsx",
          join(import.meta.dirname, "crash-writer.ts"),
          d.manifests,
          d.state,
          String(acked),
        ],
        {
          stdio: ["ignore", "pipe", "inherit"],
        },
      );
      let out = "";
      child.stdout.on("data", (b: Buffer) => {
        out += b.toString();
        const m = out.match(/ack (\d+)\n(?![\s\S]*ack)/);
        if (m) acked = Math.max(acked, Number(m[1]));
      });
      const killAfter = 20 + Math.floor(Math.random() * 200);
      await new Promise<void>((resolve) => {
        let timer: NodeJS.Timeout | undefined;
        child.stdout.once("data", () => {
          timer = setTimeout(() => child.kill("SIGKILL"), killAfter);
        });
        child.once("exit", () => {
          if (timer) clearTimeout(timer);
          resolve();
        });
      });
      for (const m of out.matchAll(/ack (\d+)\n/g)) acked = Math.max(acked, Number(m[1]));
      const s = new FileStore({ manifestDir: d.manifests, stateDir: d.state });
      await s.start();
      const got = s.get("VirtualMachine", "default/crash")?.status?.restartCount ?? 0;
      await s.stop();
      expect(got).toBeGreaterThanOrEqual(acked);
      acked = got;
    }
    expect(acked).toBeGreaterThan(20);
  }, 180_000);
});
