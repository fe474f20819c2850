/**
 * Standalone mode end to end: the Runtime on a FileStore watching a real directory, hosts on the
 * simulator. What a user of `virtwarden run DIR` sees when editing files.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { Runtime } from "../../src/cli/runtime.js";
import { silentLogger } from "../../src/controller/log.js";
import { Simulator, simulatorFactory } from "../../src/providers/sim/index.js";
import { FileStore } from "../../src/store/files/index.js";
import { eventually } from "../support/eventually.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const host = (name: string) =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: Host\nmetadata: {name: ${name}}\nspec: {uri: "sim://${name}"}\n`;
const vm = (name: string, cpu = 1) =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: ${name}}\nspec:\n  resources: {cpu: ${cpu}, memory: 1Gi}\n`;

async function start(
  dir: string,
  state: string,
  sim: Simulator,
): Promise<{ store: FileStore; rt: Runtime; registry: Registry }> {
  const store = new FileStore({ manifestDir: dir, stateDir: state, viewIntervalMs: 50 });
  const registry = new Registry();
  const rt = new Runtime({
    store,
    providerFactory: simulatorFactory(sim),
    registry,
    logger: silentLogger,
    heartbeatIntervalMs: 100,
  });
  await rt.start();
  cleanups.push(() => rt.stop(100));
  return { store, rt, registry };
}

/** Reconciles the VM controller has finished, whatever their result. */
async function vmReconciles(registry: Registry): Promise<number> {
  const m = await registry.getSingleMetric("virtwarden_reconcile_total")?.get();
  return (m?.values ?? [])
    .filter((v) => v.labels.controller === "virtualmachine")
    .reduce((a, v) => a + v.value, 0);
}

/** Every domain as host/name -> what would change if it were restarted or replaced. */
const domainIdentity = (sim: Simulator) =>
  Object.fromEntries(
    sim
      .hosts()
      .flatMap((h) =>
        [...h.domains.values()].map((d) => [
          `${h.name}/${d.spec.name}`,
          `${d.uuid} ${d.state.state} since ${d.runningSince}`,
        ]),
      ),
  );

describe("standalone mode", () => {
  it("invalid manifests dropped into the directory are reported and leave running VMs alone", async () => {
    const root = mkdtempSync(join(tmpdir(), "vw-standalone-"));
    cleanups.push(async () => rmSync(root, { recursive: true, force: true }));
    const dir = join(root, "manifests");
    mkdirSync(dir);
    writeFileSync(join(dir, "hosts.yaml"), `${host("h1")}---\n${host("h2")}`);
    writeFileSync(join(dir, "vms.yaml"), `${vm("a")}---\n${vm("b")}`);
    const sim = new Simulator({ latency: "none", autoCreateHosts: true });
    const { store } = await start(dir, join(root, "state"), sim);
    const running = () => store.list("VirtualMachine").filter((v) => v.status?.phase === "Running").length;
    await eventually(() => running() === 2, "both VMs running");
    const before = sim
      .hosts()
      .map((h) => [...h.domains.keys()].sort().join(","))
      .join("|");

    // A broken edit of the VMs' own file, a garbage file, and a manifest with a schema error.
    writeFileSync(join(dir, "vms.yaml"), `${vm("a")}---\nkind: VirtualMachine\n  bad: [indent`);
    writeFileSync(join(dir, "junk.yaml"), "{{{{ not yaml");
    writeFileSync(join(dir, "c.yaml"), vm("c", 0));
    const files = () => new Set(store.errors().map((e) => e.file.slice(dir.length + 1)));
    await eventually(
      () => ["vms.yaml", "junk.yaml", "c.yaml"].every((f) => files().has(f)),
      "errors of all three files",
    );
    const errors = store.errors();
    expect(errors.map((e) => `${e.file.slice(dir.length + 1)}:${e.line}`)).toEqual(
      expect.arrayContaining(["c.yaml:5"]),
    );
    expect(errors.find((e) => e.file.endsWith("c.yaml"))?.path).toBe("spec.resources.cpu");
    await new Promise((r) => setTimeout(r, 300));
    expect(running()).toBe(2);
    expect(store.get("VirtualMachine", "default/b")).toBeDefined();
    expect(
      sim
        .hosts()
        .map((h) => [...h.domains.keys()].sort().join(","))
        .join("|"),
    ).toBe(before);
    for (const d of ["default_a", "default_b"]) expect(sim.runningCopies(d)).toHaveLength(1);

    // Fixing the file without b deletes b (finalizer: domain removed first).
    writeFileSync(join(dir, "vms.yaml"), vm("a"));
    await eventually(() => store.get("VirtualMachine", "default/b") === undefined, "b deleted");
    expect(sim.runningCopies("default_b")).toEqual([]);
  });

  it("survives a controller restart on the same state directory without touching running VMs", async () => {
    const root = mkdtempSync(join(tmpdir(), "vw-standalone-"));
    cleanups.push(async () => rmSync(root, { recursive: true, force: true }));
    const dir = join(root, "manifests");
    mkdirSync(dir);
    writeFileSync(join(dir, "all.yaml"), [host("h1"), host("h2"), vm("a"), vm("b"), vm("c")].join("---\n"));
    const sim = new Simulator({ latency: "none", autoCreateHosts: true });
    const first = await start(dir, join(root, "state"), sim);
    await eventually(
      () => first.store.list("VirtualMachine").every((v) => v.status?.phase === "Running"),
      "running",
    );
    const uids = first.store.list("VirtualMachine").map((v) => v.metadata.uid);
    const before = domainIdentity(sim);
    expect(Object.keys(before)).toHaveLength(3);
    await first.rt.stop(100);
    cleanups.pop();
    const second = await start(dir, join(root, "state"), sim);
    // The status on disk says Running already: wait until the new controller has itself looked
    // at every VM (three reconciles at least), then some more passes.
    let seen = 0;
    await eventually(() => {
      void vmReconciles(second.registry).then((n) => {
        seen = n;
      });
      return seen >= 3;
    }, "every VM reconciled by the second controller");
    await new Promise((r) => setTimeout(r, 500));
    expect(second.store.list("VirtualMachine").map((v) => v.metadata.uid)).toEqual(uids);
    expect(second.store.list("VirtualMachine").every((v) => v.status?.phase === "Running")).toBe(true);
    // Not stopped, restarted in place, redefined or moved: the same domains, started at the same time.
    expect(domainIdentity(sim)).toEqual(before);
  });
});
