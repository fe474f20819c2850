/**
 * How many connections the controller's Kubernetes clients open, counted by a TCP relay on
 * loopback between them and a real kube-apiserver (the relay counts accepted sockets; nothing of
 * the code under test is asked). client-node makes a new agent per request; without a shared
 * keep-alive agent every request was a new TCP connection and TLS handshake.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KubeStore } from "../../../src/store/kube/index.js";
import { identified } from "../../../src/store/kube/request.js";
import { type KubeApiServer, startKubeApiServer } from "../../support/kube/apiserver.js";

const ROOT = join(import.meta.dirname, "..", "..", "..");
let kube: KubeApiServer;
let relay: Server;
let accepted = 0;
const sockets = new Set<Socket>();
let relayed: string;

beforeAll(async () => {
  kube = await startKubeApiServer();
  kube.kubectl(["apply", "-k", join(ROOT, "crds")]);
  kube.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
  const text = readFileSync(kube.kubeconfig, "utf8");
  const server = /server: (https:\/\/127\.0\.0\.1:(\d+))/.exec(text);
  if (!server) throw new Error(`no loopback server in ${kube.kubeconfig}`);
  const target = Number(server[2]);
  relay = createServer((client) => {
    accepted++;
    const up = createConnection({ host: "127.0.0.1", port: target });
    sockets.add(client).add(up);
    client.pipe(up).pipe(client);
    client.on("error", () => up.destroy());
    up.on("error", () => client.destroy());
  });
  await new Promise<void>((r) => relay.listen(0, "127.0.0.1", r));
  const port = (relay.address() as { port: number }).port;
  relayed = join(kube.kubeconfig, "..", "kubeconfig-relayed");
  writeFileSync(relayed, text.replace(server[1] ?? "", `https://127.0.0.1:${port}`));
}, 900_000);

afterAll(async () => {
  // The shared agent keeps its idle connections open: close them, or close() waits for them.
  for (const s of sockets) s.destroy();
  await new Promise<void>((r) => (relay ? relay.close(() => r()) : r()));
  await kube?.stop();
});

const load = () => {
  const kc = new KubeConfig();
  kc.loadFromFile(relayed);
  return kc;
};

describe("connections to the API server", () => {
  it("forty requests in a row, from two clients of one config, reuse one or two connections", async () => {
    const kc = load();
    const a = identified(kc).makeApiClient(CustomObjectsApi);
    const b = identified(load()).makeApiClient(CustomObjectsApi);
    const before = accepted;
    for (let i = 0; i < 20; i++) {
      for (const api of [a, b]) {
        const out = (await api.listNamespacedCustomObject({
          group: "virtwarden.io",
          version: "v1alpha1",
          namespace: "default",
          plural: "virtualmachines",
        })) as { items: unknown[] };
        expect(out.items).toEqual([]);
      }
    }
    const opened = accepted - before;
    console.log(`40 sequential requests opened ${opened} connection(s)`);
    expect(opened).toBeGreaterThan(0);
    expect(opened).toBeLessThanOrEqual(2);
  }, 120_000);

  it("the store's writes, reads and watches share connections too", async () => {
    const before = accepted;
    const store = new KubeStore({ kubeConfig: load(), namespace: "default", silentWatchMs: 1500 });
    await store.start();
    try {
      for (let i = 0; i < 10; i++) {
        await store.create({
          apiVersion: "virtwarden.io/v1alpha1",
          kind: "VirtualMachine",
          metadata: { name: `conn-${i}`, namespace: "default" },
          spec: { resources: { cpu: 1, memory: "1Gi" } },
        } as never);
      }
    } finally {
      await store.stop();
    }
    const opened = accepted - before;
    console.log(`store start, 10 applies and stop opened ${opened} connection(s)`);
    // One per concurrent watch (one per kind) and a few for concurrent calls; before the shared
    // agent every one of the ~30 requests opened its own.
    expect(opened).toBeLessThan(15);
  }, 120_000);
});
