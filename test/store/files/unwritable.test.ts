/**
 * The state dir full or read-only, for real (root: a small tmpfs filled up, or remounted
 * read-only): the write is rejected with a clear error, nothing in memory moves ahead of the
 * journal, the store says it is unwritable, the runtime starts no action, and everything resumes
 * by itself once a probe write succeeds. The journal is checked by reading its lines directly,
 * not through the journal code.
 */
import { execFileSync } from "node:child_process";
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import type { VirtualMachine } from "../../../src/api/types.js";
import { Runtime } from "../../../src/cli/runtime.js";
import { silentLogger } from "../../../src/controller/log.js";
import { Simulator, simulatorFactory } from "../../../src/providers/sim/index.js";
import { FileStore, StateNotWritableError } from "../../../src/store/files/index.js";
import { eventuallyWith } from "../../support/eventually.js";

const cleanups: (() => Promise<void>)[] = [];
const mounts: string[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
  for (const m of mounts.splice(0)) {
    try {
      execFileSync("umount", [m], { stdio: "pipe" });
    } catch {
      execFileSync("umount", ["-l", m], { stdio: "pipe" });
    }
    rmSync(m, { recursive: true, force: true });
  }
});

function tmpfs(sizeK: number): string {
  const d = mkdtempSync(join(tmpdir(), "vw-tmpfs-"));
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${sizeK}k`, "tmpfs", d], { stdio: "pipe" });
  mounts.push(d);
  return d;
}

/** Remount, retrying while a write is in flight (a mount with an open writer is busy). */
async function remount(dir: string, mode: "ro" | "rw"): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      execFileSync("mount", ["-o", `remount,${mode}`, dir], { stdio: "pipe" });
      return;
    } catch (e) {
      if (i > 200) throw e;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** Fill the filesystem to the last byte; returns the filler's path. */
function fill(dir: string): string {
  const path = join(dir, "filler");
  const fd = openSync(path, "w");
  try {
    for (const size of [65536, 4096, 1]) {
      const chunk = Buffer.alloc(size, 0x61);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (e) {
        expect((e as NodeJS.ErrnoException).code).toBe("ENOSPC");
      }
    }
  } finally {
    closeSync(fd);
  }
  return path;
}

/** The journal's records, read line by line (every line whole: 8 hex digits, space, JSON). */
function journalLines(stateDir: string): Record<string, unknown>[] {
  const text = readFileSync(join(stateDir, "journal.log"), "utf8");
  expect(text === "" || text.endsWith("\n"), "no torn record left behind").toBe(true);
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      expect(line).toMatch(/^[0-9a-f]{8} \{/);
      return JSON.parse(line.slice(9)) as Record<string, unknown>;
    });
}

const vmYaml = (name: string, cpu = 1) =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: ${name}\nspec:\n  resources: {cpu: ${cpu}, memory: 1Gi}\n`;

const bigStatus = (n: number) =>
  ({
    phase: "Running",
    restartCount: n,
    conditions: [
      {
        type: "Ready",
        status: "True",
        reason: "Running",
        message: "x".repeat(1500),
        lastTransitionTime: "2026-01-01T00:00:00Z",
      },
    ],
  }) as unknown as NonNullable<VirtualMachine["status"]>;

const eventually = eventuallyWith({ timeoutMs: 30_000 });

function manifests(files: Record<string, string>): string {
  const d = mkdtempSync(join(tmpdir(), "vw-unwritable-m-"));
  cleanups.push(async () => rmSync(d, { recursive: true, force: true }));
  for (const [f, t] of Object.entries(files)) writeFileSync(join(d, f), t);
  return d;
}

async function openStore(manifestDir: string, stateDir: string): Promise<FileStore> {
  const s = new FileStore({
    manifestDir,
    stateDir,
    probeIntervalMs: 100,
    deleteSettleMs: 100,
    viewIntervalMs: 50,
  });
  await s.start();
  cleanups.push(() => s.stop());
  return s;
}

describe("FileStore: a state dir that is full or read-only", () => {
  it("full (ENOSPC): the write is refused, memory does not move ahead of the journal, and it resumes", async () => {
    const mnt = tmpfs(64);
    const state = join(mnt, "state");
    const dir = manifests({ "a.yaml": vmYaml("a") });
    const store = await openStore(dir, state);
    const changes: boolean[] = [];
    store.onWritableChange((w) => changes.push(w));
    const vm = () => store.get("VirtualMachine", "default/a") as VirtualMachine;
    const filler = fill(mnt);
    // The journal's last page may still hold a few records: write until the disk says no.
    let acked = 0;
    let error: unknown;
    for (let n = 1; n <= 200 && !error; n++) {
      await store.updateStatus(vm(), bigStatus(n)).then(
        () => {
          acked = n;
        },
        (e: unknown) => {
          error = e;
        },
      );
    }
    expect(error).toBeInstanceOf(StateNotWritableError);
    expect((error as StateNotWritableError).code).toBe("ENOSPC");
    expect(String(error)).toContain(`state dir ${state} is not writable (ENOSPC`);
    expect(store.writable()).toBe(false);
    expect(changes).toEqual([false]);
    // Nothing of the refused write in memory; the journal holds every acknowledged one, whole.
    expect(vm().status?.restartCount).toBe(acked === 0 ? undefined : acked);
    const statuses = () =>
      journalLines(state)
        .filter((r) => r.t === "status")
        .map((r) => (r.status as { restartCount: number }).restartCount);
    expect(Math.max(0, ...statuses())).toBe(acked);
    // Refused at once while unwritable; a manifest edit waits too.
    await expect(store.updateStatus(vm(), bigStatus(1000))).rejects.toThrow(StateNotWritableError);
    writeFileSync(join(dir, "a.yaml"), vmYaml("a", 2));
    await new Promise((r) => setTimeout(r, 500));
    expect(vm().metadata.generation).toBe(1);

    unlinkSync(filler);
    await eventually(() => store.writable(), "writable again after the probe");
    expect(changes).toEqual([false, true]);
    await eventually(() => vm().metadata.generation === 2, "the edit seen meanwhile applied");
    await store.updateStatus(vm(), bigStatus(acked + 1));
    expect(statuses()).not.toContain(1000);
    await cleanups.pop()?.();
    const again = await openStore(dir, state);
    const a = again.get("VirtualMachine", "default/a");
    expect(a?.status?.restartCount).toBe(acked + 1);
    expect(a?.metadata.generation).toBe(2);
    expect(a?.spec.resources?.cpu).toBe(2);
  }, 60_000);

  it("remounted read-only (EROFS): refused and reported, resumes once it is read-write again", async () => {
    const mnt = tmpfs(256);
    const state = join(mnt, "state");
    const dir = manifests({ "a.yaml": vmYaml("a") });
    const store = await openStore(dir, state);
    const vm = () => store.get("VirtualMachine", "default/a") as VirtualMachine;
    await store.updateStatus(vm(), bigStatus(1));
    await remount(mnt, "ro");
    const err = await store.updateStatus(vm(), bigStatus(2)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateNotWritableError);
    expect((err as StateNotWritableError).code).toBe("EROFS");
    expect(String(err)).toContain(`state dir ${state} is not writable (EROFS`);
    expect(store.writable()).toBe(false);
    expect(vm().status?.restartCount).toBe(1);
    await remount(mnt, "rw");
    await eventually(() => store.writable(), "writable again");
    await store.updateStatus(vm(), bigStatus(3));
    expect(
      journalLines(state)
        .filter((r) => r.t === "status")
        .map((r) => (r.status as { restartCount: number }).restartCount),
    ).toEqual([1, 3]);
  }, 60_000);

  it("read-only at start: refuses to start, naming the dir and the errno", async () => {
    const mnt = tmpfs(64);
    mkdirSync(join(mnt, "state"));
    await remount(mnt, "ro");
    const s = new FileStore({
      manifestDir: manifests({ "a.yaml": vmYaml("a") }),
      stateDir: join(mnt, "state"),
    });
    await expect(s.start()).rejects.toThrow(`state dir ${join(mnt, "state")} is not writable (EROFS`);
    await s.stop();
  });

  it("the runtime starts no action while the state dir is full, and resumes by itself", async () => {
    const mnt = tmpfs(512);
    const state = join(mnt, "state");
    const dir = manifests({
      "all.yaml": `apiVersion: virtwarden.io/v1alpha1\nkind: Host\nmetadata: {name: h1}\nspec: {uri: "sim://h1"}\n---\n${vmYaml("a")}`,
    });
    const sim = new Simulator({ latency: "none", autoCreateHosts: true });
    const store = new FileStore({
      manifestDir: dir,
      stateDir: state,
      probeIntervalMs: 100,
      compactEvery: 100,
    });
    const registry = new Registry();
    const rt = new Runtime({
      store,
      providerFactory: simulatorFactory(sim),
      registry,
      logger: silentLogger,
      heartbeatIntervalMs: 100,
      stateHealth: store,
    });
    await rt.start();
    cleanups.push(() => rt.stop(100));
    const metric = async () => /^virtwarden_state_writable (\d)$/m.exec(await registry.metrics())?.[1];
    await eventually(
      () => store.get("VirtualMachine", "default/a")?.status?.phase === "Running",
      "a running",
    );
    expect(await metric()).toBe("1");
    const filler = fill(mnt);
    // The first write that fails makes the store unwritable (here, ours; in life, any of the controllers').
    let n = 0;
    while (store.writable() && n < 500)
      await store
        .updateStatus(
          store.get("Host", "h1") as never,
          { ...(store.get("Host", "h1")?.status ?? {}), message: `${n++}` } as never,
        )
        .catch(() => undefined);
    expect(store.writable()).toBe(false);
    expect(await metric()).toBe("0");
    const [host] = sim.runningCopies("default_a");
    sim.crashDomain(host as string, "default_a");
    // While unwritable nothing acts: the crashed VM is not restarted (it would be in well under this).
    await new Promise((r) => setTimeout(r, 2000));
    expect(sim.runningCopies("default_a")).toEqual([]);
    unlinkSync(filler);
    await eventually(
      () => sim.runningCopies("default_a").length === 1,
      "restarted once writable again",
      6000,
    );
    expect(await metric()).toBe("1");
    await eventually(
      () => (store.get("VirtualMachine", "default/a")?.status?.restartCount ?? 0) >= 1,
      "the restart recorded",
      6000,
    );
  }, 90_000);
});
