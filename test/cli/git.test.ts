/**
 * `virtwarden run --git` as a user runs it: the real command in a child process (--simulate),
 * a file:// remote, the webhook with a GitHub signature, and `virtwarden get` / `describe`
 * showing the sync line, then a broken commit reported by commit, file, line and field.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { eventuallyWith } from "../support/eventually.js";
import { GitRemote } from "../support/git-remote.js";

const ROOT = join(import.meta.dirname, "..", "..");
const cli = (...args: string[]) =>
  spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "src/cli/main.ts"), ...args], {
    cwd: ROOT,
    encoding: "utf8",
  });

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

const eventually = eventuallyWith({ timeoutMs: 60_000, everyMs: 200 });

it("run --git: applied, shown by get and describe, woken by a signed webhook, a broken commit named", async () => {
  const root = mkdtempSync(join(tmpdir(), "vw-cli-git-"));
  cleanups.push(() => rmSync(root, { recursive: true, force: true }));
  const remote = new GitRemote(join(root, "repo"));
  const vm = (memory: string) =>
    `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata: { name: web, namespace: default }\nspec:\n  resources: { cpu: 1, memory: ${memory} }\n`;
  const c1 = remote.commit("a host and a VM", {
    "hosts.yaml":
      "apiVersion: virtwarden.io/v1alpha1\nkind: Host\nmetadata: { name: kvm-01 }\nspec: { uri: qemu+ssh://root@kvm-01/system }\n",
    "web.yaml": vm("512Mi"),
  });
  const secretFile = join(root, "secret");
  writeFileSync(secretFile, "hooksecret\n");
  const state = join(root, "state");
  const port = await freePort();
  const proc: ChildProcess = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      join(ROOT, "src/cli/main.ts"),
      "run",
      "--git",
      remote.fileUrl,
      "--simulate",
      "--interval",
      "0",
      "--webhook-secret-file",
      secretFile,
      "--state-dir",
      state,
      "--metrics-addr",
      `127.0.0.1:${port}`,
      "--log-format",
      "json",
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  let log = "";
  proc.stdout?.on("data", (b: Buffer) => {
    log += b.toString();
  });
  proc.stderr?.on("data", (b: Buffer) => {
    log += b.toString();
  });
  cleanups.push(() => proc.kill("SIGKILL"));
  const get = () => cli("get", "vm", "--state-dir", state).stdout;
  await eventually(
    () => get().includes(`Sync: revision ${c1.slice(0, 12)}`),
    `first sync (log: ${log.slice(-2000)})`,
  );
  expect(get()).toMatch(/default\s+web\s+/);

  // Without --interval, only the webhook makes it fetch.
  const c2 = remote.commit("typo in memory", { "web.yaml": vm("512Mx") });
  const body = JSON.stringify({ ref: "refs/heads/main" });
  const sig = createHmac("sha256", "hooksecret").update(body).digest("hex");
  const res = await fetch(`http://127.0.0.1:${port}/hooks/git`, {
    method: "POST",
    body,
    headers: { "content-type": "application/json", "x-hub-signature-256": `sha256=${sig}` },
  });
  expect(res.status).toBe(202);
  await eventually(() => get().includes("SyncFailed"), "the broken commit judged");
  const out = get();
  expect(out).toContain(`commit ${c2.slice(0, 12)} "typo in memory" is not applied`);
  expect(out).toContain("web.yaml:5:");
  expect(out).toContain("spec.resources.memory");
  expect(out).toContain(`${c1.slice(0, 12)} stays in force`);
  const described = cli("describe", "vm", "web", "--state-dir", state).stdout;
  expect(described).toMatch(/^Sync: +revision /m);
  expect(
    JSON.parse(cli("get", "vm", "web", "-o", "json", "--state-dir", state).stdout)[0].spec.resources.memory,
  ).toBe("512Mi");
  const events = cli("events", "--state-dir", state).stdout;
  expect(events).toMatch(/Synced\s+GitRepository\//);
  expect(events).toMatch(/SyncFailed\s+GitRepository\//);
  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  expect(metrics).toContain(`virtwarden_gitops_revision_info{revision="${c1}",branch="main"} 1`);
  proc.kill("SIGTERM");
  await new Promise((r) => proc.once("exit", r));
}, 180_000);

it("run --git refuses directories and --kubernetes with it (usage)", () => {
  const r = cli("run", "--git", "file:///x", "some-dir");
  expect(r.status).toBe(2);
  expect(r.stderr).toContain("no directories with it");
  const k = cli("run", "--git", "file:///x", "--kubernetes");
  expect(k.status).toBe(2);
  expect(k.stderr).toContain("--git is for standalone mode");
});
