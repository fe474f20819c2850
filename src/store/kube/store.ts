/**
 * KubeStore: the ResourceStore of Kubernetes mode, on @kubernetes/client-node.
 *
 * - One informer per kind (all namespaces); `start` resolves when every kind has been listed.
 *   An informer that errors is restarted with exponential backoff (1 s doubling to 60 s).
 * - A watch can go silent without an error (a known failure of this client): when no event has
 *   arrived for `silentWatchMs` the informer is stopped and restarted, which relists.
 * - A relist is translated against what handlers were last told (as client-go's Replace does): an
 *   object seen before is `modified` (only if its resourceVersion moved), a new one `added`, and
 *   one that vanished while the watch was down is `deleted` once the list is in. Without this a
 *   change made during the gap would arrive as a second `added`, and a deletion not at all.
 * - Status goes through the status subresource, only when it differs from the cached object, with
 *   optimistic concurrency: a 409 re-reads the object and re-applies the status (5 tries).
 * - Finalizers through one helper: a JSON merge patch of metadata.finalizers carrying the
 *   resourceVersion it was computed from (a conflict re-reads and retries).
 * - Events: events.k8s.io/v1, aggregated per (object, reason, type) with a series count.
 * - Every request but a watch gives up after `requestTimeoutMs`: behind a network partition a
 *   request is neither answered nor refused, and one awaited forever would hold its reconcile
 *   (and a stopping controller) until TCP gives up, many minutes later.
 */
import { hostname } from "node:os";
import * as k8s from "@kubernetes/client-node";
import {
  type CoreV1Api,
  type CustomObjectsApi,
  type EventsV1Api,
  type Informer,
  type KubeConfig,
  type KubernetesObject,
  makeInformer,
  type ObjectCache,
  Observable,
  type ObservableMiddleware,
  PatchStrategy,
  setHeaderOptions,
} from "@kubernetes/client-node";
import {
  CLUSTER_SCOPED,
  GROUP,
  KINDS,
  type Kind,
  objectKey,
  type Resource,
  type ResourceOfKind,
  VERSION,
} from "../../api/types.js";
import type { Logger } from "../../controller/log.js";
import { silentLogger } from "../../controller/log.js";
import { jsonEqual } from "../equal.js";
import { mergeStatus } from "../merge.js";
import {
  ConflictError,
  type ObjectReference,
  type RecordedEvent,
  type ResourceStore,
  type Unsubscribe,
  type WatchEvent,
} from "../types.js";
import { DEFAULT_KUBE_RATE_LIMIT, type RateLimit, TokenBucket } from "./rate-limit.js";
import { identified, type RequestOptions } from "./request.js";

export const PLURALS: Record<Kind, string> = {
  VirtualMachine: "virtualmachines",
  Host: "hosts",
  VirtualNetwork: "virtualnetworks",
  SnapshotPolicy: "snapshotpolicies",
  VirtualMachineSnapshot: "virtualmachinesnapshots",
  VirtualMachineRestore: "virtualmachinerestores",
  VirtualMachineClass: "virtualmachineclasses",
};

export interface KubeStoreOptions {
  kubeConfig: KubeConfig;
  /** Namespace holding fence/power credential Secrets (and events about cluster-scoped objects). */
  namespace?: string;
  logger?: Logger;
  /** Relist a kind when its watch delivered nothing for this long (default 5 minutes). */
  silentWatchMs?: number;
  /** The controller's name in events (reportingController). */
  controllerName?: string;
  /** A list, read or write that has not been answered by then fails (default 20 s). */
  requestTimeoutMs?: number;
  /**
   * Client-side limit of the store's requests (not of the leader Lease's, which must never queue
   * behind a backlog of status writes); default DEFAULT_KUBE_RATE_LIMIT, qps 0 for none.
   */
  rateLimit?: RateLimit;
  /** Event series remembered for aggregation (default MAX_EVENT_SERIES). */
  maxEventSeries?: number;
}

/** Event series remembered for aggregation (client-go's correlator keeps 4,096). */
export const MAX_EVENT_SERIES = 4096;

function httpCode(e: unknown): number | undefined {
  const c = (e as { code?: unknown }).code;
  return typeof c === "number" ? c : undefined;
}

const mergePatch = () => setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

/**
 * Request options that wait for the rate limit, then abort the request `ms` after it was sent
 * (keeping what `opts` had, e.g. a header): time spent waiting for a token is not the API
 * server's, and must not time a request out before it went.
 */
function limited(bucket: TokenBucket, ms: number, opts?: RequestOptions): RequestOptions {
  const gate: ObservableMiddleware = {
    pre: (request) =>
      new Observable(
        bucket.take().then(() => {
          request.setSignal(AbortSignal.timeout(ms));
          return request;
        }),
      ),
    post: (response) => new Observable(Promise.resolve(response)),
  };
  return { ...opts, middleware: [...(opts?.middleware ?? []), gate], middlewareMergeStrategy: "append" };
}

export class KubeStore implements ResourceStore {
  /** The client-side rate limit; its counters say how often and how long requests waited. */
  readonly bucket: TokenBucket;
  /** The same limit, for events alone. */
  readonly eventBucket: TokenBucket;
  private readonly eventReq: (o?: RequestOptions) => RequestOptions;
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  private readonly events: EventsV1Api;
  private readonly informers = new Map<Kind, Informer<KubernetesObject> & ObjectCache<KubernetesObject>>();
  private readonly lastEvent = new Map<Kind, number>();
  /** What handlers were last told about each object, per kind (key -> object). */
  private readonly known = new Map<Kind, Map<string, KubernetesObject>>();
  private readonly handlers = new Map<Kind, Set<(e: WatchEvent) => void>>();
  private readonly synced = new Set<Kind>();
  private readonly recorded = new Map<string, { name: string; namespace: string; event: RecordedEvent }>();
  private silentTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly logger: Logger;
  private readonly namespace: string;
  /** Times each kind's informer was (re)started, for tests and diagnostics. */
  readonly restarts = new Map<Kind, number>();
  /** Every request but a watch: bounded (see the header). */
  private readonly req: (opts?: RequestOptions) => RequestOptions;

  /** The caller's configuration, identifying itself (User-Agent, field manager) on every request. */
  private readonly kc: KubeConfig;

  constructor(private readonly opts: KubeStoreOptions) {
    const kc = identified(opts.kubeConfig);
    this.kc = kc;
    this.custom = kc.makeApiClient(k8s.CustomObjectsApi);
    this.core = kc.makeApiClient(k8s.CoreV1Api);
    this.events = kc.makeApiClient(k8s.EventsV1Api);
    this.logger = opts.logger ?? silentLogger;
    this.namespace = opts.namespace ?? "virtwarden-system";
    const ms = opts.requestTimeoutMs ?? 20_000;
    this.bucket = new TokenBucket(opts.rateLimit ?? DEFAULT_KUBE_RATE_LIMIT);
    this.req = (o) => limited(this.bucket, ms, o);
    // Events are best effort and come in bursts (two or three per VM on a cold start): a bucket
    // of their own, so that they never hold up a status write or a finalizer.
    this.eventBucket = new TokenBucket(opts.rateLimit ?? DEFAULT_KUBE_RATE_LIMIT);
    this.eventReq = (o) => limited(this.eventBucket, ms, o);
  }

  // --- informers -----------------------------------------------------------------------------

  async start(): Promise<void> {
    // Resolves when every kind has listed; a failing list is retried with backoff meanwhile.
    await Promise.all(KINDS.map((k) => this.restartInformer(k, 0)));
    const silent = this.opts.silentWatchMs ?? 300_000;
    this.silentTimer = setInterval(
      () => {
        const now = Date.now();
        for (const k of KINDS) {
          if (now - (this.lastEvent.get(k) ?? now) >= silent) {
            this.logger.info(
              { kind: k, silentMs: now - (this.lastEvent.get(k) ?? now) },
              "watch silent: relisting",
            );
            void this.restartInformer(k, 0);
          }
        }
      },
      Math.max(50, Math.min(silent / 2, 30_000)),
    );
    this.silentTimer.unref();
  }

  /**
   * Lists and watches one kind. The new informer replaces the old one only once its list is in:
   * until then reads are served from the old cache, and the new informer's events are held back
   * and then translated against what handlers were told (see the header). A failed list throws.
   */
  private async startInformer(kind: Kind): Promise<void> {
    const plural = PLURALS[kind];
    const informer = makeInformer(this.kc, `/apis/${GROUP}/${VERSION}/${plural}`, () =>
      this.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural }, this.req()),
    );
    const touch = () => this.lastEvent.set(kind, Date.now());
    let told = this.known.get(kind);
    if (!told) {
      told = new Map();
      this.known.set(kind, told);
    }
    const known = told;
    const keyOf = (o: KubernetesObject) =>
      objectKey({ name: o.metadata?.name ?? "", namespace: o.metadata?.namespace });
    let live = false;
    let listFailed: unknown;
    const held: (() => void)[] = [];
    const deliver = (f: () => void) => {
      touch();
      if (live) f();
      else held.push(f);
    };
    // managedFields are the API server's bookkeeping of who set which field: kilobytes per
    // object that nothing here reads. Dropped from the cached object itself as it arrives (the
    // informer caches the very object it hands its handlers). A write sent without them keeps
    // the stored ones (the API server treats absent managedFields as unchanged).
    const lean = (o: KubernetesObject) => {
      if (o.metadata?.managedFields) delete o.metadata.managedFields;
    };
    informer.on("add", (o) => {
      lean(o);
      deliver(() => {
        const before = known.get(keyOf(o));
        known.set(keyOf(o), o);
        if (!before) this.emit(kind, "added", o);
        else if (before.metadata?.resourceVersion !== o.metadata?.resourceVersion)
          this.emit(kind, "modified", o);
      });
    });
    informer.on("update", (o) => {
      lean(o);
      deliver(() => {
        known.set(keyOf(o), o);
        this.emit(kind, "modified", o);
      });
    });
    informer.on("delete", (o) =>
      deliver(() => {
        known.delete(keyOf(o));
        this.emit(kind, "deleted", o);
      }),
    );
    informer.on("connect", touch);
    informer.on("error", (err: unknown) => {
      // Stopping a ListWatch aborts its request, which comes back here as an error: not a failure.
      if (this.retired.has(informer)) return;
      if (!live) {
        listFailed = err ?? new Error("list failed");
        return;
      }
      this.logger.warn({ kind, err: String(err) }, "informer failed; restarting with backoff");
      void this.restartInformer(kind, 1000);
    });
    await informer.start();
    if (this.stopped) {
      await this.retire(informer);
      return;
    }
    if (listFailed !== undefined) {
      await this.retire(informer);
      throw listFailed instanceof Error ? listFailed : new Error(String(listFailed));
    }
    this.informers.set(kind, informer);
    this.restarts.set(kind, (this.restarts.get(kind) ?? 0) + 1);
    live = true;
    touch();
    for (const f of held.splice(0)) f();
    // Objects handlers know of that the (re)list no longer has were deleted during the gap.
    const listed = new Set(informer.list().map(keyOf));
    for (const [key, o] of [...known]) {
      if (listed.has(key)) continue;
      known.delete(key);
      this.emit(kind, "deleted", o);
    }
    this.synced.add(kind);
  }

  private readonly restarting = new Map<Kind, Promise<void>>();
  private readonly retired = new WeakSet<object>();

  private async retire(informer: Informer<KubernetesObject>): Promise<void> {
    this.retired.add(informer);
    await informer.stop();
  }

  /**
   * (Re)starts a kind's informer, retrying with backoff (1 s doubling to 60 s) until it lists.
   * A restart already under way is joined, not doubled.
   */
  private restartInformer(kind: Kind, firstDelayMs: number): Promise<void> {
    const ongoing = this.restarting.get(kind);
    if (ongoing) return ongoing;
    if (this.stopped) return Promise.resolve();
    const run = (async () => {
      // The old informer stops watching but keeps its cache for reads until the new one listed.
      const old = this.informers.get(kind);
      if (old) await this.retire(old);
      let delay = firstDelayMs;
      for (;;) {
        if (this.stopped) return;
        if (delay > 0) await new Promise((r) => setTimeout(r, delay));
        try {
          await this.startInformer(kind);
          return;
        } catch (e) {
          delay = Math.min(60_000, Math.max(1000, delay * 2));
          this.logger.warn({ kind, err: String(e), retryMs: delay }, "informer (re)start failed");
        }
      }
    })().finally(() => this.restarting.delete(kind));
    this.restarting.set(kind, run);
    return run;
  }

  /** Restarts a kind's watch from a fresh list, as a silent watch does; resolves once listed. */
  async relist(kind: Kind): Promise<void> {
    await this.restartInformer(kind, 0);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.silentTimer) clearInterval(this.silentTimer);
    await Promise.all([...this.informers.values()].map((i) => this.retire(i)));
  }

  hasSynced(): boolean {
    return KINDS.every((k) => this.synced.has(k));
  }

  private emit(kind: Kind, type: WatchEvent["type"], object: KubernetesObject): void {
    for (const h of this.handlers.get(kind) ?? [])
      h({ type, object: object as unknown as Resource } as WatchEvent);
  }

  // --- reads ---------------------------------------------------------------------------------

  get<K extends Kind>(kind: K, key: string): ResourceOfKind<K> | undefined {
    const i = key.indexOf("/");
    const [ns, name] = i >= 0 ? [key.slice(0, i), key.slice(i + 1)] : [undefined, key];
    const o = this.informers.get(kind)?.get(name, ns);
    return o ? (structuredClone(o) as unknown as ResourceOfKind<K>) : undefined;
  }

  list<K extends Kind>(kind: K): ResourceOfKind<K>[] {
    return (this.informers.get(kind)?.list() ?? []) as unknown as ResourceOfKind<K>[];
  }

  watch<K extends Kind>(kind: K, handler: (event: WatchEvent<K>) => void): Unsubscribe {
    let set = this.handlers.get(kind);
    if (!set) {
      set = new Set();
      this.handlers.set(kind, set);
    }
    const h = handler as unknown as (e: WatchEvent) => void;
    set.add(h);
    for (const o of this.list(kind)) h({ type: "added", object: o } as WatchEvent);
    return () => set?.delete(h);
  }

  // --- writes --------------------------------------------------------------------------------

  private target(obj: Pick<Resource, "kind" | "metadata">) {
    return {
      group: GROUP,
      version: VERSION,
      plural: PLURALS[obj.kind],
      name: obj.metadata.name,
      namespace: obj.metadata.namespace ?? "default",
      cluster: CLUSTER_SCOPED.has(obj.kind),
    };
  }

  private async read(obj: Pick<Resource, "kind" | "metadata">): Promise<Resource> {
    const t = this.target(obj);
    return (
      t.cluster
        ? await this.custom.getClusterCustomObject(
            { group: t.group, version: t.version, plural: t.plural, name: t.name },
            this.req(),
          )
        : await this.custom.getNamespacedCustomObject({ ...t }, this.req())
    ) as Resource;
  }

  async updateStatus<K extends Kind>(
    obj: ResourceOfKind<K>,
    status: NonNullable<ResourceOfKind<K>["status"]>,
  ): Promise<ResourceOfKind<K>> {
    const cached = this.get(obj.kind, objectKey(obj.metadata)) ?? obj;
    if (jsonEqual(cached.status ?? {}, status)) return cached as ResourceOfKind<K>;
    // Written on the version the status was computed from. If the object changed since (a stale
    // cache read, or another write in between), what this reconcile changed is merged onto the
    // stored status (merge.ts): neither its record of what it did (a recovery carried out) is
    // lost, nor is its stale reading written over newer fields.
    const read: Resource = obj.metadata.resourceVersion ? obj : cached;
    const base = read.status as Record<string, unknown> | undefined;
    let current: Resource = read;
    let next = status as Record<string, unknown>;
    for (let attempt = 0; ; attempt++) {
      const body = { ...current, status: next };
      const t = this.target(current);
      try {
        const out = t.cluster
          ? await this.custom.replaceClusterCustomObjectStatus(
              { group: t.group, version: t.version, plural: t.plural, name: t.name, body },
              this.req(),
            )
          : await this.custom.replaceNamespacedCustomObjectStatus({ ...t, body }, this.req());
        return out as ResourceOfKind<K>;
      } catch (e) {
        if (httpCode(e) !== 409) throw e;
        if (attempt >= 4)
          throw new ConflictError(
            `${obj.kind} ${objectKey(obj.metadata)}: status changed concurrently ${attempt + 1} times`,
          );
        current = await this.read(current);
        next = mergeStatus(
          base,
          status as Record<string, unknown>,
          current.status as Record<string, unknown>,
        );
        if (jsonEqual(next, current.status ?? {})) return current as ResourceOfKind<K>;
      }
    }
  }

  /** The one finalizer helper: compute the new list from the latest object, patch with its resourceVersion. */
  private async editFinalizers(
    obj: Resource,
    edit: (f: string[]) => string[],
  ): Promise<Resource | undefined> {
    let current: Resource = this.get(obj.kind, objectKey(obj.metadata)) ?? obj;
    for (let attempt = 0; ; attempt++) {
      const before = current.metadata.finalizers ?? [];
      const after = edit(before);
      if (JSON.stringify(after) === JSON.stringify(before)) return current;
      const t = this.target(current);
      const body = { metadata: { finalizers: after, resourceVersion: current.metadata.resourceVersion } };
      try {
        const out = t.cluster
          ? await this.custom.patchClusterCustomObject(
              { group: t.group, version: t.version, plural: t.plural, name: t.name, body },
              this.req(mergePatch()),
            )
          : await this.custom.patchNamespacedCustomObject({ ...t, body }, this.req(mergePatch()));
        return out as Resource;
      } catch (e) {
        if (httpCode(e) === 404) return undefined;
        if (httpCode(e) !== 409 || attempt >= 4) throw e;
        current = await this.read(current);
      }
    }
  }

  async addFinalizer<K extends Kind>(obj: ResourceOfKind<K>, finalizer: string): Promise<ResourceOfKind<K>> {
    const out = await this.editFinalizers(obj, (f) => (f.includes(finalizer) ? f : [...f, finalizer]));
    return (out ?? obj) as ResourceOfKind<K>;
  }

  async removeFinalizer<K extends Kind>(obj: ResourceOfKind<K>, finalizer: string): Promise<void> {
    await this.editFinalizers(obj, (f) => f.filter((x) => x !== finalizer));
  }

  async create<R extends Resource>(obj: R): Promise<R> {
    const t = this.target(obj);
    const body = { ...obj, apiVersion: `${GROUP}/${VERSION}` };
    return (
      t.cluster
        ? await this.custom.createClusterCustomObject(
            { group: t.group, version: t.version, plural: t.plural, body },
            this.req(),
          )
        : await this.custom.createNamespacedCustomObject(
            { group: t.group, version: t.version, plural: t.plural, namespace: t.namespace, body },
            this.req(),
          )
    ) as R;
  }

  async delete(kind: Kind, key: string): Promise<void> {
    const i = key.indexOf("/");
    const meta = i >= 0 ? { namespace: key.slice(0, i), name: key.slice(i + 1) } : { name: key };
    const t = this.target({ kind, metadata: meta });
    try {
      if (t.cluster)
        await this.custom.deleteClusterCustomObject(
          { group: t.group, version: t.version, plural: t.plural, name: t.name },
          this.req(),
        );
      else await this.custom.deleteNamespacedCustomObject({ ...t }, this.req());
    } catch (e) {
      if (httpCode(e) !== 404) throw e;
    }
  }

  // --- events --------------------------------------------------------------------------------

  recordEvent(e: Omit<RecordedEvent, "firstTime" | "lastTime" | "count">): void {
    void this.writeEvent(e).catch((err: unknown) =>
      this.logger.warn({ reason: e.reason, err: String(err) }, "cannot record event"),
    );
  }

  private async writeEvent(e: Omit<RecordedEvent, "firstTime" | "lastTime" | "count">): Promise<void> {
    // Like Kubernetes' own recorder: the same object, reason, type and note form a series (an
    // event's note is immutable, so a different note is a new event).
    const key = `${e.regarding.kind}|${e.regarding.namespace ?? ""}|${e.regarding.name}|${e.reason}|${e.type}|${e.note}`;
    const now = new Date();
    // An event about a cluster-scoped object (a Host) must live in "default": the API server
    // refuses another namespace ("involvedObject.namespace does not match event.namespace").
    const namespace = e.regarding.namespace || "default";
    const seen = this.recorded.get(key);
    if (seen) {
      seen.event.count++;
      seen.event.lastTime = now.toISOString();
      // Most recently used last: the oldest series is the one forgotten first.
      this.recorded.delete(key);
      this.recorded.set(key, seen);
      try {
        await this.events.patchNamespacedEvent(
          {
            name: seen.name,
            namespace: seen.namespace,
            body: {
              series: { count: seen.event.count, lastObservedTime: new k8s.V1MicroTime(now.getTime()) },
            },
          },
          this.eventReq(mergePatch()),
        );
        return;
      } catch (err) {
        // The API server dropped the event (its --event-ttl, 1 h by default, or someone deleted
        // it): the series starts again as a new event rather than failing at every repeat.
        if (httpCode(err) !== 404) throw err;
        this.recorded.delete(key);
      }
    }
    const name = `${e.regarding.name}.${now.getTime().toString(16)}${Math.random().toString(16).slice(2, 6)}`;
    await this.events.createNamespacedEvent(
      {
        namespace,
        body: {
          metadata: { name, namespace },
          eventTime: new k8s.V1MicroTime(now.getTime()),
          reportingController: this.opts.controllerName ?? "virtwarden.io/controller",
          reportingInstance: `${hostname()}-${process.pid}`,
          action: e.action,
          reason: e.reason,
          type: e.type,
          note: e.note.slice(0, 1024),
          regarding: {
            apiVersion: `${GROUP}/${VERSION}`,
            kind: e.regarding.kind,
            name: e.regarding.name,
            ...(e.regarding.namespace ? { namespace: e.regarding.namespace } : {}),
            ...(e.regarding.uid ? { uid: e.regarding.uid } : {}),
          },
        },
      },
      this.eventReq(),
    );
    // Bounded like client-go's event correlator (an LRU of 4,096 series): notes name hosts,
    // times and errors, so distinct keys never stop coming in a long-running controller.
    if (this.recorded.size >= (this.opts.maxEventSeries ?? MAX_EVENT_SERIES))
      this.recorded.delete(this.recorded.keys().next().value as string);
    this.recorded.set(key, {
      name,
      namespace,
      event: { ...e, firstTime: now.toISOString(), lastTime: now.toISOString(), count: 1 },
    });
  }

  /** Events this process recorded (others: `kubectl get events`). */
  listEvents(regarding?: ObjectReference): RecordedEvent[] {
    return [...this.recorded.values()]
      .map((r) => r.event)
      .filter(
        (e) =>
          !regarding ||
          (e.regarding.kind === regarding.kind &&
            e.regarding.name === regarding.name &&
            (e.regarding.namespace ?? "") === (regarding.namespace ?? "")),
      );
  }

  async readSecret(ref: { name: string; namespace?: string }): Promise<Record<string, string>> {
    const s = await this.core.readNamespacedSecret(
      { name: ref.name, namespace: ref.namespace ?? this.namespace },
      this.req(),
    );
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(s.data ?? {})) out[k] = Buffer.from(v, "base64").toString("utf8");
    for (const [k, v] of Object.entries(s.stringData ?? {})) out[k] = v;
    return out;
  }
}
