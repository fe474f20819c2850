/**
 * One controller per state dir: a second `virtwarden run` on the same state dir is refused at
 * once, naming the holder; a SIGKILLed controller's lock does not block its restart; a lock whose
 * pid was reused by another process is stale; a holder on another host is never second-guessed.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FileStore } from "../../../src/store/files/index.js";
import { processStartTicks, StateDirLockedError } from "../../../src/store/files/lock.js";
import { eventuallyWith } from "../../support/eventually.js";

const ROOT = join(import.meta.dirname, "../../..");
const roots: string[] = [];
const children: ChildProcess[] = [];
const stores: FileStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.stop().catch(() => undefined)));
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  for (const d of roots.splice(0)) rmSync(d, { recursive: true, force: true });
});

function dirs(): { manifests: string; state: string } {
  const root = mkdtempSync(join(tmpdir(), "vw-lock-"));
  roots.push(root);
  const manifests = join(root, "manifests");
  mkdirSync(manifests);
  writeFileSync(
    join(manifests, "all.yaml"),
    `apiVersion: virtwarden.io/v1alpha1\nkind: Host\nmetadata: {name: h1}\nspec: {uri: "sim://h1"}\n---\napiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: a}\nspec:\n  resources: {cpu: 1, memory: 1Gi}\n`,
  );
  return { manifests, state: join(root, "state") };
}

interface Run {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** `virtwarden run` as its own process, on the simulator, metrics on a free port. */
function virtwardenRun(d: { manifests: string; state: string }): Run {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      join(ROOT, "src/cli/main.ts"),
      "run",
      d.manifests,
      "--simulate",
      "--state-dir",
      d.state,
      "--metrics-addr",
      "127.0.0.1:0",
      "--log-format",
      "json",
      "--consolidate-interval",
      "0",
    ],
    { stdio: ["ignore", "pipe", "pipe"], cwd: ROOT },
  );
  children.push(child);
  let out = "";
  child.stdout?.on("data", (b: Buffer) => {
    out += b.toString();
  });
  child.stderr?.on("data", (b: Buffer) => {
    out += b.toString();
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  return { child, output: () => out, exited };
}

const eventually = eventuallyWith({ timeoutMs: 60_000 });

describe("FileStore: the state dir lock", () => {
  it("refuses a second virtwarden run at once, and a SIGKILLed one's lock does not block the restart", async () => {
    const d = dirs();
    const first = virtwardenRun(d);
    await eventually(() => first.output().includes("controllers started"), "first controller started");
    const second = virtwardenRun(d);
    const code = await Promise.race([
      second.exited,
      new Promise<string>((r) => setTimeout(() => r("still running"), 60_000)),
    ]);
    expect(code).toBe(1);
    expect(second.output()).toContain(`state dir ${d.state} is locked by pid ${first.child.pid} (started `);
    expect(second.output()).toContain("another virtwarden is running on it");
    expect(second.output()).not.toContain("controllers started");
    // The refused one left the holder's lock alone.
    expect(JSON.parse(readFileSync(join(d.state, "lock"), "utf8")).pid).toBe(first.child.pid);

    first.child.kill("SIGKILL");
    await first.exited;
    const third = virtwardenRun(d);
    await eventually(() => third.output().includes("controllers started"), "restart after SIGKILL started");
    expect(third.output()).toContain("took over the lock of a controller that is gone");
    expect(JSON.parse(readFileSync(join(d.state, "lock"), "utf8")).pid).toBe(third.child.pid);
    third.child.kill("SIGTERM");
    expect(await third.exited).toBe(0);
  }, 180_000);

  it("refuses a second store in the same process, and lets it in once the first stopped", async () => {
    const d = dirs();
    const a = new FileStore({ manifestDir: d.manifests, stateDir: d.state });
    stores.push(a);
    await a.start();
    const b = new FileStore({ manifestDir: d.manifests, stateDir: d.state });
    const err = await b.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StateDirLockedError);
    expect(String(err)).toContain(`is locked by pid ${process.pid}`);
    await b.stop(); // a refused store's stop touches nothing of the holder's
    expect(a.get("VirtualMachine", "default/a")).toBeDefined();
    stores.splice(stores.indexOf(a), 1);
    await a.stop();
    stores.push(b);
    await b.start();
    expect(b.get("VirtualMachine", "default/a")?.metadata.uid).toBeDefined();
  });

  it("takes over a lock whose pid now belongs to another process (started at another time)", async () => {
    const d = dirs();
    mkdirSync(d.state, { recursive: true });
    // A live process that is not the holder: our parent, with a start time that is not its own.
    const ticks = processStartTicks(process.ppid);
    expect(ticks).toBeDefined();
    const bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    writeFileSync(
      join(d.state, "lock"),
      JSON.stringify({
        pid: process.ppid,
        startTicks: String(Number(ticks) + 1),
        bootId,
        hostname: hostname(),
        startedAt: "2026-01-01T00:00:00.000Z",
        token: "old",
      }),
    );
    const s = new FileStore({ manifestDir: d.manifests, stateDir: d.state });
    stores.push(s);
    await s.start();
    expect(JSON.parse(readFileSync(join(d.state, "lock"), "utf8")).pid).toBe(process.pid);
  });

  it("never takes over a live holder's lock, nor one held on another host", async () => {
    const d = dirs();
    mkdirSync(d.state, { recursive: true });
    const bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    const lock = (h: object) => writeFileSync(join(d.state, "lock"), JSON.stringify(h));
    lock({
      pid: process.ppid,
      startTicks: processStartTicks(process.ppid),
      bootId,
      hostname: hostname(),
      startedAt: "2026-01-01T00:00:00.000Z",
      token: "live",
    });
    await expect(new FileStore({ manifestDir: d.manifests, stateDir: d.state }).start()).rejects.toThrow(
      `is locked by pid ${process.ppid} (started 2026-01-01T00:00:00.000Z)`,
    );
    lock({
      pid: 999_999_999,
      startTicks: "1",
      bootId: "another-boot",
      hostname: "some-other-host",
      startedAt: "2026-01-01T00:00:00.000Z",
      token: "remote",
    });
    await expect(new FileStore({ manifestDir: d.manifests, stateDir: d.state }).start()).rejects.toThrow(
      "is locked by pid 999999999 on host some-other-host",
    );
  });
});
