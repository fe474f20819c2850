/**
 * KubeStore and the Lease elector against a real kube-apiserver (test/support/kube).
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VirtualMachine } from "../../../src/api/types.js";
import { KubeStore, LeaseLeaderElector } from "../../../src/store/kube/index.js";
import { MAX_EVENT_SERIES } from "../../../src/store/kube/store.js";
import type { WatchEvent } from "../../../src/store/types.js";
import { eventuallyWith } from "../../support/eventually.js";
import { type KubeApiServer, startKubeApiServer } from "../../support/kube/apiserver.js";

const ROOT = join(import.meta.dirname, "..", "..", "..");
let kube: KubeApiServer;
let kc: KubeConfig;
let store: KubeStore;

const eventually = eventuallyWith({ timeoutMs: 20_000, everyMs: 25 });

const vmYaml = (name: string, cpu = 1) =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: ${name}, namespace: default}\nspec: {resources: {cpu: ${cpu}, memory: 1Gi}}\n`;

beforeAll(async () => {
  kube = await startKubeApiServer();
  kube.kubectl(["apply", "-k", join(ROOT, "crds")]);
  kube.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
  kc = new KubeConfig();
  kc.loadFromFile(kube.kubeconfig);
  store = new KubeStore({ kubeConfig: kc, namespace: "default", silentWatchMs: 1500 });
  await store.start();
}, 900_000);

afterAll(async () => {
  await store?.stop();
  await kube?.stop();
});

describe("KubeStore", () => {
  it("syncs, and sees objects created, modified and deleted with kubectl", async () => {
    expect(store.hasSynced()).toBe(true);
    const seen: string[] = [];
    const unwatch = store.watch("VirtualMachine", (e: WatchEvent<"VirtualMachine">) =>
      seen.push(`${e.type}:${e.object.metadata.name}:${e.object.metadata.generation}`),
    );
    kube.kubectl(["apply", "-f", "-"], { input: vmYaml("a") });
    await eventually(() => seen.includes("added:a:1"), "added");
    kube.kubectl(["apply", "-f", "-"], { input: vmYaml("a", 2) });
    await eventually(() => seen.includes("modified:a:2"), "modified");
    expect(store.get("VirtualMachine", "default/a")?.spec.runStrategy).toBe("Always");
    kube.kubectl(["delete", "vm", "a"]);
    await eventually(() => seen.some((s) => s.startsWith("deleted:a")), "deleted");
    unwatch();
  });

  it("writes status through the subresource only when it changed, and survives a conflict", async () => {
    kube.kubectl(["apply", "-f", "-"], { input: vmYaml("s") });
    const vm = await eventually(() => store.get("VirtualMachine", "default/s"), "cached");
    const first = await store.updateStatus(vm, { phase: "Running", host: "h1" });
    expect(first.status).toEqual({ phase: "Running", host: "h1" });
    await eventually(
      () => store.get("VirtualMachine", "default/s")?.status?.phase === "Running",
      "status cached",
    );
    const again = await store.updateStatus(store.get("VirtualMachine", "default/s") as VirtualMachine, {
      phase: "Running",
      host: "h1",
    });
    expect(again.metadata.resourceVersion).toBe(first.metadata.resourceVersion);
    // Someone edits the spec meanwhile: our copy is stale, the write must still land.
    kube.kubectl(["apply", "-f", "-"], { input: vmYaml("s", 4) });
    const written = await store.updateStatus(vm, { phase: "Running", host: "h2" });
    expect(written.status?.host).toBe("h2");
    expect(written.spec.resources?.cpu).toBe(4);
    // The spec is the user's: a status write never changes it.
    const viaKubectl = JSON.parse(kube.kubectl(["get", "vm", "s", "-o", "json"]).stdout) as VirtualMachine;
    expect(viaKubectl.spec.resources?.cpu).toBe(4);
    expect(viaKubectl.status?.host).toBe("h2");
  });

  it("sends no request for a status equal to the stored one in another key order", async () => {
    // The API server's own count of status PUTs is the oracle: a PUT of an unchanged object does
    // not change its resourceVersion, so comparing versions cannot see a needless request.
    const statusPuts = () => {
      const text = kube.kubectl(["get", "--raw", "/metrics"]).stdout;
      let n = 0;
      for (const line of text.split("\n")) {
        if (!line.startsWith("apiserver_request_total{")) continue;
        if (
          /resource="virtualmachines"/.test(line) &&
          /subresource="status"/.test(line) &&
          /verb="PUT"/.test(line)
        )
          n += Number(line.slice(line.lastIndexOf(" ") + 1));
      }
      return n;
    };
    kube.kubectl(["apply", "-f", "-"], { input: vmYaml("order") });
    const vm = await eventually(() => store.get("VirtualMachine", "default/order"), "cached");
    const status = {
      phase: "Running" as const,
      host: "h1",
      conditions: [
        {
          type: "Ready",
          status: "True" as const,
          reason: "Running",
          message: "running on h1",
          lastTransitionTime: "2026-12-03T07:00:00Z",
          observedGeneration: 1,
        },
      ],
      lastFailure: undefined,
    };
    await store.updateStatus(vm, status);
    await eventually(
      () => store.get("VirtualMachine", "default/order")?.status?.host === "h1",
      "status cached",
    );
    // Read back from the API server, the keys come sorted: not the order written above.
    const cached = store.get("VirtualMachine", "default/order") as VirtualMachine;
    expect(Object.keys(cached.status ?? {})).toEqual(["conditions", "host", "phase"]);
    // The API server's field bookkeeping is not cached (kilobytes per object), and a write from
    // the lean copy keeps it: the controller's status fields are still recorded as its own.
    type Fields = { metadata: { managedFields?: { manager: string; subresource?: string }[] } };
    expect((cached as unknown as Fields).metadata.managedFields).toBeUndefined();
    expect(
      store
        .list("VirtualMachine")
        .every((v) => (v as unknown as Fields).metadata.managedFields === undefined),
    ).toBe(true);
    const fields = () =>
      JSON.parse(
        kube.kubectl(["get", "vm", "order", "-o", "json", "--show-managed-fields"]).stdout,
      ) as Fields;
    const stored = fields();
    expect(stored.metadata.managedFields?.some((f) => f.subresource === "status")).toBe(true);
    const before = statusPuts();
    for (let i = 0; i < 20; i++) await store.updateStatus(cached, structuredClone(status));
    expect(statusPuts() - before).toBe(0);
    // A real change is still written, once.
    await store.updateStatus(cached, { ...structuredClone(status), host: "h2" });
    expect(statusPuts() - before).toBe(1);
    const after = fields();
    expect(after.metadata.managedFields?.length).toBe(stored.metadata.managedFields?.length);
    expect(after.metadata.managedFields?.some((f) => f.manager === "kubectl-client-side-apply")).toBe(true);
  });

  it("spaces its requests by its rate limit, and a request's timeout starts when it is sent", async () => {
    // qps 2, burst 1, a 1 s timeout: four creates at once; the fourth waits 1.5 s for its token,
    // longer than the timeout, and must still be made (the wait is not the API server's).
    const slow = new KubeStore({
      kubeConfig: kc,
      namespace: "default",
      silentWatchMs: 60_000,
      requestTimeoutMs: 1_000,
      rateLimit: { qps: 2, burst: 1 },
    });
    // Not started: the writes alone, no informer lists sharing the bucket.
    const names = ["rl-0", "rl-1", "rl-2", "rl-3"];
    await Promise.all(
      names.map((name) =>
        slow.create({
          apiVersion: "virtwarden.io/v1alpha1",
          kind: "VirtualMachine",
          metadata: { name, namespace: "default" },
          spec: { resources: { cpu: 1, memory: "1Gi" } },
        } as VirtualMachine),
      ),
    );
    expect(slow.bucket.waited).toBe(3);
    expect(slow.bucket.waitedMs).toBeGreaterThanOrEqual(500 + 1_000 + 1_500 - 50);
    const listed = kube.kubectl(["get", "vm", "-o", "name"]).stdout;
    for (const n of names) expect(listed).toContain(`virtualmachine.virtwarden.io/${n}`);
    await slow.stop();
    // Gone again, for the tests after this one that count what the shared store sees.
    kube.kubectl(["delete", "vm", ...names, "--wait"]);
    await eventually(() => names.every((n) => !store.get("VirtualMachine", `default/${n}`)), "rl-* gone");
  });

  it("merges a status computed from a stale read onto the newer one, losing neither", async () => {
    kube.kubectl(["apply", "-f", "-"], { input: vmYaml("m") });
    const stale = await eventually(() => store.get("VirtualMachine", "default/m"), "cached");
    // One reconcile records a recovery it carried out...
    await store.updateStatus(stale, {
      phase: "Running",
      host: "h2",
      lastRecovery: {
        reason: "HostFailure",
        fromHost: "h1",
        failedAt: "2026-11-25T10:00:00Z",
        result: "Succeeded",
      },
    });
    // ...another, working from the older read, only sets its specHash.
    const merged = await store.updateStatus(stale, { phase: "Running", host: "h2", specHash: "abc" });
    expect(merged.status).toMatchObject({
      host: "h2",
      specHash: "abc",
      lastRecovery: { reason: "HostFailure", result: "Succeeded" },
    });
    const viaKubectl = JSON.parse(kube.kubectl(["get", "vm", "m", "-o", "json"]).stdout) as VirtualMachine;
    expect(viaKubectl.status?.lastRecovery?.result).toBe("Succeeded");
    expect(viaKubectl.status?.specHash).toBe("abc");
  });

  it("holds deletion with a finalizer until it is removed", async () => {
    kube.kubectl(["apply", "-f", "-"], { input: vmYaml("f") });
    const vm = await eventually(() => store.get("VirtualMachine", "default/f"), "cached");
    await store.addFinalizer(vm, "virtwarden.io/cleanup");
    await store.addFinalizer(vm, "virtwarden.io/cleanup");
    await eventually(
      () => store.get("VirtualMachine", "default/f")?.metadata.finalizers?.length === 1,
      "one finalizer",
    );
    kube.kubectl(["delete", "vm", "f", "--wait=false"]);
    const deleting = await eventually(() => {
      const v = store.get("VirtualMachine", "default/f");
      return v?.metadata.deletionTimestamp ? v : undefined;
    }, "deletionTimestamp");
    await store.removeFinalizer(deleting, "virtwarden.io/cleanup");
    await eventually(() => store.get("VirtualMachine", "default/f") === undefined, "gone");
  });

  it("records events.k8s.io events, aggregated into a series", async () => {
    const regarding = { kind: "VirtualMachine" as const, namespace: "default", name: "s" };
    store.recordEvent({
      regarding,
      type: "Warning",
      reason: "DriftCorrected",
      action: "Correct",
      note: "state: destroyed behind our back",
    });
    await new Promise((r) => setTimeout(r, 500));
    store.recordEvent({
      regarding,
      type: "Warning",
      reason: "DriftCorrected",
      action: "Correct",
      note: "state: destroyed behind our back",
    });
    await eventually(() => {
      const list = JSON.parse(
        kube.kubectl(["get", "events.events.k8s.io", "-n", "default", "-o", "json"]).stdout,
      ) as {
        items: { reason: string; note: string; series?: { count: number }; regarding: { name: string } }[];
      };
      const e = list.items.find((i) => i.reason === "DriftCorrected" && i.regarding.name === "s");
      return e?.series?.count === 2 && e.note === "state: destroyed behind our back";
    }, "aggregated event");
  });

  it("starts a series again when the API server dropped its event (event TTL), and remembers a bounded number", async () => {
    const regarding = { kind: "VirtualMachine" as const, namespace: "default", name: "ttl" };
    const ev = {
      regarding,
      type: "Warning" as const,
      reason: "Crashed",
      action: "Observe",
      note: "the guest crashed on h1",
    };
    type EventList = {
      items: {
        metadata: { name: string };
        reason: string;
        series?: { count: number };
        regarding: { name: string };
      }[];
    };
    const ours = () =>
      (
        JSON.parse(
          kube.kubectl(["get", "events.events.k8s.io", "-n", "default", "-o", "json"]).stdout,
        ) as EventList
      ).items.filter((i) => i.reason === "Crashed" && i.regarding.name === "ttl");
    // The store remembers a series once the API server answered the create, which can be after
    // kubectl already lists the event: both are waited for.
    const remembered = (st: KubeStore, name: string, count = 1) =>
      st.listEvents().some((e) => e.regarding.name === name && e.count === count);
    store.recordEvent(ev);
    await eventually(() => ours().length === 1 && remembered(store, "ttl"), "first event");
    // What the API server's --event-ttl does an hour later.
    kube.kubectl(["delete", "events.events.k8s.io", "-n", "default", ours()[0]?.metadata.name ?? ""]);
    await eventually(() => ours().length === 0, "event expired");
    store.recordEvent(ev);
    await eventually(
      () => ours().length === 1 && remembered(store, "ttl"),
      "the repeat recorded as a new event (a series of 1), not a failed patch",
    );
    expect(store.listEvents(regarding)).toHaveLength(1);

    // Bounded: with room for 2 series, a third forgets the oldest; its repeat is a new event.
    expect(MAX_EVENT_SERIES).toBe(4096);
    const small = new KubeStore({ kubeConfig: kc, namespace: "default", maxEventSeries: 2 });
    const of = (name: string) => ({ ...ev, regarding: { ...regarding, name } });
    const named = (name: string) =>
      (
        JSON.parse(
          kube.kubectl(["get", "events.events.k8s.io", "-n", "default", "-o", "json"]).stdout,
        ) as EventList
      ).items.filter((i) => i.reason === "Crashed" && i.regarding.name === name);
    for (const n of ["lru-a", "lru-b", "lru-c"]) {
      small.recordEvent(of(n));
      await eventually(() => named(n).length === 1 && remembered(small, n), `event of ${n}`);
    }
    expect(small.listEvents().map((e) => e.regarding.name)).toEqual(["lru-b", "lru-c"]);
    small.recordEvent(of("lru-c"));
    await eventually(
      () => named("lru-c")[0]?.series?.count === 2 && remembered(small, "lru-c", 2),
      "lru-c still aggregated",
    );
    small.recordEvent(of("lru-a"));
    await eventually(() => named("lru-a").length === 2, "lru-a forgotten: a new event");
    await small.stop();
  });

  it("reads credentials from a Secret", async () => {
    kube.kubectl([
      "create",
      "secret",
      "generic",
      "bmc",
      "-n",
      "default",
      "--from-literal=username=admin",
      "--from-literal=password=s3cret",
    ]);
    expect(await store.readSecret({ name: "bmc", namespace: "default" })).toEqual({
      username: "admin",
      password: "s3cret",
    });
  });

  it("translates a relist into what changed while the watch was down", async () => {
    for (const n of ["r1", "r2"]) kube.kubectl(["apply", "-f", "-"], { input: vmYaml(n) });
    await eventually(() => store.get("VirtualMachine", "default/r2"), "both cached");
    const seen: string[] = [];
    const unwatch = store.watch("VirtualMachine", (e) => {
      if (e.object.metadata.name.startsWith("r")) seen.push(`${e.type}:${e.object.metadata.name}`);
    });
    expect(seen.sort()).toEqual(["added:r1", "added:r2"]); // the replay of what is cached
    seen.length = 0;
    // The watch goes down (its cache stays); meanwhile one VM changes, one goes, one comes.
    const internals = store as unknown as {
      informers: Map<string, object>;
      retire(i: object): Promise<void>;
    };
    await internals.retire(internals.informers.get("VirtualMachine") as object);
    kube.kubectl(["apply", "-f", "-"], { input: vmYaml("r1", 3) });
    kube.kubectl(["delete", "vm", "r2"]);
    kube.kubectl(["apply", "-f", "-"], { input: vmYaml("r3") });
    // Our relist, or the silent-watch timer's if it comes first (kubectl can be slow): either
    // way each change arrives once, with its right type, and nothing is "added" twice.
    await store.relist("VirtualMachine");
    await eventually(() => seen.length >= 3, "the three changes");
    expect(seen.sort()).toEqual(["added:r3", "deleted:r2", "modified:r1"]);
    expect(store.get("VirtualMachine", "default/r1")?.spec.resources?.cpu).toBe(3);
    expect(store.get("VirtualMachine", "default/r2")).toBeUndefined();
    // An unchanged relist tells handlers nothing.
    seen.length = 0;
    await store.relist("VirtualMachine");
    expect(seen).toEqual([]);
    unwatch();
  });

  it("relists a kind whose watch stays silent", async () => {
    const before = store.restarts.get("Host") ?? 0;
    await eventually(
      () => (store.restarts.get("Host") ?? 0) > before,
      "relist of the silent Host watch",
      10_000,
    );
    kube.kubectl(["apply", "-f", "-"], {
      input:
        "apiVersion: virtwarden.io/v1alpha1\nkind: Host\nmetadata: {name: h9}\nspec: {uri: 'sim://h9'}\n",
    });
    await eventually(() => store.get("Host", "h9"), "host seen after relists");
  });
});

describe("Lease leader election", () => {
  it("lets one of two candidates lead, and hands over when the leader dies", async () => {
    const start = (id: string) => {
      const p = spawn(
        process.execPath,
        ["--import", "tsx", join(import.meta.dirname, "lease-child.ts"), kube.kubeconfig, id],
        { stdio: ["ignore", "pipe", "inherit"] },
      );
      let out = "";
      p.stdout.on("data", (b: Buffer) => {
        out += b.toString();
      });
      return { p, out: () => out };
    };
    const a = start("a");
    await eventually(() => a.out().includes("leading a"), "a leads", 30_000);
    const b = start("b");
    try {
      await new Promise((r) => setTimeout(r, 3000));
      expect(b.out()).not.toContain("leading");
      const t0 = Date.now();
      a.p.kill("SIGKILL");
      // The handover is what is tested; how long it takes (the lease duration plus a retry, about
      // 15 s) is a figure, not an assertion: a loaded machine stretches it.
      await eventually(() => b.out().includes("leading b"), "b takes over", 60_000);
      console.log(`standby took over ${Date.now() - t0} ms after the leader was killed`);
    } finally {
      a.p.kill("SIGKILL");
      b.p.kill("SIGTERM");
    }
  }, 120_000);

  it("keeps a single leader when both race for a free lease", async () => {
    const mk = (id: string) =>
      new LeaseLeaderElector({ kubeConfig: kc, namespace: "default", name: "vw-race", identity: id });
    const results = await Promise.all([
      mk("x").tryAcquireOrRenew(),
      mk("y").tryAcquireOrRenew(),
      mk("z").tryAcquireOrRenew(),
    ]);
    expect(results.filter(Boolean)).toHaveLength(1);
  });
});
