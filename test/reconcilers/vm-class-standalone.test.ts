/**
 * VirtualMachineClass in standalone mode: the Runtime on a FileStore watching a real directory,
 * hosts on the simulator. Editing a class's file resizes its VMs; a malformed edit is reported
 * with file, line and field and changes nothing. Sizes are read from the simulator's domains.
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

const GiB = 1024 ** 3;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const host = `apiVersion: virtwarden.io/v1alpha1\nkind: Host\nmetadata: {name: h1}\nspec: {uri: "sim://h1"}\n`;
const vmOf = (name: string) =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: ${name}}\nspec: {instanceType: elastic}\n`;
const cls = (cpu: string, memory: string) =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachineClass\nmetadata:\n  name: elastic\nspec:\n  cpu: ${cpu}\n  memory: ${memory}\n  maxCpu: 4\n  maxMemory: 4Gi\n`;

describe("standalone mode: VirtualMachineClass files", () => {
  it("an edited class resizes both its VMs live; a malformed edit is reported and changes nothing", async () => {
    const root = mkdtempSync(join(tmpdir(), "vw-vmclass-"));
    cleanups.push(async () => rmSync(root, { recursive: true, force: true }));
    const dir = join(root, "manifests");
    mkdirSync(dir);
    writeFileSync(join(dir, "hosts.yaml"), host);
    writeFileSync(join(dir, "classes.yaml"), cls("1", "1Gi"));
    writeFileSync(join(dir, "vms.yaml"), `${vmOf("a")}---\n${vmOf("b")}`);
    const sim = new Simulator({ latency: "none", autoCreateHosts: true });
    const store = new FileStore({ manifestDir: dir, stateDir: join(root, "state"), viewIntervalMs: 50 });
    const rt = new Runtime({
      store,
      providerFactory: simulatorFactory(sim),
      registry: new Registry(),
      logger: silentLogger,
      heartbeatIntervalMs: 100,
    });
    await rt.start();
    cleanups.push(() => rt.stop(100));
    const dom = (n: string) => sim.hosts()[0]?.domains.get(`default_${n}`);
    await eventually(
      () => sim.runningCopies("default_a").length + sim.runningCopies("default_b").length === 2,
      "running",
    );
    for (const n of ["a", "b"])
      expect(dom(n)?.spec).toMatchObject({ vcpus: 1, memoryBytes: GiB, maxVcpus: 4 });

    writeFileSync(join(dir, "classes.yaml"), cls("2", "3Gi"));
    await eventually(
      () => ["a", "b"].every((n) => dom(n)?.spec.vcpus === 2 && dom(n)?.spec.memoryBytes === 3 * GiB),
      "both resized",
    );
    for (const n of ["a", "b"]) expect(dom(n)?.starts).toBe(1);

    writeFileSync(join(dir, "classes.yaml"), cls("2", "plenty"));
    await eventually(() => store.errors().some((e) => e.file.endsWith("classes.yaml")), "error reported");
    const e = store.errors().find((x) => x.file.endsWith("classes.yaml"));
    expect(e).toMatchObject({ line: 7, path: "spec.memory", document: 1 });
    await new Promise((r) => setTimeout(r, 300));
    // The file store keeps the last good class, so its VMs do not fall to ClassNotFound either.
    expect(store.get("VirtualMachineClass", "elastic")?.spec.memory).toBe("3Gi");
    for (const n of ["a", "b"])
      expect(
        store.get("VirtualMachine", `default/${n}`)?.status?.conditions?.find((c) => c.type === "Ready")
          ?.reason,
      ).not.toBe("ClassNotFound");
    for (const n of ["a", "b"]) {
      expect(dom(n)?.spec).toMatchObject({ vcpus: 2, memoryBytes: 3 * GiB });
      expect(sim.runningCopies(`default_${n}`)).toHaveLength(1);
    }
  });
});
