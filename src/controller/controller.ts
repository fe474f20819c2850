/**
 * A Controller: a WorkQueue, N workers and one Reconciler. Knows no kind.
 *
 * Outcomes: `{requeueAfterMs}` -> re-queued after that delay, backoff reset; nothing -> done,
 * backoff reset; a thrown error -> re-queued with the rate limiter's backoff, counted and logged
 * as the `errorPolicy` classes it (outcome.ts); a TerminalError -> logged and dropped until the key
 * is added again by a change.
 *
 * Shutdown: `stop({graceMs})` stops handing out keys, lets in-flight reconciles finish for
 * `graceMs`, then aborts them through their AbortSignal and waits for them to settle (a reconcile
 * must leave things consistent when aborted: every step is idempotent and redone after restart).
 */
import { setMaxListeners } from "node:events";
import type { Logger } from "./log.js";
import { silentLogger } from "./log.js";
import type { ControllerMetrics } from "./metrics.js";
import {
  type ErrorPolicy,
  type ReconcileResult,
  type Reconciler,
  retryEveryError,
  TerminalError,
} from "./outcome.js";
import { type QueueClock, WorkQueue } from "./queue.js";
import { defaultRateLimiter, type RateLimiter } from "./rate-limiter.js";

export interface ControllerOptions {
  reconciler: Reconciler;
  /** What a thrown error means (default: every error is a failure to retry). */
  errorPolicy?: ErrorPolicy;
  workers?: number;
  rateLimiter?: RateLimiter;
  /** Every interval, all keys from `listKeys` are enqueued (the safety net under events). */
  resyncIntervalMs?: number;
  listKeys?: () => string[];
  metrics?: ControllerMetrics;
  logger?: Logger;
  clock?: QueueClock;
}

export class Controller {
  readonly name: string;
  readonly queue: WorkQueue;
  private readonly reconciler: Reconciler;
  private readonly errorPolicy: ErrorPolicy;
  private readonly workers: number;
  private readonly logger: Logger;
  private readonly metrics: ControllerMetrics | undefined;
  private readonly inflight = new Map<string, AbortController>();
  private running: Promise<void>[] = [];
  private resyncTimer: NodeJS.Timeout | undefined;
  private readonly stopping = new AbortController();
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly opts: ControllerOptions) {
    this.reconciler = opts.reconciler;
    this.errorPolicy = opts.errorPolicy ?? retryEveryError;
    this.name = opts.reconciler.name;
    this.workers = opts.workers ?? 4;
    this.logger = opts.logger ?? silentLogger;
    this.metrics = opts.metrics;
    const labels = { controller: this.name };
    // Every idle worker waits on this signal: more than node's default of 10 listeners is expected.
    setMaxListeners(0, this.stopping.signal);
    this.queue = new WorkQueue(opts.rateLimiter ?? defaultRateLimiter(), opts.clock, {
      onGet: (_k, ms) => this.metrics?.queueDuration.observe(labels, ms / 1000),
      onDepth: (d) => this.metrics?.queueDepth.set(labels, d),
      onRetry: () => this.metrics?.retries.inc(labels),
    });
    // Series exist from the start (at 0): Prometheus sees their first increase.
    if (this.metrics) {
      this.metrics.reconcileDuration.zero(labels);
      this.metrics.queueDuration.zero(labels);
      this.metrics.queueDepth.set(labels, 0);
      this.metrics.retries.inc(labels, 0);
      for (const result of ["success", "error", "requeue", "terminal"] as const)
        this.metrics.reconcileTotal.inc({ ...labels, result }, 0);
    }
  }

  enqueue(key: string): void {
    this.queue.add(key);
  }

  enqueueAfter(key: string, ms: number): void {
    this.queue.addAfter(key, ms);
  }

  /** Keys being reconciled right now. */
  inFlight(): string[] {
    return [...this.inflight.keys()];
  }

  start(): void {
    if (this.running.length > 0) return;
    for (let i = 0; i < this.workers; i++) this.running.push(this.work());
    const { resyncIntervalMs, listKeys } = this.opts;
    if (resyncIntervalMs && listKeys) {
      this.resyncTimer = setInterval(() => {
        for (const k of listKeys()) this.queue.add(k);
      }, resyncIntervalMs);
      this.resyncTimer.unref();
    }
  }

  /** Resolves when nothing is queued (delayed keys excepted) and nothing is in flight. */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private isIdle(): boolean {
    return this.queue.len() === 0 && this.inflight.size === 0;
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get(this.stopping.signal);
      if (key === undefined) return;
      await this.process(key);
      this.queue.done(key);
      if (this.idleWaiters.length > 0 && this.isIdle()) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private async process(key: string): Promise<void> {
    const labels = { controller: this.name };
    const abort = new AbortController();
    // One reconcile may fan out to many hypervisor calls at once (a group snapshot, a host's
    // domains), each listening on this signal until it settles: not a leak.
    setMaxListeners(256, abort.signal);
    this.inflight.set(key, abort);
    this.metrics?.workersActive.inc(labels);
    const started = performance.now();
    let result: ReconcileResult | undefined;
    try {
      result = await this.reconciler.reconcile(key, abort.signal);
      if (result?.requeueAfterMs !== undefined) {
        this.queue.forget(key);
        this.queue.addAfter(key, result.requeueAfterMs);
        this.metrics?.reconcileTotal.inc({ ...labels, result: "requeue" });
      } else {
        this.queue.forget(key);
        this.metrics?.reconcileTotal.inc({ ...labels, result: "success" });
      }
    } catch (e) {
      if (e instanceof TerminalError) {
        this.queue.forget(key);
        this.metrics?.reconcileTotal.inc({ ...labels, result: "terminal" });
        this.logger.warn(
          { key, reason: e.reason, err: e.message },
          "reconcile failed permanently; waiting for a change",
        );
      } else if (this.errorPolicy(e) === "conflict") {
        // Read from a cache older than the object: not a failure, just too early. Again, shortly.
        this.metrics?.reconcileTotal.inc({ ...labels, result: "requeue" });
        if (!this.queue.isShuttingDown()) {
          this.queue.addRateLimited(key);
          this.logger.debug(
            { key, err: e instanceof Error ? e.message : String(e) },
            "conflict; reconciling again from the latest",
          );
        }
      } else {
        this.metrics?.reconcileTotal.inc({ ...labels, result: "error" });
        if (!this.queue.isShuttingDown()) {
          this.queue.addRateLimited(key);
          this.logger.info(
            { key, retries: this.queue.numRequeues(key), err: e instanceof Error ? e.message : String(e) },
            "reconcile failed; retrying with backoff",
          );
        }
      }
    } finally {
      const seconds = (performance.now() - started) / 1000;
      this.metrics?.reconcileDuration.observe(labels, seconds);
      if (this.logger.isLevelEnabled("debug"))
        this.logger.debug(
          { key, ms: Math.round(seconds * 1000), requeueAfterMs: result?.requeueAfterMs },
          "reconciled",
        );
      this.metrics?.workersActive.dec(labels);
      this.inflight.delete(key);
    }
  }

  /** Stop taking keys; give in-flight reconciles `graceMs`, then abort them; wait for all workers. */
  async stop(opts: { graceMs?: number } = {}): Promise<void> {
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.queue.shutDown();
    this.stopping.abort();
    const all = Promise.all(this.running);
    const grace = opts.graceMs ?? 5_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), grace);
      }),
    ]);
    if (timer) clearTimeout(timer);
    if (timedOut) {
      this.logger.warn({ inFlight: this.inFlight() }, "aborting in-flight reconciles after the grace period");
      for (const a of this.inflight.values()) a.abort(new Error("controller stopping"));
      await all;
    }
    this.running = [];
  }
}
