/**
 * Migrations in flight: the VM reconciler decides that a VM moves (status.migration says so,
 * persisted first), and this runner does the moving in the background, so a reconcile never
 * waits minutes for a migration to finish. The VM reconciler reads the job's state at each pass.
 *
 * Contracts:
 * - At most `perSource` migrations leave one host at once (a migration stream is heavy on the
 *   source's network and CPU); the rest wait for a slot, in the order they were asked for.
 * - A job that succeeded has already moved the VM's ledger entry to the target (Fleet.assign),
 *   before anyone is woken: nothing can find the VM's running copy on the target "unassigned"
 *   and destroy it as a stale copy.
 * - Before anything moves, the target must see every disk volume the VM uses: on storage that
 *   is not shared, a start there would create fresh disks, so the move is refused instead.
 * - Live: libvirt's peer-to-peer live migration (the source libvirtd drives it), aborted after
 *   the VM's timeout. Cold (migration.live false): graceful shutdown (destroyed after two
 *   minutes, or the timeout if shorter), then the source definition goes; the VM reconciler
 *   defines and starts it on the target. Volumes are never deleted by a migration.
 * - Jobs live in memory only: after a controller restart status.migration and the hosts'
 *   domains tell what happened (decide.ts).
 * - The reconciler context holds the runner (context.ts), so the runner takes only what it uses
 *   of the context (MigrationDeps), never the context itself.
 */
import pLimit, { type LimitFunction } from "p-limit";
import type { Kind } from "../api/types.js";
import { isProviderError, ProviderError } from "../providers/types.js";
import type { ResourceStore } from "../store/types.js";
import type { Fleet } from "./fleet.js";

export type MigrationKind = "live" | "cold";

export type MigrationJobState =
  | { state: "queued" | "running"; kind: MigrationKind; to: string; progress: number }
  | { state: "succeeded"; kind: MigrationKind; to: string; finishedAt: Date; seconds: number }
  | { state: "failed"; kind: MigrationKind; to: string; finishedAt: Date; error: string };

export interface MigrationRequest {
  vmKey: string;
  domain: string;
  from: string;
  to: string;
  kind: MigrationKind;
  /** Disk volumes the VM uses (pool, name): the target must see them all. */
  volumes: { pool: string; name: string }[];
  bandwidthMiBps?: number;
  timeoutSeconds: number;
  /** The request the VM reserves on the target (ledger), once it is there. */
  assignment: {
    namespace: string;
    labels: Record<string, string>;
    request: { cpuMilli: number; memoryBytes: number };
  };
}

/** What the runner uses of the reconciler context (which passes for it as it is). */
export interface MigrationDeps {
  fleet: Pick<Fleet, "assign" | "connection" | "noteDomain" | "releaseIncoming">;
  store: Pick<ResourceStore, "get">;
  now: () => Date;
  enqueue: (kind: Kind, key: string) => void;
}

const DEFAULT_PER_SOURCE = 2;
const SHUTDOWN_POLL_MS = 500;
/** A cold migration waits this long at most for the guest to shut down, then destroys it. */
const COLD_SHUTDOWN_GRACE_S = 120;

export class MigrationRunner {
  private readonly jobs = new Map<string, MigrationJobState>();
  private readonly slots = new Map<string, LimitFunction>();
  private readonly aborts = new Map<string, AbortController>();

  constructor(
    private readonly ctx: () => MigrationDeps,
    private readonly opts: { perSource?: number; unsafe?: boolean } = {},
  ) {}

  /** The job of a VM, if one was started since the last `forget`. */
  job(vmKey: string): MigrationJobState | undefined {
    return this.jobs.get(vmKey);
  }

  /** VMs with a job queued or running (metrics). */
  inFlight(): number {
    let n = 0;
    for (const j of this.jobs.values()) if (j.state === "queued" || j.state === "running") n++;
    return n;
  }

  forget(vmKey: string): void {
    const j = this.jobs.get(vmKey);
    if (j && (j.state === "queued" || j.state === "running")) return;
    this.jobs.delete(vmKey);
  }

  /** Abort every job (controller stopping); their VMs stay where libvirt leaves them. */
  abortAll(): void {
    for (const a of this.aborts.values()) a.abort();
  }

  /** Start (queue) a migration; a second request for a VM with a job in flight is ignored. */
  start(req: MigrationRequest): void {
    const existing = this.jobs.get(req.vmKey);
    if (existing && (existing.state === "queued" || existing.state === "running")) return;
    this.jobs.set(req.vmKey, { state: "queued", kind: req.kind, to: req.to, progress: 0 });
    let slots = this.slots.get(req.from);
    if (!slots) {
      slots = pLimit(this.opts.perSource ?? DEFAULT_PER_SOURCE);
      this.slots.set(req.from, slots);
    }
    const abort = new AbortController();
    this.aborts.set(req.vmKey, abort);
    const started = performance.now();
    void slots(() => this.run(req, abort.signal))
      .then(
        () => {
          const ctx = this.ctx();
          // The VM is on the target now: its ledger entry moves before anyone looks.
          ctx.fleet.releaseIncoming(req.vmKey);
          ctx.fleet.assign(req.vmKey, { host: req.to, ...req.assignment });
          ctx.fleet.noteDomain(req.from, req.vmKey, undefined);
          this.jobs.set(req.vmKey, {
            state: "succeeded",
            kind: req.kind,
            to: req.to,
            finishedAt: ctx.now(),
            seconds: (performance.now() - started) / 1000,
          });
        },
        (e: unknown) => {
          const ctx = this.ctx();
          ctx.fleet.releaseIncoming(req.vmKey);
          this.jobs.set(req.vmKey, {
            state: "failed",
            kind: req.kind,
            to: req.to,
            finishedAt: ctx.now(),
            error: e instanceof Error ? e.message : String(e),
          });
        },
      )
      .finally(() => {
        this.aborts.delete(req.vmKey);
        this.ctx().enqueue("VirtualMachine", req.vmKey);
      });
  }

  private async run(req: MigrationRequest, abort: AbortSignal): Promise<void> {
    const ctx = this.ctx();
    this.jobs.set(req.vmKey, { state: "running", kind: req.kind, to: req.to, progress: 0 });
    const source = ctx.fleet.connection(req.from);
    const target = ctx.fleet.connection(req.to);
    if (!source?.isConnected)
      throw new ProviderError("Unreachable", req.from, "migrate", "the source host does not answer");
    if (!target?.isConnected)
      throw new ProviderError("Unreachable", req.to, "migrate", "the target host does not answer");
    const signal = AbortSignal.any([abort, AbortSignal.timeout(req.timeoutSeconds * 1000)]);
    for (const v of req.volumes) {
      if (!(await target.provider.getVolume(v.pool, v.name, signal)))
        throw new ProviderError(
          "NotFound",
          req.to,
          "migrate",
          `volume ${v.pool}/${v.name} is not in ${req.to}'s pool (storage not shared with ${req.from}): not moved`,
        );
    }
    if (req.kind === "live") {
      const targetUri = ctx.store.get("Host", req.to)?.spec.uri;
      if (!targetUri) throw new ProviderError("NotFound", req.to, "migrate", `no Host ${req.to}`);
      try {
        await source.provider.migrateDomain(
          req.domain,
          targetUri,
          {
            live: true,
            ...(req.bandwidthMiBps ? { bandwidthMiBps: req.bandwidthMiBps } : {}),
            ...(this.opts.unsafe ? { unsafe: true } : {}),
            onProgress: (p) => {
              const j = this.jobs.get(req.vmKey);
              if (j?.state === "running") j.progress = p;
            },
          },
          signal,
        );
      } catch (e) {
        if (signal.aborted && !abort.aborted) {
          // Out of time: stop libvirt's job too, the guest runs on at the source.
          await source.provider.abortJob(req.domain).catch(() => undefined);
          throw new ProviderError(
            "Timeout",
            req.from,
            "migrate",
            `live migration to ${req.to} did not finish within ${req.timeoutSeconds} s: aborted`,
          );
        }
        throw e;
      }
      return;
    }
    // Cold: shut down gracefully, destroy after the timeout, and leave the source.
    const p = source.provider;
    await p.shutdownDomain(req.domain, signal).catch((e: unknown) => {
      if (!isProviderError(e, "InvalidState")) throw e;
    });
    const deadline = Date.now() + Math.min(req.timeoutSeconds, COLD_SHUTDOWN_GRACE_S) * 1000;
    for (;;) {
      const st = await p.getDomainState(req.domain, abort);
      if (!st || st.state === "shutoff") break;
      if (Date.now() >= deadline) {
        await p.destroyDomain(req.domain, abort).catch((e: unknown) => {
          if (!isProviderError(e, "InvalidState")) throw e;
        });
        break;
      }
      const j = this.jobs.get(req.vmKey);
      if (j?.state === "running") j.progress = 50;
      await new Promise((r) => setTimeout(r, SHUTDOWN_POLL_MS));
    }
    await p.undefineDomain(req.domain, abort).catch((e: unknown) => {
      if (!isProviderError(e, "NotFound")) throw e;
    });
    ctx.fleet.noteDomain(req.from, req.vmKey, undefined);
  }
}
