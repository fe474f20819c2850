import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { Controller } from "../../src/controller/controller.js";
import { createControllerMetrics } from "../../src/controller/metrics.js";
import {
  type ErrorPolicy,
  type ReconcileResult,
  type Reconciler,
  TerminalError,
} from "../../src/controller/outcome.js";
import { ExponentialBackoffLimiter } from "../../src/controller/rate-limiter.js";
import { eventuallyWith } from "../support/eventually.js";

const fast = () => new ExponentialBackoffLimiter({ baseMs: 1, maxMs: 20, factor: 2, jitter: 0 });

class ScriptedReconciler implements Reconciler {
  readonly name = "test";
  calls: string[] = [];
  concurrent = 0;
  maxConcurrentPerKey = new Map<string, number>();
  private active = new Map<string, number>();
  constructor(
    private readonly script: (
      key: string,
      n: number,
      signal: AbortSignal,
    ) => Promise<ReconcileResult | undefined>,
  ) {}
  async reconcile(key: string, signal: AbortSignal): Promise<ReconcileResult | undefined> {
    const n = this.calls.filter((k) => k === key).length;
    this.calls.push(key);
    const a = (this.active.get(key) ?? 0) + 1;
    this.active.set(key, a);
    this.maxConcurrentPerKey.set(key, Math.max(this.maxConcurrentPerKey.get(key) ?? 0, a));
    try {
      return await this.script(key, n, signal);
    } finally {
      this.active.set(key, (this.active.get(key) ?? 1) - 1);
    }
  }
}

const eventually = eventuallyWith({ timeoutMs: 2_500, everyMs: 5 });

let controllers: Controller[] = [];
afterEach(async () => {
  await Promise.all(controllers.map((c) => c.stop({ graceMs: 100 })));
  controllers = [];
});

function make(r: Reconciler, registry = new Registry(), workers = 4, errorPolicy?: ErrorPolicy): Controller {
  const c = new Controller({
    reconciler: r,
    ...(errorPolicy ? { errorPolicy } : {}),
    workers,
    rateLimiter: fast(),
    metrics: createControllerMetrics(registry),
  });
  controllers.push(c);
  return c;
}

async function counter(registry: Registry, result: string): Promise<number> {
  const m = await registry.getSingleMetric("virtwarden_reconcile_total")?.get();
  return m?.values.find((v) => v.labels.result === result)?.value ?? 0;
}

describe("Controller", () => {
  it("retries errors with backoff until success, counting each result", async () => {
    const registry = new Registry();
    const r = new ScriptedReconciler(async (_k, n) => {
      if (n < 3) throw new Error("host busy");
      return undefined;
    });
    const c = make(r, registry);
    c.start();
    c.enqueue("a");
    await eventually(() => r.calls.length === 4, "4 attempts");
    await c.idle();
    expect(await counter(registry, "error")).toBe(3);
    expect(await counter(registry, "success")).toBe(1);
    expect(c.queue.numRequeues("a")).toBe(0);
    const retries = await registry.getSingleMetric("virtwarden_workqueue_retries_total")?.get();
    expect(retries?.values[0]?.value).toBe(3);
  });

  it("does not retry a TerminalError", async () => {
    const registry = new Registry();
    const r = new ScriptedReconciler(async () => {
      throw new TerminalError("bad spec");
    });
    const c = make(r, registry);
    c.start();
    c.enqueue("a");
    await eventually(() => r.calls.length === 1, "one attempt");
    await new Promise((res) => setTimeout(res, 60));
    expect(r.calls).toEqual(["a"]);
    expect(await counter(registry, "terminal")).toBe(1);
  });

  it("retries what the error policy calls a conflict, counted as a requeue rather than an error", async () => {
    const registry = new Registry();
    class Stale extends Error {}
    const r = new ScriptedReconciler(async (_k, n) => {
      if (n < 2) throw new Stale("object changed since it was read");
      if (n < 3) throw new Error("host busy");
      return undefined;
    });
    const c = make(r, registry, 4, (e) => (e instanceof Stale ? "conflict" : "retry"));
    c.start();
    c.enqueue("a");
    await eventually(() => r.calls.length === 4, "4 attempts");
    await c.idle();
    expect(await counter(registry, "requeue")).toBe(2);
    expect(await counter(registry, "error")).toBe(1);
    expect(await counter(registry, "success")).toBe(1);
    const retries = await registry.getSingleMetric("virtwarden_workqueue_retries_total")?.get();
    expect(retries?.values[0]?.value).toBe(3);
  });

  it("without an error policy, every error is a failure (the controller knows no store error)", async () => {
    const registry = new Registry();
    const conflict = Object.assign(new Error("conflict"), { name: "ConflictError", code: "Conflict" });
    const r = new ScriptedReconciler(async (_k, n) => {
      if (n < 1) throw conflict;
      return undefined;
    });
    const c = make(r, registry);
    c.start();
    c.enqueue("a");
    await eventually(() => r.calls.length === 2, "2 attempts");
    await c.idle();
    expect(await counter(registry, "error")).toBe(1);
    expect(await counter(registry, "requeue")).toBe(0);
  });

  it("honours requeueAfter", async () => {
    const r = new ScriptedReconciler(async (_k, n) => (n < 2 ? { requeueAfterMs: 5 } : undefined));
    const c = make(r);
    c.start();
    c.enqueue("a");
    await eventually(() => r.calls.length === 3, "three passes");
    expect(r.calls).toEqual(["a", "a", "a"]);
  });

  it("never reconciles one key concurrently, and merges adds made while it runs", async () => {
    let release!: () => void;
    const gate = new Promise<void>((res) => {
      release = res;
    });
    const r = new ScriptedReconciler(async (_k, n) => {
      if (n === 0) await gate;
      return undefined;
    });
    const c = make(r, new Registry(), 8);
    c.start();
    c.enqueue("a");
    await eventually(() => r.calls.length === 1, "first pass");
    for (let i = 0; i < 10; i++) c.enqueue("a");
    release();
    await eventually(() => r.calls.length === 2, "one merged rerun");
    await c.idle();
    expect(r.calls).toEqual(["a", "a"]);
    expect(r.maxConcurrentPerKey.get("a")).toBe(1);
  });

  it("processes many keys in parallel across workers", async () => {
    const r = new ScriptedReconciler(async () => {
      await new Promise((res) => setTimeout(res, 1));
      return undefined;
    });
    const c = make(r, new Registry(), 8);
    c.start();
    for (let i = 0; i < 2000; i++) c.enqueue(`k${i}`);
    await eventually(() => r.calls.length === 2000, "2000 keys");
    expect(new Set(r.calls).size).toBe(2000);
  });

  it("stop() aborts in-flight work through the signal after the grace period", async () => {
    let aborted = false;
    const r = new ScriptedReconciler(
      (_k, _n, signal) =>
        new Promise((_res, rej) => {
          signal.addEventListener("abort", () => {
            aborted = true;
            rej(signal.reason);
          });
        }),
    );
    const c = new Controller({ reconciler: r, workers: 1, rateLimiter: fast() });
    c.start();
    c.enqueue("a");
    await eventually(() => c.inFlight().length === 1, "in flight");
    await c.stop({ graceMs: 20 });
    expect(aborted).toBe(true);
    expect(c.inFlight()).toEqual([]);
  });

  it("resync enqueues every listed key", async () => {
    const r = new ScriptedReconciler(async () => undefined);
    const c = new Controller({
      reconciler: r,
      workers: 2,
      rateLimiter: fast(),
      resyncIntervalMs: 10,
      listKeys: () => ["x", "y"],
    });
    controllers.push(c);
    c.start();
    await eventually(() => r.calls.filter((k) => k === "x").length >= 2, "two resyncs");
    expect(r.calls).toContain("y");
  });
});
