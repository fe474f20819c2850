/**
 * KubeStore behind a network partition (test/chaos/kube/proxy.ts: requests neither answered nor
 * refused), against a real kube-apiserver: a status write fails within its request timeout
 * instead of hanging its reconcile for good; changes made while the store was cut off (a
 * creation, a spec edit, a deletion) reach its handlers once the network heals, each exactly once;
 * writes work again.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VirtualMachine } from "../../src/api/types.js";
import { KubeStore } from "../../src/store/kube/index.js";
import type { WatchEvent } from "../../src/store/types.js";
import { eventuallyWith } from "../support/eventually.js";
import { type KubeApiServer, startKubeApiServer } from "../support/kube/apiserver.js";
import { PartitionProxy } from "./kube/proxy.js";

const ROOT = join(import.meta.dirname, "..", "..");
let kube: KubeApiServer;
let proxy: PartitionProxy;
let store: KubeStore;

const vmYaml = (name: string, cpu = 1) =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: ${name}, namespace: default}\nspec: {resources: {cpu: ${cpu}, memory: 1Gi}}\n`;

const eventually = eventuallyWith({ timeoutMs: 60_000, everyMs: 50 });

beforeAll(async () => {
  kube = await startKubeApiServer();
  kube.kubectl(["apply", "-k", join(ROOT, "crds")]);
  kube.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
  const text = readFileSync(kube.kubeconfig, "utf8");
  const m = /server: https:\/\/([\d.]+):(\d+)/.exec(text);
  if (!m) throw new Error("no server in the kubeconfig");
  proxy = new PartitionProxy(m[1] as string, Number(m[2]));
  const port = await proxy.start();
  const viaProxy = `${kube.kubeconfig}.store-proxy`;
  writeFileSync(viaProxy, text.replace(m[0], `server: https://${m[1]}:${port}`));
  const kc = new KubeConfig();
  kc.loadFromFile(viaProxy);
  store = new KubeStore({
    kubeConfig: kc,
    namespace: "default",
    requestTimeoutMs: 2000,
    silentWatchMs: 4000,
  });
  kube.kubectl(["apply", "-f", "-"], { input: `${vmYaml("p0")}---\n${vmYaml("p1")}` });
  await store.start();
}, 900_000);

afterAll(async () => {
  await store?.stop();
  await proxy?.stop();
  await kube?.stop();
});

describe("KubeStore behind a network partition", () => {
  it("fails a write in bounded time, and delivers what changed meanwhile once, after the heal", async () => {
    const seen: string[] = [];
    store.watch("VirtualMachine", (e: WatchEvent<"VirtualMachine">) =>
      seen.push(`${e.type}:${e.object.metadata.name}:${e.object.metadata.generation}`),
    );
    const p1 = store.get("VirtualMachine", "default/p1") as VirtualMachine;
    expect(p1).toBeDefined();
    proxy.partition();
    // A write behind the partition: it must fail, not hang (guarded by a generous bound).
    const hung = Symbol("hung");
    const outcome = await Promise.race([
      store.updateStatus(p1, { phase: "Pending" }).then(
        () => "written",
        (e: unknown) => (e instanceof Error ? e.name || "error" : "error"),
      ),
      new Promise<symbol>((r) => setTimeout(() => r(hung), 30_000)),
    ]);
    expect(outcome, "a status write behind a partition fails rather than hang").not.toBe(hung);
    expect(outcome).not.toBe("written");
    // Meanwhile, straight to the API server: a creation, a spec edit and a deletion.
    kube.kubectl(["apply", "-f", "-"], { input: `${vmYaml("p2")}---\n${vmYaml("p1", 2)}` });
    kube.kubectl(["delete", "vm", "p0"]);
    const before = seen.length;
    proxy.heal();
    await eventually(
      () =>
        seen.includes("added:p2:1") &&
        seen.includes("modified:p1:2") &&
        seen.some((s) => s.startsWith("deleted:p0")),
      "the changes made during the partition reach the handlers",
    );
    const after = seen.slice(before);
    expect(after.filter((s) => s === "added:p2:1")).toHaveLength(1);
    expect(after.filter((s) => s.startsWith("deleted:p0"))).toHaveLength(1);
    expect(after.filter((s) => s.startsWith("added:p1"))).toHaveLength(0);
    // And writes go through again.
    const fresh = store.get("VirtualMachine", "default/p1") as VirtualMachine;
    const out = await store.updateStatus(fresh, { phase: "Pending" });
    expect(out.status?.phase).toBe("Pending");
  }, 180_000);
});
