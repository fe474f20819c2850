/**
 * `run --git` against real repositories: a bare repository on disk (file://) and the same one
 * served over smart HTTP by `git http-backend` on loopback, with the FileStore in tree mode, the
 * whole Runtime and the simulator (no libvirt). No timed assertions: every wait is for a
 * condition, with a generous bound.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import type { VirtualMachine } from "../../src/api/types.js";
import { Runtime } from "../../src/cli/runtime.js";
import type { GitCredentials } from "../../src/gitops/git.js";
import { GitSync, type SyncResult } from "../../src/gitops/sync.js";
import { NO_LATENCY, Simulator, simulatorFactory } from "../../src/providers/sim/index.js";
import { FileStore } from "../../src/store/files/index.js";
import { eventuallyWith } from "../support/eventually.js";
import { GitRemote, serveHttpBackend, serveSsh, sshdAvailable } from "../support/git-remote.js";

const SETTLE_MS = 300;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), "vw-git-"));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const eventually = eventuallyWith({ timeoutMs: 30_000, everyMs: 20 });

const host = (name: string) =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: Host\nmetadata:\n  name: ${name}\nspec:\n  uri: sim://${name}\n`;

const vmYaml = (name: string, cpu = 1, labels: Record<string, string> = {}) =>
  [
    "apiVersion: virtwarden.io/v1alpha1",
    "kind: VirtualMachine",
    "metadata:",
    `  name: ${name}`,
    "  namespace: default",
    `  labels: ${JSON.stringify({ app: "test", ...labels })}`,
    "spec:",
    "  runStrategy: Always",
    "  resources:",
    `    cpu: ${cpu}`,
    "    memory: 512Mi",
    "",
  ].join("\n");

interface Controller {
  store: FileStore;
  sync: GitSync;
  sim: Simulator;
  registry: Registry;
  results: SyncResult[];
  logs: string[];
  vm(name: string): VirtualMachine | undefined;
  domainsOf(name: string): string[];
  stop(): Promise<void>;
}

async function controller(
  stateDir: string,
  url: string,
  opts: { credentials?: GitCredentials; intervalMs?: number; path?: string; sim?: Simulator } = {},
): Promise<Controller> {
  const logs: string[] = [];
  const logger = pino(
    { level: "debug" },
    new Writable({
      write(chunk, _enc, cb) {
        logs.push(String(chunk));
        cb();
      },
    }),
  );
  const registry = new Registry();
  const sync = new GitSync({
    url,
    branch: "main",
    path: opts.path ?? ".",
    intervalMs: opts.intervalMs ?? 100,
    stateDir,
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    logger,
    registry,
  });
  const store = new FileStore({
    tree: sync,
    stateDir,
    deleteSettleMs: SETTLE_MS,
    viewIntervalMs: 50,
    logger,
  });
  const sim =
    opts.sim ??
    new Simulator({
      seed: 1,
      latency: NO_LATENCY,
      autoCreateHosts: true,
      defaultHost: { cpus: 64, memoryBytes: 256 * 1024 ** 3 },
    });
  const rt = new Runtime({
    store,
    providerFactory: simulatorFactory(sim),
    registry,
    logger,
    heartbeatIntervalMs: 100,
    consolidation: false,
    stateHealth: store,
  });
  await rt.start();
  const results: SyncResult[] = [];
  sync.onSync((r) => results.push(r));
  sync.start(store);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await sync.stop();
    await rt.stop(100);
  };
  cleanups.push(stop);
  return {
    store,
    sync,
    sim,
    registry,
    results,
    logs,
    vm: (name) => store.get("VirtualMachine", `default/${name}`),
    // Hosts holding a domain of this VM (defined or running), from the simulator itself.
    domainsOf: (name) => sim.hosts().flatMap((h) => (h.domains.has(`default_${name}`) ? [h.name] : [])),
    stop,
  };
}

const revisionOf = (c: Controller) => c.sync.syncStatus().revision;
const metric = async (r: Registry, name: string) =>
  (await r.getSingleMetricAsString(name)).split("\n").filter((l) => !l.startsWith("#"));

describe("run --git on a file:// remote", () => {
  it("adds, changes and prunes; a broken commit applies nothing of itself and names commit, file, line and field", async () => {
    const remote = new GitRemote(tmp());
    const c1 = remote.commit("two VMs", {
      "hosts.yaml": host("h0"),
      "vms/a.yaml": vmYaml("a"),
      "vms/b.yaml": vmYaml("b"),
    });
    const c = await controller(join(tmp(), "state"), remote.fileUrl);
    await eventually(() => revisionOf(c) === c1, "first commit in force");
    await eventually(
      () => c.vm("a")?.status?.phase === "Running" && c.vm("b")?.status?.phase === "Running",
      "a and b running",
    );
    expect(c.domainsOf("a")).toHaveLength(1);

    // change
    const c2 = remote.commit("a gets 2 cpus", { "vms/a.yaml": vmYaml("a", 2) });
    await eventually(() => revisionOf(c) === c2, "second commit in force");
    expect(c.vm("a")?.spec.resources?.cpu).toBe(2);
    expect(c.vm("a")?.metadata.generation).toBe(2);

    // broken: one good change (b -> 3 cpus, a new VM c) and one bad document in another file
    const broken = remote.commit("broken", {
      "vms/b.yaml": vmYaml("b", 3),
      "vms/c.yaml": vmYaml("c"),
      "vms/bad.yaml": vmYaml("bad").replace("cpu: 1", "cpu: lots"),
    });
    await eventually(() => c.sync.syncStatus().lastAttempt?.revision === broken, "broken commit judged");
    const st = c.sync.syncStatus();
    expect(st.lastAttempt?.result).toBe("SyncFailed");
    expect(st.revision).toBe(c2);
    const msg = st.lastAttempt?.message ?? "";
    expect(msg).toContain(broken.slice(0, 12));
    expect(msg).toMatch(/vms\/bad\.yaml:\d+:\d+/);
    expect(msg).toContain("spec.resources.cpu");
    expect(msg).toContain(`${c2.slice(0, 12)} stays in force`);
    const bad = st.errors?.[0];
    expect(bad?.file).toBe("vms/bad.yaml");
    // The line of the field: where "cpu:" is in the file the test wrote.
    expect(bad?.line).toBe(vmYaml("bad").split("\n").indexOf("    cpu: 1") + 1);
    // Nothing of the broken commit: b unchanged, c never created.
    expect(c.vm("b")?.spec.resources?.cpu).toBe(1);
    expect(c.vm("c")).toBeUndefined();
    const failed = c.store.listEvents().filter((e) => e.reason === "SyncFailed");
    expect(failed.at(-1)?.note).toContain(broken.slice(0, 12));
    expect(await metric(c.registry, "virtwarden_gitops_sync_failures_total")).toContain(
      'virtwarden_gitops_sync_failures_total{stage="validate"} 1',
    );
    // Fetched again and again: the broken tip is not counted again.
    const judged = c.results.length;
    await eventually(() => c.results.length >= judged + 3, "three more syncs");
    expect(await metric(c.registry, "virtwarden_gitops_sync_failures_total")).toContain(
      'virtwarden_gitops_sync_failures_total{stage="validate"} 1',
    );
    expect(await metric(c.registry, "virtwarden_gitops_sync_failing")).toContain(
      "virtwarden_gitops_sync_failing 1",
    );

    // fixed, and a deleted from the branch: pruned, its domain cleaned up
    const c4 = remote.commit("fix, drop a", { "vms/bad.yaml": null, "vms/a.yaml": null });
    await eventually(() => revisionOf(c) === c4, "fix in force");
    expect(c.vm("b")?.spec.resources?.cpu).toBe(3);
    await eventually(() => c.vm("c") !== undefined, "c created");
    await eventually(() => c.vm("a") === undefined, "a pruned");
    expect(c.domainsOf("a")).toEqual([]);
    expect(c.vm("b")).toBeDefined();
    expect(c.store.listEvents().some((e) => e.reason === "Synced" && e.note.includes(c4.slice(0, 12)))).toBe(
      true,
    );
    expect(await metric(c.registry, "virtwarden_gitops_revision_info")).toEqual([
      `virtwarden_gitops_revision_info{revision="${c4}",branch="main"} 1`,
    ]);
    expect(await metric(c.registry, "virtwarden_gitops_sync_failing")).toContain(
      "virtwarden_gitops_sync_failing 0",
    );
    // Prometheus' own linter on the GitOps series (names, types, units).
    const text = (await c.registry.metrics())
      .split("\n")
      .filter((l) => l.includes("virtwarden_gitops_"))
      .join("\n");
    const lint = spawnSync("promtool", ["check", "metrics"], { input: `${text}\n` });
    expect(`${lint.stdout}${lint.stderr}`).toBe("");
    expect(lint.status).toBe(0);
  }, 120_000);

  it("follows a force-push, and a burst of 50 commits converges on the last, never going back", async () => {
    const remote = new GitRemote(tmp());
    const base = remote.commit("base", { "hosts.yaml": host("h0"), "vms/keep.yaml": vmYaml("keep") });
    const x = remote.commit("x", { "vms/x.yaml": vmYaml("x") });
    const c = await controller(join(tmp(), "state"), remote.fileUrl, { intervalMs: 50 });
    await eventually(() => revisionOf(c) === x, "x in force");
    await eventually(() => c.vm("x") !== undefined, "x exists");

    remote.resetTo(base);
    const y = remote.commit("y instead of x", { "vms/y.yaml": vmYaml("y") }, { push: false });
    remote.push(true);
    await eventually(() => revisionOf(c) === y, "force-pushed y in force");
    await eventually(() => c.vm("x") === undefined, "x pruned after the force-push");
    expect(c.vm("y")).toBeDefined();

    // 50 commits made first, then the branch moved onto each in turn, all within 10 s.
    const order = new Map<string, number>();
    const shas: string[] = [];
    for (let i = 0; i < 50; i++) {
      const sha = remote.commit(
        `burst ${i}`,
        { "vms/keep.yaml": vmYaml("keep", 1, { burst: String(i) }) },
        { push: false },
      );
      order.set(sha, i);
      shas.push(sha);
    }
    remote.stage();
    const started = Date.now();
    for (const sha of shas) remote.moveBranch(sha);
    expect(Date.now() - started).toBeLessThan(10_000);
    const last = remote.head();
    await eventually(() => revisionOf(c) === last, "the last of the burst in force");
    expect(c.vm("keep")?.metadata.labels?.burst).toBe("49");
    // The revisions applied during the burst only ever moved forward.
    const applied = c.results
      .flatMap((r) => (r.result === "Synced" && r.change ? [order.get(r.revision)] : []))
      .filter((i) => i !== undefined);
    expect(applied.length).toBeGreaterThan(0);
    expect(applied).toEqual([...applied].sort((a, b) => (a as number) - (b as number)));
    expect(applied.at(-1)).toBe(49);
  }, 120_000);

  it("a restart starts from the revision in force: an unreachable remote prunes nothing", async () => {
    const remote = new GitRemote(tmp());
    const state = join(tmp(), "state");
    const c1 = remote.commit("one", { "hosts.yaml": host("h0"), "vms/a.yaml": vmYaml("a") });
    const first = await controller(state, remote.fileUrl);
    await eventually(() => revisionOf(first) === c1 && first.vm("a") !== undefined, "a applied");
    await first.stop();
    const second = await controller(state, "file:///nonexistent/remote.git", { intervalMs: 50 });
    expect(second.vm("a")).toBeDefined();
    await eventually(() => second.results.length >= 3, "three failed fetches");
    expect(second.results.every((r) => r.result === "SyncFailed" && r.stage === "fetch")).toBe(true);
    // Well past the settle window: a is still declared (by the revision in force).
    await new Promise((r) => setTimeout(r, SETTLE_MS * 3));
    expect(second.vm("a")).toBeDefined();
    expect(second.sync.syncStatus().revision).toBe(c1);
    expect(second.sync.syncStatus().lastAttempt?.message).toMatch(
      /cannot fetch main from file:\/\/\/nonexistent/,
    );
  }, 120_000);

  it("--path takes only that directory of the repository", async () => {
    const remote = new GitRemote(tmp());
    const c1 = remote.commit("two envs", {
      "clusters/prod/hosts.yaml": host("h0"),
      "clusters/prod/a.yaml": vmYaml("a"),
      "clusters/test/b.yaml": vmYaml("b"),
      "README.md": "not a manifest\n",
    });
    const c = await controller(join(tmp(), "state"), remote.fileUrl, { path: "clusters/prod" });
    await eventually(() => revisionOf(c) === c1, "in force");
    expect(c.vm("a")).toBeDefined();
    expect(c.vm("b")).toBeUndefined();
  }, 60_000);
});

describe("run --git over HTTP (git http-backend) with a token", () => {
  it("fetches with the token from its file; a refused token is a clear error that changes nothing and is never logged", async () => {
    const root = tmp();
    const remote = new GitRemote(root);
    let serverToken = "s3cret-token-1";
    const server = await serveHttpBackend(root, { token: () => serverToken });
    cleanups.push(() => server.close());
    const tokenFile = join(tmp(), "token");
    writeFileSync(tokenFile, `${serverToken}\n`);
    const c1 = remote.commit("one", { "hosts.yaml": host("h0"), "vms/a.yaml": vmYaml("a") });
    const c = await controller(join(tmp(), "state"), `${server.url}/remote.git`, {
      credentials: { tokenFile },
    });
    await eventually(() => revisionOf(c) === c1 && c.vm("a") !== undefined, "applied over http");
    expect(server.requests.authorized).toBeGreaterThan(0);

    // The server's token is rotated; ours is not: fetches fail, nothing changes.
    serverToken = "s3cret-token-2";
    const c2 = remote.commit("two", { "vms/b.yaml": vmYaml("b") });
    await eventually(() => c.sync.syncStatus().lastAttempt?.result === "SyncFailed", "fetch refused");
    const st = c.sync.syncStatus();
    // git words the refusal by when it came: "Authentication failed" on the ref listing, or
    // "HTTP 401" when the token was rotated between the listing and the pack request.
    expect(st.lastAttempt?.message).toMatch(
      /cannot fetch main from http:\/\/127\.0\.0\.1:\d+\/remote\.git: .*(Authentication failed|HTTP 401)/,
    );
    expect(st.lastAttempt?.message).toContain(`${c1.slice(0, 12)} stays in force`);
    expect(st.revision).toBe(c1);
    expect(c.vm("b")).toBeUndefined();

    // The token file is fixed: the next fetch applies c2.
    writeFileSync(tokenFile, serverToken);
    await eventually(() => revisionOf(c) === c2 && c.vm("b") !== undefined, "applied with the new token");
    const everything = [...c.logs, JSON.stringify(c.store.listEvents())].join("\n");
    expect(everything).not.toContain("s3cret-token");
  }, 120_000);

  it("without credentials the refusal names the remote and nothing is applied", async () => {
    const root = tmp();
    const remote = new GitRemote(root);
    const server = await serveHttpBackend(root, { token: () => "t" });
    cleanups.push(() => server.close());
    remote.commit("one", { "hosts.yaml": host("h0"), "vms/a.yaml": vmYaml("a") });
    const c = await controller(join(tmp(), "state"), `${server.url}/remote.git`);
    await eventually(() => c.results.length > 0, "a sync attempt");
    expect(c.results[0]).toMatchObject({ result: "SyncFailed", stage: "fetch" });
    expect(c.sync.syncStatus().lastAttempt?.message).toMatch(
      /cannot fetch main from http:.*nothing applied yet/,
    );
    expect(c.store.list("VirtualMachine")).toEqual([]);
  }, 60_000);
});

describe.skipIf(!sshdAvailable)("run --git over ssh:// (a real sshd on loopback)", () => {
  it("fetches with the key from its file against a pinned host key; a wrong host key or an unknown key applies nothing", async () => {
    const root = tmp();
    const remote = new GitRemote(root);
    const ssh = await serveSsh(join(tmp(), "ssh"));
    cleanups.push(() => ssh.close());
    const url = `${ssh.url}${remote.bare}`;
    const c1 = remote.commit("one", { "hosts.yaml": host("h0"), "vms/a.yaml": vmYaml("a") });

    // The right key, the right known_hosts: applied.
    const ok = await controller(join(tmp(), "state"), url, {
      credentials: { sshKeyFile: ssh.keyFile, knownHostsFile: ssh.knownHostsFile },
    });
    await eventually(() => revisionOf(ok) === c1 && ok.vm("a") !== undefined, "applied over ssh");
    const c2 = remote.commit("two", { "vms/b.yaml": vmYaml("b") });
    await eventually(() => revisionOf(ok) === c2 && ok.vm("b") !== undefined, "the next commit too");
    const key = readFileSync(ssh.keyFile, "utf8");
    const secret = key.split("\n")[1] ?? "";
    expect(secret.length).toBeGreaterThan(20);
    expect([...ok.logs, JSON.stringify(ok.store.listEvents())].join("\n")).not.toContain(secret);
    await ok.stop();

    // known_hosts names another key for this address: refused before any credential is offered.
    const mitm = await controller(join(tmp(), "state"), url, {
      credentials: { sshKeyFile: ssh.keyFile, knownHostsFile: ssh.wrongKnownHostsFile },
    });
    await eventually(() => mitm.results.length > 0, "a sync attempt");
    expect(mitm.results[0]).toMatchObject({ result: "SyncFailed", stage: "fetch" });
    expect(mitm.sync.syncStatus().lastAttempt?.message).toMatch(
      /cannot fetch main from ssh:.*Host key verification failed/s,
    );
    expect(mitm.store.list("VirtualMachine")).toEqual([]);
    await mitm.stop();

    // A key the server does not know: permission denied, nothing applied.
    const stranger = await controller(join(tmp(), "state"), url, {
      credentials: { sshKeyFile: ssh.strangerKeyFile, knownHostsFile: ssh.knownHostsFile },
    });
    await eventually(() => stranger.results.length > 0, "a sync attempt");
    expect(stranger.sync.syncStatus().lastAttempt?.message).toMatch(/Permission denied/);
    expect(stranger.store.list("VirtualMachine")).toEqual([]);
  }, 120_000);

  it("without known_hosts the first host key is pinned in the state dir, and a changed one is refused", async () => {
    const root = tmp();
    const remote = new GitRemote(root);
    const ssh = await serveSsh(join(tmp(), "ssh"));
    cleanups.push(() => ssh.close());
    const url = `${ssh.url}${remote.bare}`;
    const c1 = remote.commit("one", { "hosts.yaml": host("h0"), "vms/a.yaml": vmYaml("a") });
    const c = await controller(join(tmp(), "state"), url, { credentials: { sshKeyFile: ssh.keyFile } });
    await eventually(() => revisionOf(c) === c1, "applied, host key accepted the first time");

    // The server now shows another host key on the same address (a re-install, or someone in the
    // middle): the pinned key wins, fetches fail, the applied revision stays in force.
    await ssh.rotateHostKey();
    const c2 = remote.commit("two", { "vms/b.yaml": vmYaml("b") });
    // An attempt already under way when the key changed may still meet the old key and fail
    // otherwise (also SyncFailed, also nothing applied): wait for one refused for the new key.
    const hostKeyRefused = /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/;
    await eventually(() => {
      const last = c.sync.syncStatus().lastAttempt;
      return last?.result === "SyncFailed" && hostKeyRefused.test(last.message ?? "");
    }, "fetch refused for the changed host key");
    expect(revisionOf(c)).toBe(c1);
    expect(c.sync.syncStatus().lastAttempt?.message).toContain(`${c1.slice(0, 12)} stays in force`);
    expect(revisionOf(c)).toBe(c1);
    expect(c2).not.toBe(c1);
    expect(c.vm("b")).toBeUndefined();
    expect(c.vm("a")).toBeDefined();
  }, 120_000);
});
