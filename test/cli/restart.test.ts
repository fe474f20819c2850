/**
 * `virtwarden restart vm NAME` in standalone mode: the annotation is set in the manifest that
 * defines the VM (comments, layout and the other documents kept; nothing written when no manifest
 * or several define it), and end to end, the real commands as their own processes: a running
 * `virtwarden run DIR --simulate` restarts the VM once, the events in its state dir say so.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadPaths } from "../../src/api/loader.js";
import { annotateManifest, parseTarget } from "../../src/cli/restart.js";
import { eventuallyWith } from "../support/eventually.js";

const ROOT = join(import.meta.dirname, "..", "..");
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const MANIFEST = `# the web tier
apiVersion: virtwarden.io/v1alpha1
kind: Host
metadata: { name: h0 }
spec:
  uri: sim://h0
---
apiVersion: virtwarden.io/v1alpha1
kind: VirtualMachine
metadata:
  name: web # keep this comment
  namespace: default
spec:
  resources: { cpu: 1, memory: 256Mi }
---
apiVersion: virtwarden.io/v1alpha1
kind: VirtualMachine
metadata:
  name: web
  namespace: other
spec:
  resources: { cpu: 1, memory: 256Mi }
`;

describe("virtwarden restart vm: the manifest", () => {
  it("sets the annotation on the one document, keeping comments and the other documents", async () => {
    const dir = tempDir("vw-restart-");
    writeFileSync(join(dir, "fleet.yaml"), MANIFEST);
    const at = new Date("2026-06-01T12:00:00Z");
    const file = await annotateManifest([dir], parseTarget("default/web"), at);
    expect(file).toBe(join(dir, "fleet.yaml"));
    const text = readFileSync(file, "utf8");
    expect(text).toContain("# the web tier");
    expect(text).toContain("# keep this comment");
    expect(text.match(/virtwarden\.io\/restartedAt/g)).toHaveLength(1);
    const loaded = await loadPaths([dir]);
    expect(loaded.errors).toEqual([]);
    const vms = loaded.resources.map((r) => r.resource).filter((r) => r.kind === "VirtualMachine");
    const byNs = Object.fromEntries(vms.map((v) => [v.metadata.namespace, v.metadata.annotations]));
    expect(byNs.default).toEqual({ "virtwarden.io/restartedAt": "2026-06-01T12:00:00.000Z" });
    expect(byNs.other).toBeUndefined();
    // No temporary file left behind for the watcher.
    expect(readdirSync(dir)).toEqual(["fleet.yaml"]);
  });

  it("refuses, writing nothing, when no manifest or two define the VM", async () => {
    const dir = tempDir("vw-restart-");
    writeFileSync(join(dir, "a.yaml"), MANIFEST);
    await expect(annotateManifest([dir], parseTarget("db"), new Date())).rejects.toThrow(
      /no manifest under .* defines VirtualMachine default\/db/,
    );
    writeFileSync(join(dir, "b.yaml"), MANIFEST);
    await expect(annotateManifest([dir], parseTarget("web", "other"), new Date())).rejects.toThrow(
      /VirtualMachine other\/web is defined in .*a\.yaml and .*b\.yaml/,
    );
    expect(readFileSync(join(dir, "a.yaml"), "utf8")).toBe(MANIFEST);
    expect(readFileSync(join(dir, "b.yaml"), "utf8")).toBe(MANIFEST);
  });

  it("names NAME or NAMESPACE/NAME, nothing else", () => {
    expect(parseTarget("web")).toEqual({ namespace: "default", name: "web" });
    expect(parseTarget("web", "prod")).toEqual({ namespace: "prod", name: "web" });
    expect(parseTarget("prod/web")).toEqual({ namespace: "prod", name: "web" });
    expect(() => parseTarget("a/b/c")).toThrow(/not NAME or NAMESPACE\/NAME/);
  });
});

const cli = (...args: string[]) =>
  execFileSync(process.execPath, ["--import", "tsx", join(ROOT, "src/cli/main.ts"), ...args], {
    cwd: ROOT,
    encoding: "utf8",
  });

const eventually = eventuallyWith({ timeoutMs: 60_000, everyMs: 200 });

describe("virtwarden restart vm, end to end (standalone, simulated hosts)", () => {
  it("the running controller restarts the VM once", async () => {
    const base = tempDir("vw-restart-e2e-");
    const dir = join(base, "manifests");
    const state = join(base, "state");
    mkdirSync(dir);
    writeFileSync(join(dir, "fleet.yaml"), MANIFEST.split("---\n").slice(0, 2).join("---\n"));
    const p: ChildProcess = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        join(ROOT, "src/cli/main.ts"),
        "run",
        dir,
        "--simulate",
        "--state-dir",
        state,
        "--metrics-addr",
        "127.0.0.1:0",
      ],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    let log = "";
    p.stdout?.on("data", (b: Buffer) => {
      log += b.toString();
    });
    p.stderr?.on("data", (b: Buffer) => {
      log += b.toString();
    });
    cleanups.push(() => p.kill("SIGKILL"));
    const events = () => {
      try {
        return cli("events", "--for", "vm/default/web", "--state-dir", state);
      } catch {
        return "";
      }
    };
    const phase = () => {
      try {
        return cli("get", "vm", "--state-dir", state);
      } catch {
        return "";
      }
    };
    await eventually(() => /default\s+web\s+Running/.test(phase()), `web Running\n${log}`);
    expect(events()).not.toMatch(/Restarted/);
    const out = cli("restart", "vm", "web", "--dir", dir);
    expect(out).toMatch(/virtualmachine default\/web: virtwarden\.io\/restartedAt=\S+ \(in .*fleet\.yaml\)/);
    await eventually(() => /Restarted.*restarted as asked/.test(events()), `the restart event\n${log}`);
    // Once: a later reconcile, with the annotation still in the manifest, does not restart it
    // again. That reconcile is seen by what it says about a memory change that needs a restart.
    const file = join(dir, "fleet.yaml");
    const edited = readFileSync(file, "utf8").replace("memory: 256Mi", "memory: 512Mi");
    expect(edited).toMatch(/restartedAt/);
    writeFileSync(join(dir, ".fleet.yaml.tmp"), edited);
    renameSync(join(dir, ".fleet.yaml.tmp"), file);
    await eventually(
      () => /RestartRequired.*spec\.resources\.memory/.test(events()),
      `RestartRequired\n${log}`,
    );
    const restarts = events()
      .split("\n")
      .filter((l) => /\bRestarted\b/.test(l));
    expect(restarts).toHaveLength(1);
    expect(restarts[0]).not.toMatch(/\sx\d+\s/);
  }, 120_000);
});
