/**
 * `virtwarden diff` as a user runs it: the real command in a child process, against the state
 * dir of a real `virtwarden run --simulate` (stopped, and running with the lock held), against a
 * bare Git repository on disk, and against a real kube-apiserver on which a real
 * `virtwarden run --kubernetes` acted. The state dir's bytes are compared before and after every
 * diff: diff reads, it never writes, and never takes the lock.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventuallyWith } from "../support/eventually.js";
import { GitRemote } from "../support/git-remote.js";
import { type KubeApiServer, startKubeApiServer } from "../support/kube/apiserver.js";

const ROOT = join(import.meta.dirname, "..", "..");
const MAIN = join(ROOT, "src/cli/main.ts");

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** The CLI as its own process (async: a `run` child's pipes keep flowing meanwhile). */
function cli(...args: string[]): Promise<Result> {
  return cliWithInput(undefined, ...args);
}

function cliWithInput(input: string | undefined, ...args: string[]): Promise<Result> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ["--import", "tsx", MAIN, ...args], {
      cwd: ROOT,
      stdio: [input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
    });
    if (input !== undefined) p.stdin?.end(input);
    let stdout = "";
    let stderr = "";
    p.stdout?.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    p.stderr?.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    p.once("error", reject);
    p.once("close", (status) => resolve({ status, stdout, stderr }));
  });
}

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

const eventually = eventuallyWith({ timeoutMs: 60_000, everyMs: 200 });

/** Every file under a directory: its path, size and content hash (what "unchanged" means). */
function fingerprint(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[p.slice(dir.length)] = createHash("sha256").update(readFileSync(p)).digest("hex");
    }
  };
  walk(dir);
  return out;
}

const HOST = `apiVersion: virtwarden.io/v1alpha1
kind: Host
metadata: { name: h1 }
spec: { uri: "sim://h1" }
`;
const vm = (name: string, memory: string, extra = "") => `apiVersion: virtwarden.io/v1alpha1
kind: VirtualMachine
metadata: { name: ${name}, namespace: default${extra} }
spec:
  resources: { cpu: 1, memory: ${memory} }
`;

const procs: ChildProcess[] = [];
const dirs: string[] = [];
afterAll(() => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

/** `virtwarden run --simulate` on a directory; resolves once it has started (the lock is held). */
async function startRun(
  manifests: string,
  state: string,
): Promise<{ proc: ChildProcess; log: () => string }> {
  const proc = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      MAIN,
      "run",
      manifests,
      "--simulate",
      "--state-dir",
      state,
      "--metrics-addr",
      `127.0.0.1:${await freePort()}`,
      "--log-format",
      "json",
    ],
    { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  procs.push(proc);
  let log = "";
  proc.stdout?.on("data", (b: Buffer) => {
    log += b.toString();
  });
  proc.stderr?.on("data", (b: Buffer) => {
    log += b.toString();
  });
  return { proc, log: () => log };
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  await exited;
}

describe("virtwarden diff (standalone)", () => {
  let live: string; // the manifests the controller applied
  let state: string;

  beforeAll(async () => {
    const root = tempDir("vw-diff-");
    live = join(root, "live");
    state = join(root, "state");
    cpSync(
      tempManifests({ "hosts.yaml": HOST, "web.yaml": vm("web", "512Mi"), "db.yaml": vm("db", "1Gi") }),
      live,
      {
        recursive: true,
      },
    );
    const run = await startRun(live, state);
    await eventually(
      async () => {
        const r = await cli("get", "vm", "--state-dir", state);
        return /web\s+Running/.test(r.stdout) && /db\s+Running/.test(r.stdout);
      },
      `both VMs Running (log: ${run.log().slice(-1500)})`,
    );
    await stop(run.proc);
  }, 120_000);

  /** A copy of the applied manifests with these files written (string) or removed (null). */
  function edited(files: Record<string, string | null>): string {
    const d = tempDir("vw-diff-m-");
    cpSync(live, d, { recursive: true });
    for (const [f, text] of Object.entries(files)) {
      if (text === null) rmSync(join(d, f));
      else writeFileSync(join(d, f), text);
    }
    return d;
  }

  function tempManifests(files: Record<string, string>): string {
    const d = tempDir("vw-diff-src-");
    for (const [f, text] of Object.entries(files)) writeFileSync(join(d, f), text);
    return d;
  }

  async function diff(...args: string[]): Promise<Result> {
    const before = fingerprint(state);
    const r = await cli("diff", ...args, "--state-dir", state);
    expect(fingerprint(state)).toEqual(before);
    return r;
  }

  it("no change: exit 0, no output", async () => {
    const r = await diff(live);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("");
    expect(r.status).toBe(0);
  });

  it("a spec edit: exit 1 and a hunk naming the field, status never shown", async () => {
    const r = await diff(edited({ "web.yaml": vm("web", "2Gi") }));
    expect(r.status).toBe(1);
    expect(r.stdout).toContain(
      "diff -u -N live/VirtualMachine/default/web manifests/VirtualMachine/default/web\n" +
        "--- live/VirtualMachine/default/web\n+++ manifests/VirtualMachine/default/web\n@@ ",
    );
    expect(r.stdout).toMatch(/^- {4}memory: 512Mi$/m);
    expect(r.stdout).toMatch(/^\+ {4}memory: 2Gi$/m);
    expect(r.stdout).not.toMatch(/status|phase|Running|uid|generation/);
    expect(r.stdout).not.toContain("default/db"); // unchanged: not shown
    const names = await diff(edited({ "web.yaml": vm("web", "2Gi") }), "-o", "name");
    expect(names.stdout).toBe("VirtualMachine default/web changed\n");
    expect(names.status).toBe(1);
  });

  it("a label added is a change of the metadata; reordered keys are none", async () => {
    const r = await diff(edited({ "web.yaml": vm("web", "512Mi", ", labels: { tier: front }") }));
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^\+ {2}labels:\n\+ {4}tier: front$/m);
    const reordered = `apiVersion: virtwarden.io/v1alpha1
kind: VirtualMachine
spec:
  resources: { memory: 512Mi, cpu: 1 }
metadata: { namespace: default, name: web }
`;
    const same = await diff(edited({ "web.yaml": reordered }));
    expect(same.stdout).toBe("");
    expect(same.status).toBe(0);
  });

  it("a new file: created, with the whole defaulted resource", async () => {
    const r = await diff(edited({ "cache.yaml": vm("cache", "256Mi") }));
    expect(r.status).toBe(1);
    expect(r.stdout).toContain(
      "diff -u -N live/VirtualMachine/default/cache manifests/VirtualMachine/default/cache",
    );
    expect(r.stdout).toMatch(/^@@ -0,0 \+1,\d+ @@$/m);
    expect(r.stdout).toMatch(/^\+ {2}runStrategy: Always$/m); // the schema's default, as run applies it
    const names = await diff(edited({ "cache.yaml": vm("cache", "256Mi") }), "-o", "name");
    expect(names.stdout).toBe("VirtualMachine default/cache created\n");
  });

  it("a removed resource: deleted, naming the --delete-settle rule", async () => {
    const r = await diff(edited({ "db.yaml": null }), "-o", "name");
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("VirtualMachine default/db deleted\n");
    expect(r.stderr).toContain("--delete-settle");
    const full = await diff(edited({ "db.yaml": null }));
    expect(full.stdout).toMatch(/^- {4}memory: 1Gi$/m);
    expect(full.stdout).not.toMatch(/^\+[^+]/m); // only removed lines
  });

  it("a broken manifest: exit 2 with file:line:col and field, nothing compared, state unchanged", async () => {
    const dir = edited({ "web.yaml": vm("web", "512Mx") });
    const r = await diff(dir);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(`${join(dir, "web.yaml")}:5:`);
    expect(r.stderr).toMatch(/web\.yaml:5:\d+: document 1 VirtualMachine\/web: spec\.resources\.memory: /);
    // The same error as validate gives.
    const v = await cli("validate", dir);
    const firstLine = v.stderr.split("\n")[0] as string;
    expect(r.stderr.split("\n")[0]).toBe(firstLine);
  });

  it("- reads the manifests from stdin; directories with --git are refused (2)", async () => {
    const before = fingerprint(state);
    const text = [HOST, vm("web", "512Mi"), vm("db", "3Gi")].join("---\n");
    const r = await cliWithInput(text, "diff", "-", "-o", "name", "--state-dir", state);
    expect(r.stdout).toBe("VirtualMachine default/db changed\n");
    expect(r.status).toBe(1);
    expect(fingerprint(state)).toEqual(before);
    const both = await cli("diff", live, "--git", "file:///nowhere", "--state-dir", state);
    expect(both.status).toBe(2);
    expect(both.stderr).toContain("not both");
  });

  it("a missing state dir is an error (2), not everything created", async () => {
    const r = await cli("diff", live, "--state-dir", join(tmpdir(), "vw-no-such-state-dir"));
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("no controller state in");
  });

  it("while a `run --simulate` holds the state dir's lock: reads, takes no lock, writes nothing", async () => {
    const run = await startRun(live, state);
    try {
      await eventually(() => existsSync(join(state, "lock")), "the controller holds the lock");
      await eventually(() => run.log().includes("controllers started"), "the controller started", 60_000);
      // Held still (SIGSTOP): it keeps the lock, and nothing it does can change the bytes, so any
      // difference after the diff would be the diff's own.
      run.proc.kill("SIGSTOP");
      const lock = readFileSync(join(state, "lock"), "utf8");
      const r = await diff(edited({ "web.yaml": vm("web", "2Gi") }), "-o", "name");
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe("VirtualMachine default/web changed\n");
      expect(r.status).toBe(1);
      expect(readFileSync(join(state, "lock"), "utf8")).toBe(lock);
      run.proc.kill("SIGCONT");
      // The controller was not disturbed: it still holds its lock and answers.
      const again = await cli("diff", live, "--state-dir", state);
      expect(again.status).toBe(0);
      expect(statSync(join(state, "lock")).isFile()).toBe(true);
    } finally {
      run.proc.kill("SIGCONT");
      await stop(run.proc);
    }
  }, 90_000);

  it("--git: the branch tip of a bare repository on disk, fetched outside the state dir", async () => {
    const remote = new GitRemote(join(tempDir("vw-diff-git-"), "repo"));
    const files = Object.fromEntries(
      readdirSync(live).map((f) => [`fleet/${f}`, readFileSync(join(live, f), "utf8")]),
    );
    remote.commit("the fleet as applied", { ...files, "README.md": "not a manifest\n" });
    const same = await diff("--git", remote.fileUrl, "--path", "fleet");
    expect(same.stderr).toBe("");
    expect(same.stdout).toBe("");
    expect(same.status).toBe(0);
    remote.commit("more memory for web", { "fleet/web.yaml": vm("web", "4Gi") });
    const changed = await diff("--git", remote.fileUrl, "--path", "fleet");
    expect(changed.status).toBe(1);
    expect(changed.stdout).toMatch(/^\+ {4}memory: 4Gi$/m);
    remote.commit("a typo", { "fleet/web.yaml": vm("web", "4Gx") });
    const broken = await diff("--git", remote.fileUrl, "--path", "fleet");
    expect(broken.status).toBe(2);
    expect(broken.stderr).toMatch(
      /^fleet\/web\.yaml:5:\d+: document 1 VirtualMachine\/web: spec\.resources\.memory: /m,
    );
    const leftovers = () => readdirSync(tmpdir()).filter((n) => n.startsWith("virtwarden-diff-"));
    expect(leftovers()).toEqual([]); // each diff removed its temporary checkout
    const other = await diff("--git", remote.fileUrl, "--branch", "nope");
    expect(other.status).toBe(2);
    expect(other.stderr).toContain("cannot fetch nope");
  }, 60_000);
});

describe("virtwarden diff --kubernetes (a real kube-apiserver)", () => {
  let kube: KubeApiServer;
  let manifests: string;
  let run: ChildProcess | undefined;

  const getVM = () => {
    const r = kube.kubectl(["get", "vm", "web", "-n", "default", "-o", "json"], { allowFail: true });
    return r.status === 0
      ? (JSON.parse(r.stdout) as { spec: { resources: { memory: string } }; status?: { phase?: string } })
      : undefined;
  };

  beforeAll(async () => {
    kube = await startKubeApiServer();
    kube.kubectl(["apply", "-k", join(ROOT, "crds")]);
    kube.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
    kube.kubectl(["apply", "-f", join(ROOT, "manifests", "namespace.yaml")]);
    manifests = tempDir("vw-diff-kube-");
    writeFileSync(join(manifests, "hosts.yaml"), HOST);
    writeFileSync(join(manifests, "web.yaml"), vm("web", "64Mi"));
    kube.kubectl(["apply", "-f", manifests]);
    run = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        MAIN,
        "run",
        "--kubernetes",
        "--kubeconfig",
        kube.kubeconfig,
        "--no-leader-elect",
        "--namespace",
        "virtwarden-system",
        "--metrics-addr",
        `127.0.0.1:${await freePort()}`,
        "--log-format",
        "json",
      ],
      { cwd: ROOT, stdio: ["ignore", "ignore", "ignore"] },
    );
    procs.push(run);
    await eventually(() => getVM()?.status?.phase === "Running", "the controller ran the VM", 120_000);
  }, 900_000);

  afterAll(async () => {
    if (run) await stop(run);
    await kube?.stop();
  }, 120_000);

  const edited = (memory: string, more: Record<string, string> = {}) => {
    const d = tempDir("vw-diff-kube-m-");
    cpSync(manifests, d, { recursive: true });
    writeFileSync(join(d, "web.yaml"), vm("web", memory));
    for (const [f, t] of Object.entries(more)) writeFileSync(join(d, f), t);
    return d;
  };

  it("no change after the controller acted on what was applied: exit 0, no output", async () => {
    const r = await cli("diff", "--kubernetes", "--kubeconfig", kube.kubeconfig, manifests);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("");
    expect(r.status).toBe(0);
  }, 60_000);

  it("a changed memory: exit 1 with the hunk, never status or server metadata; nothing written", async () => {
    const r = await cli("diff", "--kubernetes", "--kubeconfig", kube.kubeconfig, edited("128Mi"));
    expect(r.status).toBe(1);
    expect(r.stdout).toContain(
      "diff -u -N live/VirtualMachine/default/web manifests/VirtualMachine/default/web\n",
    );
    expect(r.stdout).toMatch(/^- {4}memory: 64Mi$/m);
    expect(r.stdout).toMatch(/^\+ {4}memory: 128Mi$/m);
    expect(r.stdout).not.toMatch(
      /status:|phase|managedFields|resourceVersion|generation|uid:|creationTimestamp/,
    );
    expect(getVM()?.spec.resources.memory).toBe("64Mi"); // a dry run
    const names = await cli(
      "diff",
      "--kubernetes",
      "--kubeconfig",
      kube.kubeconfig,
      "-o",
      "name",
      edited("128Mi", { "db.yaml": vm("db", "64Mi") }),
    );
    expect(names.stdout).toBe("VirtualMachine default/db created\nVirtualMachine default/web changed\n");
    expect(names.status).toBe(1);
    expect(kube.kubectl(["get", "vm", "db", "-n", "default"], { allowFail: true }).status).not.toBe(0);
  }, 60_000);

  it("what the API server refuses is an error (2) naming the file and the server's reason", async () => {
    const bad = `apiVersion: virtwarden.io/v1alpha1
kind: VirtualMachine
metadata: { name: web, namespace: nowhere }
spec:
  resources: { cpu: 1, memory: 64Mi }
`;
    const d = tempDir("vw-diff-kube-bad-");
    writeFileSync(join(d, "web.yaml"), bad);
    const r = await cli("diff", "--kubernetes", "--kubeconfig", kube.kubeconfig, d);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`${join(d, "web.yaml")}:1:1: document 1 VirtualMachine/web`);
    expect(r.stderr).toMatch(/namespaces? "nowhere" not found/);
  }, 60_000);
});
