/**
 * `promtool check metrics` on what `virtwarden run` really serves: the CLI started as its own
 * process (`run --simulate examples/`, the embedded default of `npm start`), default process and
 * Node.js metrics included, /metrics fetched over loopback once the fleet is running, piped to
 * Prometheus' own linter. No error and no warning is accepted. promtool comes from Debian's
 * prometheus package (scripts/install-test-deps.sh); missing, it fails the test, never skips it.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..", "..");
const tmp = mkdtempSync(join(tmpdir(), "vw-live-metrics-"));
let proc: ChildProcess | undefined;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => (typeof a === "object" && a ? resolve(a.port) : reject(new Error("no port"))));
    });
  });
}

afterAll(async () => {
  if (proc && proc.exitCode === null) {
    const exited = new Promise((r) => proc?.once("exit", r));
    proc.kill("SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    if (proc.exitCode === null) proc.kill("SIGKILL");
  }
  rmSync(tmp, { recursive: true, force: true });
}, 30_000);

describe("the live /metrics of virtwarden run", () => {
  it("passes promtool check metrics with no error and no warning", async () => {
    const port = await freePort();
    proc = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        join(ROOT, "src/cli/main.ts"),
        "run",
        "--simulate",
        join(ROOT, "examples"),
        "--state-dir",
        join(tmp, "state"),
        "--metrics-addr",
        `127.0.0.1:${port}`,
        "--log-format",
        "json",
        "--log-level",
        "warn",
      ],
      { stdio: ["ignore", "pipe", "pipe"], cwd: ROOT },
    );
    let log = "";
    proc.stdout?.on("data", (b: Buffer) => {
      log += b.toString();
    });
    proc.stderr?.on("data", (b: Buffer) => {
      log += b.toString();
    });
    // Scraped once the fleet is up: the VMs run (availability has a value) and the leader acts.
    let text = "";
    const deadline = Date.now() + 90_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`virtwarden run exited ${proc.exitCode}:\n${log}`);
      const res = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
      text = res?.ok ? await res.text() : "";
      if (/^virtwarden_leader 1$/m.test(text) && /^virtwarden_vms\{phase="Running"\} [1-9]/m.test(text))
        break;
      if (Date.now() > deadline) throw new Error(`fleet not running within 90 s:\n${text}\n${log}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    // The registry served is the full one: default metrics under their conventional names.
    for (const name of [
      "process_cpu_seconds_total",
      "process_resident_memory_bytes",
      "nodejs_eventloop_lag_seconds",
      "nodejs_heap_size_used_bytes",
      "virtwarden_reconcile_total",
      "virtwarden_availability_ratio",
    ])
      expect(text, name).toMatch(new RegExp(`^${name}(\\{| )`, "m"));
    expect(text).not.toMatch(/virtwarden_process_/);

    const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    if (r.error)
      throw new Error(`promtool not runnable (scripts/install-test-deps.sh installs it): ${r.error.message}`);
    const out = `${r.stdout}${r.stderr}`;
    if (process.env.VW_SHOW_PROMTOOL) console.log(`promtool exit ${r.status}: ${JSON.stringify(out)}`);
    expect(out).toBe("");
    expect(r.status).toBe(0);
  }, 120_000);
});
