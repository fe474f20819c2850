/**
 * `virtwarden whatif host-down`: against a standalone controller's state directory (a real
 * FileStore written by the Runtime on the simulator), through the CLI binary.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, describe, expect, it } from "vitest";
import { Runtime } from "../../src/cli/runtime.js";
import { whatIfHostDown } from "../../src/cli/whatif.js";
import { replayHostDown } from "../../src/cli/whatif-replay.js";
import { silentLogger } from "../../src/controller/log.js";
import { Simulator, simulatorFactory } from "../../src/providers/sim/index.js";
import { FileStore } from "../../src/store/files/index.js";

const ROOT = join(import.meta.dirname, "..", "..");
const cli = (args: string[]) =>
  spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "src/cli/main.ts"), ...args], {
    cwd: ROOT,
    encoding: "utf8",
  });

const root = mkdtempSync(join(tmpdir(), "vw-whatif-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const host = (name: string) =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: Host\nmetadata: {name: ${name}}\nspec: {uri: "sim://${name}"}\n`;
const vm = (name: string, memory: string, extra = "") =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: ${name}}\nspec:\n  resources: {cpu: 1, memory: ${memory}}\n  placement: {strategy: pack}\n${extra}`;

describe("virtwarden whatif host-down", () => {
  it("prints where the VMs of a failed host would go and which would stay down", async () => {
    const dir = join(root, "manifests");
    const state = join(root, "state");
    mkdirSync(dir);
    // Two 8 GiB hosts; pack fills h1 first: 3 x 2 GiB + the 1 GiB "keep" on h1, 3 GiB on h2.
    writeFileSync(
      join(dir, "all.yaml"),
      [
        host("h1"),
        vm("a", "2Gi", "  availability: {priority: 300}\n"),
        vm("b", "2Gi", "  availability: {priority: 200}\n"),
        vm("c", "2Gi", "  availability: {priority: 100}\n"),
        vm("keep", "1Gi", "  availability: {onHostFailure: Nothing}\n"),
      ].join("---\n"),
    );
    const sim = new Simulator({
      latency: "none",
      autoCreateHosts: true,
      defaultHost: { cpus: 8, memoryBytes: 8 * 1024 ** 3 },
    });
    const store = new FileStore({ manifestDir: dir, stateDir: state, viewIntervalMs: 20 });
    const rt = new Runtime({
      store,
      providerFactory: simulatorFactory(sim),
      registry: new Registry(),
      logger: silentLogger,
      heartbeatIntervalMs: 100,
    });
    await rt.start();
    const running = () => store.list("VirtualMachine").filter((v) => v.status?.phase === "Running").length;
    for (let i = 0; i < 500 && running() < 4; i++) await new Promise((r) => setTimeout(r, 10));
    writeFileSync(join(dir, "h2.yaml"), `${host("h2")}---\n${vm("d", "3Gi")}`);
    for (let i = 0; i < 500 && running() < 5; i++) await new Promise((r) => setTimeout(r, 10));
    expect(running()).toBe(5);
    await rt.stop(100);

    const plan = whatIfHostDown([...store.list("Host"), ...store.list("VirtualMachine")], ["h1"]);
    // h2 has 8 GiB - 3 GiB = 5 GiB free: a and b (highest priority) fit, c does not.
    expect(plan.moved.map((m) => `${m.key}->${m.to}`)).toEqual(["default/a->h2", "default/b->h2"]);
    expect(plan.stranded.map((s) => s.key)).toEqual(["default/c"]);
    expect(plan.leftDown.map((l) => l.key)).toEqual(["default/keep"]);

    const r = cli(["whatif", "host-down", "h1", "--state-dir", state, "--plan"]);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/default\/a\s+h1\s+-> h2/);
    expect(r.stdout).toMatch(/default\/c\s+h1\s+stays down\s+100\s+0\/2 hosts fit/);
    expect(r.stdout).toContain(
      "if h1 failed: 2/4 VMs would run again elsewhere, 1 would wait for capacity, 1 left down by policy",
    );

    const json = cli(["whatif", "host-down", "h1", "--state-dir", state, "--plan", "-o", "json"]);
    expect(JSON.parse(json.stdout).moved).toHaveLength(2);

    // Replayed by the controllers on the simulator (the default): h1 has no fence agent, so
    // nothing of it may start elsewhere, which the placement plan alone cannot tell.
    const replay = cli(["whatif", "host-down", "h1", "--state-dir", state]);
    expect(replay.stderr).toBe("");
    expect(replay.status).toBe(0);
    expect(replay.stdout).toMatch(/default\/a\s+h1\s+stays down\s+host h1 is Unreachable/);
    expect(replay.stdout).toContain(
      "0/4 VMs would run again elsewhere, 0 would wait for capacity, 4 would stay down",
    );

    // With a fence agent on h1: the priority order and capacity decide, and the policy of "keep".
    const resources = [...store.list("Host"), ...store.list("VirtualMachine")].map((r) =>
      r.kind === "Host" && r.metadata.name === "h1"
        ? { ...r, spec: { ...r.spec, fencing: { agent: "ipmi" as const, address: "10.0.0.1" } } }
        : r,
    );
    const fenced = await replayHostDown(resources, ["h1"]);
    const by = (k: string) => fenced.outcomes.filter((o) => o.outcome === k).map((o) => o.vm);
    expect(by("moved")).toEqual(["default/a", "default/b"]);
    expect(fenced.outcomes.filter((o) => o.outcome === "moved").map((o) => o.to)).toEqual(["h2", "h2"]);
    expect(by("waiting")).toEqual(["default/c"]);
    expect(by("down")).toEqual(["default/keep"]);
    expect(fenced.hosts).toEqual([expect.objectContaining({ name: "h1", phase: "Fenced" })]);

    const bad = cli(["whatif", "host-down", "nope", "--state-dir", state]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain("no such Host: nope");
  }, 60_000);
});
