/**
 * A VirtualMachineClass applied through a real kube-apiserver (the CRDs from crds/, applied with
 * kubectl) is honoured: the product's Runtime on a KubeStore, hosts on the simulator. What the
 * simulator defined is the truth checked, not the status virtwarden writes.
 */
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Runtime } from "../../../src/cli/runtime.js";
import { Simulator } from "../../../src/providers/sim/index.js";
import { KubeStore } from "../../../src/store/kube/index.js";
import { eventuallyWith } from "../../support/eventually.js";
import { type KubeApiServer, startKubeApiServer } from "../../support/kube/apiserver.js";
import { simRuntime } from "../../support/sim-runtime.js";

const ROOT = join(import.meta.dirname, "..", "..", "..");
const GiB = 1024 ** 3;
const eventually = eventuallyWith({ timeoutMs: 30_000, everyMs: 50 });
let kube: KubeApiServer;
let store: KubeStore;
let rt: Runtime | undefined;
const sim = new Simulator({ seed: 3, latency: "none" });

beforeAll(async () => {
  kube = await startKubeApiServer();
  kube.kubectl(["apply", "-k", join(ROOT, "crds")]);
  kube.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
  const kc = new KubeConfig();
  kc.loadFromFile(kube.kubeconfig);
  store = new KubeStore({ kubeConfig: kc, namespace: "default", silentWatchMs: 1500 });
}, 900_000);

afterAll(async () => {
  await rt?.stop(100);
  await store?.stop();
  await kube?.stop();
});

const classYaml = (cpu: number, memory: string) =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachineClass\nmetadata: {name: compute}\nspec: {cpu: ${cpu}, memory: ${memory}, maxCpu: 8, maxMemory: 8Gi}\n`;

describe("VirtualMachineClass through the API server", () => {
  it("a VM naming a class applied with kubectl gets its size; a class change reaches it", async () => {
    sim.addHost("k1", { cpus: 32, memoryBytes: 64 * GiB });
    kube.kubectl(["apply", "-f", "-"], {
      input: `apiVersion: virtwarden.io/v1alpha1\nkind: Host\nmetadata: {name: k1}\nspec: {uri: "sim://k1"}\n`,
    });
    kube.kubectl(["apply", "-f", "-"], { input: classYaml(3, "2Gi") });
    kube.kubectl(["apply", "-f", "-"], {
      input: `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: app, namespace: default}\nspec: {instanceType: compute}\n`,
    });
    // kubectl explain reads the CRD's descriptions.
    expect(kube.kubectl(["explain", "virtualmachineclass.spec.cpu"]).stdout).toMatch(/Virtual CPUs/);
    rt = await simRuntime(sim, store, { inventoryIntervalMs: 500 });
    const dom = () => sim.hosts()[0]?.domains.get("default_app");
    await eventually(() => sim.runningCopies("default_app").length === 1, "running");
    expect(dom()?.spec).toMatchObject({ vcpus: 3, memoryBytes: 2 * GiB, maxVcpus: 8 });
    kube.kubectl(["apply", "-f", "-"], { input: classYaml(5, "4Gi") });
    await eventually(() => dom()?.spec.vcpus === 5 && dom()?.spec.memoryBytes === 4 * GiB, "resized live");
    expect(dom()?.starts).toBe(1);
    // A malformed class is refused by the API server with the field named.
    let refused = "";
    try {
      kube.kubectl(["apply", "-f", "-"], { input: classYaml(0, "lots") });
    } catch (e) {
      refused = String((e as { stderr?: string }).stderr ?? e);
    }
    expect(refused).toMatch(/spec\.cpu/);
    expect(refused).toMatch(/spec\.memory/);
  }, 120_000);
});
