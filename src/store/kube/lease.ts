/**
 * Leader election with a coordination.k8s.io/v1 Lease, after client-go's leaderelection:
 * - acquire when the Lease is free or its holder has not renewed for leaseDuration, judged by our
 *   own clock from when we last saw the record change (no trust in other nodes' clocks);
 * - renew every retryPeriod; if renewals fail for renewDeadline, leadership is lost: the leader
 *   signal aborts at once, so a leader that cannot reach the API server stops acting before a
 *   standby can take over (renewDeadline < leaseDuration);
 * - every write carries the resourceVersion it was based on: two candidates never both win.
 * - every attempt is bounded: its requests carry an AbortSignal and the attempt is raced against
 *   the time left (for a leader, until its renew deadline), so a black-holed API server (neither
 *   answering nor refusing) cannot hold the loop past the deadline: leadership is lost on time
 *   even while a renew request still hangs.
 * Defaults 10 s / 7 s / 2 s: a standby takes over within ~12 s of the leader's death.
 */

import { setTimeout as delay } from "node:timers/promises";
import type { CoordinationV1Api, KubeConfig, V1Lease } from "@kubernetes/client-node";
import * as k8s from "@kubernetes/client-node";
import type { LeaderElector } from "../../controller/leader.js";
import type { Logger } from "../../controller/log.js";
import { silentLogger } from "../../controller/log.js";
import { identified, withSignal } from "./request.js";

export interface LeaseOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  logger?: Logger;
}

/**
 * Wait `ms`, or less if the signal aborts; never rejects. The signal is the elector's long-lived
 * one: timers/promises removes its abort listener when the timer fires, so thousands of retry
 * periods leave none behind (one per retry used to accumulate: 43,000 a day at 2 s).
 */
const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  delay(ms, undefined, { signal }).then(
    () => undefined,
    () => undefined,
  );

export class LeaseLeaderElector implements LeaderElector {
  private readonly api: CoordinationV1Api;
  private readonly leaseMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryMs: number;
  private readonly logger: Logger;
  private observed: { record: string; at: number } | undefined;

  constructor(private readonly opts: LeaseOptions) {
    this.api = identified(opts.kubeConfig).makeApiClient(k8s.CoordinationV1Api);
    this.leaseMs = opts.leaseDurationMs ?? 10_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 7_000;
    this.retryMs = opts.retryPeriodMs ?? 2_000;
    this.logger = opts.logger ?? silentLogger;
  }

  async run(
    signal: AbortSignal,
    onStartedLeading: (leaderSignal: AbortSignal) => void,
    onStoppedLeading: () => void,
  ): Promise<void> {
    while (!signal.aborted) {
      if (await this.tryAcquireOrRenew(this.renewDeadlineMs)) break;
      await sleep(this.retryMs, signal);
    }
    if (signal.aborted) return;
    this.logger.info({ lease: this.opts.name, identity: this.opts.identity }, "became leader");
    const leading = new AbortController();
    onStartedLeading(leading.signal);
    let lastRenew = Date.now();
    while (!signal.aborted) {
      await sleep(this.retryMs, signal);
      if (signal.aborted) break;
      // The attempt gets only the time left before the deadline: a hanging request is abandoned
      // (and aborted) when it runs out, so the check below is reached on time.
      const left = lastRenew + this.renewDeadlineMs - Date.now();
      if (left > 0 && (await this.tryAcquireOrRenew(left))) lastRenew = Date.now();
      else if (Date.now() - lastRenew >= this.renewDeadlineMs) {
        this.logger.warn({ lease: this.opts.name }, "leadership lost: could not renew the lease in time");
        break;
      }
    }
    leading.abort(new Error("leadership lost"));
    onStoppedLeading();
    if (signal.aborted) await this.release();
  }

  private leaseBody(existing: V1Lease | undefined, now: Date, takeOver: boolean): V1Lease {
    const spec = existing?.spec ?? {};
    return {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: {
        name: this.opts.name,
        namespace: this.opts.namespace,
        ...(existing?.metadata?.resourceVersion
          ? { resourceVersion: existing.metadata.resourceVersion }
          : {}),
      },
      spec: {
        holderIdentity: this.opts.identity,
        leaseDurationSeconds: Math.ceil(this.leaseMs / 1000),
        acquireTime: new k8s.V1MicroTime((takeOver ? now : new Date(spec.acquireTime ?? now)).getTime()),
        renewTime: new k8s.V1MicroTime(now.getTime()),
        leaseTransitions: (spec.leaseTransitions ?? 0) + (takeOver && existing ? 1 : 0),
      },
    };
  }

  /**
   * One attempt, given at most `timeoutMs`; true when we hold the lease afterwards. Never throws.
   * When the time is up the attempt's requests are aborted and it resolves false at once, even if
   * a request ignores the abort (the race is the guarantee, the signal frees the socket).
   */
  async tryAcquireOrRenew(timeoutMs = this.renewDeadlineMs): Promise<boolean> {
    const attempt = new AbortController();
    const timer = setTimeout(() => attempt.abort(new Error("lease attempt timed out")), timeoutMs);
    let onAbort: (() => void) | undefined;
    const timedOut = new Promise<false>((resolve) => {
      onAbort = () => resolve(false);
      attempt.signal.addEventListener("abort", onAbort, { once: true });
    });
    try {
      return await Promise.race([this.attempt(attempt.signal), timedOut]);
    } finally {
      clearTimeout(timer);
      if (onAbort) attempt.signal.removeEventListener("abort", onAbort);
      if (!attempt.signal.aborted) attempt.abort(new Error("lease attempt finished"));
    }
  }

  private async attempt(signal: AbortSignal): Promise<boolean> {
    const { namespace, name, identity } = this.opts;
    const now = new Date();
    const opts = withSignal(signal);
    try {
      let lease: V1Lease | undefined;
      try {
        lease = await this.api.readNamespacedLease({ name, namespace }, opts);
      } catch (e) {
        if ((e as { code?: number }).code !== 404) throw e;
      }
      if (!lease) {
        await this.api.createNamespacedLease({ namespace, body: this.leaseBody(undefined, now, true) }, opts);
        this.lastFailure = undefined;
        return !signal.aborted;
      }
      const holder = lease.spec?.holderIdentity ?? "";
      const record = `${holder}|${String(lease.spec?.renewTime ?? "")}`;
      if (this.observed?.record !== record) this.observed = { record, at: Date.now() };
      const expired =
        Date.now() - this.observed.at >= (lease.spec?.leaseDurationSeconds ?? this.leaseMs / 1000) * 1000;
      if (holder && holder !== identity && !expired) return false;
      if (signal.aborted) return false;
      await this.api.replaceNamespacedLease(
        {
          name,
          namespace,
          body: this.leaseBody(lease, now, holder !== identity),
        },
        opts,
      );
      this.lastFailure = undefined;
      return !signal.aborted;
    } catch (e) {
      this.reportFailure(e);
      return false;
    }
  }

  /** The last lease error said at warn level: the next different one is said too, repeats are not. */
  private lastFailure: string | undefined;

  /**
   * A controller that cannot take its Lease reconciles nothing: said at warn level (once per
   * distinct error, not every retry), with what to do when the namespace is missing. It was
   * said at debug level only, and a controller pointed at a cluster without its namespace sat
   * silent forever.
   */
  private reportFailure(e: unknown): void {
    const { namespace, name } = this.opts;
    const code = (e as { code?: number }).code;
    const body = String((e as { body?: unknown }).body ?? "");
    const err = code ? `HTTP ${code}: ${body.slice(0, 300) || String(e)}` : String(e);
    if (err === this.lastFailure) {
      this.logger.debug({ lease: name, err }, "lease attempt failed");
      return;
    }
    this.lastFailure = err;
    const missingNamespace = code === 404 && /namespaces? .*not found/i.test(body);
    this.logger.warn(
      { lease: name, namespace, err },
      missingNamespace
        ? `cannot take the leader Lease: namespace ${namespace} does not exist (create it, or pass --namespace); nothing is reconciled until then`
        : "cannot take or renew the leader Lease; nothing is reconciled until it can (retrying)",
    );
  }

  /** Hand the lease back at a clean shutdown so a standby does not wait for it to expire. */
  private async release(): Promise<void> {
    const { namespace, name, identity } = this.opts;
    const opts = withSignal(AbortSignal.timeout(this.renewDeadlineMs));
    try {
      const lease = await this.api.readNamespacedLease({ name, namespace }, opts);
      if (lease.spec?.holderIdentity !== identity) return;
      await this.api.replaceNamespacedLease(
        {
          name,
          namespace,
          body: { ...lease, spec: { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1 } },
        },
        opts,
      );
    } catch {
      // best effort: the lease expires anyway
    }
  }
}
