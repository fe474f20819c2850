/**
 * The Host reconciler: keep a connection to each Host, beat its heart, refresh its inventory and
 * capacity, publish it to the scheduler, and report phase and conditions.
 *
 * Contracts:
 * - Requeues itself every heartbeat interval; a failed heartbeat is a value (missedBeats), never a
 *   thrown error, so backoff never slows failure detection.
 * - Which failed beats count, and when they are evidence enough to fence, is heartbeat.ts's rule:
 *   beats the controller could not listen for (its event loop stalled) do not count, and a host
 *   whose kernel still answers at the network level (reachability.ts) is "management down",
 *   Unreachable but not fenced. Durations are monotonic (performance.now), never the wall clock.
 * - A host judged dead has its connection dropped at once (a powered-off host sends no FIN).
 * - After a (re)connection the full domain inventory is listed before the host is published as
 *   Ready, so VM reconciles see existing domains (adoption, stale copies) before placing anything.
 * - Domains carrying virtwarden's mark whose VirtualMachine no longer exists are orphans: destroyed
 *   and undefined (their volumes are kept: data is never deleted without a resource asking for it).
 *   A running copy that copies.ts judges stale (the VM assigned to another host, not confirmed
 *   down) is destroyed as the listing finds it; every other copy elsewhere is left to the VM.
 * - Wakes the VMs of the host when its phase changes, and unplaced VMs when it becomes Ready.
 * - The heartbeat verdict rests on the ping (or connection) and the network probe alone. A failed
 *   inventory listing (one domain's state call failing, a decode error) is no missed beat: the
 *   host keeps its last good listing, marked stale (InventoryStale condition, an event, a log
 *   naming the error), takes no new VMs until a listing succeeds, and every beat retries it. A
 *   failed listing never reads as "no domain": the inventory is replaced only by a listing.
 * - Node statistics are sampled with each inventory listing (ctx.inventoryIntervalMs), never per
 *   beat; two samples give status.usage and the candidate's `measured` (usage.ts). A failed
 *   sample only keeps the last usage.
 */
import { type ClassLookup, resolveVM } from "../../api/classes.js";
import type { Host, VirtualMachine } from "../../api/types.js";
import { loopStalls, settlesWithin } from "../../controller/loop-stall.js";
import type { ReconcileResult, Reconciler } from "../../controller/outcome.js";
import { isProviderError, ProviderError } from "../../providers/types.js";
import { type Capacity, placementOrder } from "../../scheduler/placement.js";
import { jsonEqual } from "../../store/equal.js";
import { atRest } from "../consolidation/intents.js";
import { FINALIZER, type ReconcilerContext } from "../context.js";
import { mayRun, resolveCopies } from "../copies.js";
import type { HostConnection } from "../fleet.js";
import { type HostMiss, missesByHost } from "../virtualmachine/deadlines.js";
import { hostHealth } from "../virtualmachine/observe.js";
import { vmCapacity } from "../virtualmachine/placement-request.js";
import { vmImages } from "../virtualmachine/render.js";
import { listedClasses } from "../vm-class.js";
import { decideHost, hostInUseMessage, type ObservedHost } from "./decide.js";
import { fenceStep } from "./fencing.js";
import {
  type Beat,
  type BeatLedger,
  beatWindowMs,
  type HeartbeatVerdict,
  judgeHeartbeat,
  MANAGEMENT_DOWN_FENCE_AFTER_MS,
  newLedger,
  recordBeat,
} from "./heartbeat.js";
import { offOnPurpose, powerStep } from "./power.js";
import { type ProbeTarget, probeHost, probeTarget } from "./reachability.js";
import type { ReliabilityMark } from "./reliability.js";
import { measuredUse, usageBetween } from "./usage.js";

const CALL_TIMEOUT_MS = 5_000;
const INFO_REFRESH_MS = 60_000;

/** How often the bring-up deadline misses of the VMs are re-read (see HostReconciler.misses). */
const MISSES_REFRESH_MS = 5_000;

export class HostReconciler implements Reconciler {
  readonly name = "host";
  private readonly lastPhase = new Map<string, string>();
  /** Each host's heartbeat record (heartbeat.ts), in monotonic time. */
  private readonly ledgers = new Map<string, BeatLedger>();
  /** Hosts whose latest beat failed (counted or not): the next one re-lists and probes. */
  private readonly failing = new Set<string>();
  /** Hosts whose latest inventory listing failed: why, and since when. Retried every beat. */
  private readonly inventoryFailing = new Map<string, { error: string; since: Date }>();
  /** How far each host's reliability is accounted in its status (reliability.ts), this process only. */
  private readonly reliabilityMarks = new Map<string, ReliabilityMark>();
  private wakeTimer: NodeJS.Timeout | undefined;
  /**
   * Bring-up deadline misses by host, from the VMs' status (virtualmachine/deadlines.ts), read
   * at most every MISSES_REFRESH_MS: a host reconciles every heartbeat, and listing every VM for
   * each beat of each host would cost 500 hosts x 10,000 VMs a second. Misses are rare and the
   * avoidance they lead to lasts half an hour: seconds of delay do not matter.
   */
  private misses: { at: number; byHost: Map<string, HostMiss[]> } | undefined;

  constructor(private readonly ctx: ReconcilerContext) {}

  /** Whether the host has had a first reconcile (contact attempted, inventory listed if it answered). */
  contacted(hostName: string): boolean {
    return this.lastPhase.has(hostName);
  }

  async reconcile(key: string, signal: AbortSignal): Promise<ReconcileResult | undefined> {
    const ctx = this.ctx;
    let host = ctx.store.get("Host", key);
    // In use: a Host being deleted stays managed (heartbeat, fencing, stale-copy removal) while a
    // VM is placed on it, moving to it, or has a copy on it, and until it has been listed since
    // this controller started. Letting it go earlier would leave guests running on a host nobody
    // watches, and their VMs recreated elsewhere: two copies.
    const users = host?.metadata.deletionTimestamp ? this.usersOf(key, host) : [];
    if (!host || (host.metadata.deletionTimestamp && users.length === 0)) {
      ctx.fleet.removeCandidate(key);
      await ctx.fleet.removeConnection(key);
      this.lastPhase.delete(key);
      this.ledgers.delete(key);
      this.failing.delete(key);
      this.inventoryFailing.delete(key);
      this.reliabilityMarks.delete(key);
      this.wakeVMsOf(key);
      if (host) await ctx.store.removeFinalizer(host, FINALIZER);
      return undefined;
    }
    if (!host.metadata.deletionTimestamp && !(host.metadata.finalizers ?? []).includes(FINALIZER))
      host = await ctx.store.addFinalizer(host, FINALIZER);
    const intervalMs = (host.spec.heartbeat?.intervalSeconds ?? ctx.heartbeat.intervalMs / 1000) * 1000;
    let conn: HostConnection | undefined;
    let connectError: string | undefined;
    try {
      conn = await ctx.fleet.ensureConnection(
        key,
        host.spec.uri,
        host.spec.domainType ? { domainType: host.spec.domainType } : {},
      );
    } catch (e) {
      // No provider for this URI (or it could not be built): a fact to report, not to retry fast.
      connectError = e instanceof Error ? e.message : String(e);
    }
    const beatStarted = performance.now();
    const threshold = host.spec.heartbeat?.missedBeats ?? ctx.heartbeat.missedBeats;
    const target = (ctx.heartbeat.probeTarget ?? probeTarget)(host.spec.uri);
    const cfg = { threshold, intervalMs, probeable: target !== undefined };
    let verdict: HeartbeatVerdict | undefined;
    if (conn) {
      const prev = this.ledgers.get(key) ?? newLedger();
      const windowMs = beatWindowMs(prev, cfg, CALL_TIMEOUT_MS);
      const beat = await this.heartbeat(conn, signal, windowMs, target);
      const stalledMs = loopStalls().stalledMs(prev.lastAt ?? beat.startedAt, beat.at);
      const { ledger, counted } = recordBeat(prev, { ...beat, stalledMs }, cfg);
      this.ledgers.set(key, ledger);
      if (!counted) {
        ctx.logger.info(
          { host: key, stalledMs: Math.round(stalledMs), err: conn.lastError },
          "heartbeat failed while the controller was stalled: not counted as missed",
        );
      }
      verdict = judgeHeartbeat(ledger, cfg);
      conn.missedBeats = verdict.missed;
    }
    const connected = conn?.isConnected ?? false;
    // The instant of this pass's judgement (after the beat, before any fencing): the decision's
    // clock, so status.unreachableAt says when the host was judged dead, not when its fencing
    // had finished.
    const judgedAt = ctx.now();
    // No provider could be built for its URI: a fact about this controller, not about the host.
    const missedBeats = verdict?.missed ?? Number.MAX_SAFE_INTEGER;
    // Only a host that was up can be fenced: one never reached since it was added (a typo in its
    // URI, a daemon still starting) is Pending and runs nothing we started.
    const wasUp =
      !!conn?.lastHeartbeat ||
      !!host.status?.lastHeartbeat ||
      (host.status?.phase !== undefined && host.status.phase !== "Pending");
    // Switched off on purpose (consolidation): its silence is expected, never a reason to fence.
    const judged =
      !offOnPurpose(host) && !(connected && missedBeats === 0) && this.lastPhase.has(key) && wasUp;
    // Once fenced it stays so while it does not answer (a host switched off by its agent may still
    // answer at the network level, as a management NIC or a test bed's namespace does).
    const unreachable = judged && (!!verdict?.fenceable || host.status?.phase === "Fenced");
    const managementDown = judged && !unreachable && !!verdict?.managementDown;
    if (unreachable && conn?.isConnected) {
      // Judged dead: its connection is too, whatever TCP says (a host switched off sends no FIN,
      // so the socket looks open until keepalive gives up). Dropped now, so that nothing else
      // (recovery, restore) takes a dead host for one that answers. The next beat reconnects.
      ctx.logger.info({ host: key }, "host judged dead: its connection is dropped");
      void conn.provider.close().catch(() => undefined);
    }
    const fence = unreachable
      ? await fenceStep(host, ctx.store, ctx.fenceAgents, judgedAt, signal, (h) => {
          const c = ctx.fleet.connection(h);
          return !c?.isConnected || c.missedBeats > 0;
        })
      : managementDown
        ? ({
            state: "deferred",
            message: `libvirt does not answer, but the host does at the network level (connection accepted or refused): a management daemon down or restarting, its guests presumed running, so not fenced (fenced if this lasts ${MANAGEMENT_DOWN_FENCE_AFTER_MS / 60_000} min)`,
          } as const)
        : ({ state: "notNeeded" } as const);
    const draining = host.spec.maintenance || host.status?.consolidation?.state === "Draining";
    const drain = draining ? this.drainProgress(key) : undefined;
    const power = await powerStep(
      ctx,
      host,
      {
        connected: connected && missedBeats === 0,
        drained: !!drain && drain.remaining === 0 && !this.arriving(key),
      },
      signal,
    );
    for (const e of power.events)
      ctx.store.recordEvent({
        regarding: { kind: "Host", name: key, uid: host.metadata.uid },
        type: e.type,
        reason: e.reason,
        action: "Power",
        note: e.note,
      });
    const decision = decideHost(
      {
        host,
        connected,
        info: conn?.info,
        lastHeartbeat: conn?.lastHeartbeat,
        missedBeats,
        lastError: conn?.lastError ?? connectError,
        allocated: ctx.fleet.allocated(key),
        vmCount: ctx.fleet.vmCount(key),
        networks: [...(conn?.networks ?? [])],
        images: [...(conn?.images ?? [])],
        fence,
        ...(conn?.isConnected && this.inventoryFailing.has(key)
          ? {
              inventoryStale: {
                ...(this.inventoryFailing.get(key) as { error: string; since: Date }),
                listedAt: conn.inventoryAt,
              },
            }
          : {}),
        failoverStranded: ctx.failover?.strandedByHost.get(key),
        ...(drain ? { drain } : {}),
        consolidation: power.consolidation,
        ...(host.metadata.deletionTimestamp ? { deleting: { users } } : {}),
        reliabilityMark: this.reliabilityMarks.get(key),
        deadlineMisses: this.missesOf(key),
        usage: conn?.usage,
      },
      judgedAt,
    );
    if (decision.allocatable) {
      ctx.fleet.setCandidate({
        name: key,
        labels: host.metadata.labels ?? {},
        failureDomain: host.spec.failureDomain,
        ready: decision.ready,
        schedulable: decision.schedulable,
        allocatable: decision.allocatable,
        mtbfSeconds: decision.status.reliability?.mtbfSeconds,
        measured: measuredUse(
          decision.status.usage,
          conn?.info?.cpus,
          judgedAt,
          ctx.inventoryIntervalMs,
          conn?.usage ? conn.allocatedAtSample : undefined,
        ),
        ...(decision.avoidedUntil
          ? {
              avoided: `VMs missed bring-up deadlines here (${decision.status.deadlines?.misses} in the last hour): avoided until ${decision.avoidedUntil.toISOString()}`,
            }
          : {}),
      });
    }
    // Status first: the VMs woken below read the host's phase from the store.
    if (!jsonEqual(host.status ?? {}, decision.status)) {
      const wasInUse = host.status?.conditions?.some((c) => c.type === "InUse" && c.status === "True");
      await ctx.store.updateStatus(host, decision.status);
      if (users.length > 0 && !wasInUse)
        ctx.store.recordEvent({
          regarding: { kind: "Host", name: key, uid: host.metadata.uid },
          type: "Warning",
          reason: "InUse",
          action: "Delete",
          note: hostInUseMessage(users),
        });
    }
    // Only once written: a failed write leaves the span to the next reconcile, not lost.
    if (decision.reliabilityMark) this.reliabilityMarks.set(key, decision.reliabilityMark);
    else this.reliabilityMarks.delete(key);
    const before = this.lastPhase.get(key);
    // Seen, answering or judged down: placement no longer waits for it. Pending (never reached
    // since this controller started: a daemon still starting, a slow first connection) is not
    // seen; placement waits for it, a bounded time (fleet.ts placementHold).
    if (decision.phase !== "Pending" && ctx.fleet.markObserved(key)) this.wakeUnplaced();
    if (before !== decision.phase) {
      this.lastPhase.set(key, decision.phase);
      if (before !== undefined || decision.phase !== "Pending") {
        const why =
          decision.phase === "Fenced" || decision.phase === "Fencing" || decision.phase === "Unreachable"
            ? fence
            : undefined;
        ctx.store.recordEvent({
          regarding: { kind: "Host", name: key, uid: host.metadata.uid },
          type: decision.phase === "Ready" || decision.phase === "Maintenance" ? "Normal" : "Warning",
          reason: `Host${decision.phase}`,
          action: decision.phase === "Fenced" ? "Fence" : "Heartbeat",
          note: `${before ?? "new"} -> ${decision.phase}${why && why.state !== "notNeeded" ? `: ${why.message}` : !decision.ready && (conn?.lastError ?? connectError) ? `: ${conn?.lastError ?? connectError}` : ""}`,
        });
      }
      if (decision.phase === "Fenced")
        ctx.metrics.fencing.inc({ result: fence.state === "fenced" ? fence.how : "agent" });
      if (decision.phase === "Fencing") ctx.metrics.fencing.inc({ result: "failed" });
      this.wakeVMsOf(key);
      for (const n of ctx.store.list("VirtualNetwork"))
        ctx.enqueue("VirtualNetwork", `${n.metadata.namespace ?? "default"}/${n.metadata.name}`);
      if (decision.ready) this.wakeUnplaced();
    }
    // Emptying starts (or stops): its VMs look again at once.
    if (power.consolidation?.state !== host.status?.consolidation?.state) this.wakeVMsOf(key);
    if (power.again) return { requeueAfterMs: 0 };
    if (power.consolidation?.state === "PoweredOff") return { requeueAfterMs: Math.max(intervalMs, 10_000) };
    if (decision.phase === "Fencing") return { requeueAfterMs: 5_000 };
    // Beats keep their cadence: a beat that waited for its deadline is not followed by a full
    // interval more, so N missed beats take about N intervals.
    const elapsed = performance.now() - beatStarted;
    return { requeueAfterMs: conn ? Math.max(0, intervalMs - elapsed) : Math.max(intervalMs, 30_000) };
  }

  /**
   * One beat: connect (or ping) within its window (heartbeat.ts's beatWindowMs), then host info and the inventory when due
   * with a longer budget. A beat that does not answer within its window fails; before that is
   * concluded the loop processes queued I/O once, so a reply that arrived while the controller
   * was stalled counts (whether a failure counts as missed is heartbeat.ts's rule). A beat after a
   * failed one probes the host at the network level alongside (reachability.ts), and so does a
   * beat that fails early (refused, reset) in what is left of its window.
   */
  private async heartbeat(
    conn: HostConnection,
    reconcileSignal: AbortSignal,
    windowMs: number,
    target: ProbeTarget | undefined,
  ): Promise<Omit<Beat, "stalledMs">> {
    const ctx = this.ctx;
    const startedAt = performance.now();
    const now = ctx.now();
    const signal = AbortSignal.any([reconcileSignal, AbortSignal.timeout(CALL_TIMEOUT_MS)]);
    // A host answering again after failed beats gets a full inventory first: stale copies of
    // VMs recovered elsewhere are destroyed before it can be reported Ready.
    let fresh = conn.missedBeats > 0 || this.failing.has(conn.hostName);
    // Aborted with the reconcile, or once they are no longer wanted (one listener per beat).
    const probeStop = new AbortController();
    const contactStop = new AbortController();
    const onAbort = () => {
      probeStop.abort();
      contactStop.abort();
    };
    reconcileSignal.addEventListener("abort", onAbort, { once: true });
    let probe =
      target && (fresh || !conn.isConnected) ? probeHost(target, windowMs, probeStop.signal) : undefined;
    try {
      let contact: Promise<void>;
      if (!conn.isConnected) {
        // Shared attempt, not tied to this beat: a slow first connection still completes and is
        // picked up by the next beat (bounded by the provider's own timeouts).
        contact = conn.connect();
        fresh = true;
      } else {
        contact = conn.provider.ping(contactStop.signal);
      }
      if (!(await settlesWithin(contact, windowMs))) {
        contactStop.abort();
        throw new ProviderError("Timeout", conn.hostName, "heartbeat", `no answer within ${windowMs} ms`);
      }
      probeStop.abort();
      if (
        fresh ||
        !conn.info ||
        (conn.lastHeartbeat && now.getTime() - conn.lastHeartbeat.getTime() > INFO_REFRESH_MS)
      ) {
        conn.info = await conn.provider.hostInfo(signal);
      }
      // The host answered: that is the beat. The inventory is listed after it, and its failure
      // is reported on its own (InventoryStale), never as a missed beat.
      conn.lastHeartbeat = ctx.now();
      conn.lastError = undefined;
      this.failing.delete(conn.hostName);
      if (
        fresh ||
        this.inventoryFailing.has(conn.hostName) ||
        !conn.inventoryAt ||
        now.getTime() - conn.inventoryAt.getTime() >= ctx.inventoryIntervalMs
      ) {
        await this.listInventory(conn, signal);
        // On the inventory's cadence, not every beat: a utilisation over a few seconds is noise,
        // and the call is one more round trip per host per beat.
        await this.sampleUsage(conn, signal);
      }
      // Domain events sent while we were not connected are lost: look at this host's VMs again.
      if (fresh) this.wakeVMsOf(conn.hostName);
      return { startedAt, at: performance.now(), answered: true, network: "none" };
    } catch (e) {
      this.failing.add(conn.hostName);
      conn.lastError = e instanceof Error ? e.message : String(e);
      if (!isProviderError(e))
        ctx.logger.warn({ host: conn.hostName, err: conn.lastError }, "heartbeat failed");
      const left = windowMs - (performance.now() - startedAt);
      if (!probe && target && left >= windowMs / 4) probe = probeHost(target, left, probeStop.signal);
      const network = probe ? await probe : "none";
      ctx.logger.debug(
        { host: conn.hostName, missedBeats: conn.missedBeats, err: conn.lastError, network },
        "heartbeat failed",
      );
      return { startedAt, at: performance.now(), answered: false, network };
    } finally {
      reconcileSignal.removeEventListener("abort", onAbort);
    }
  }

  /**
   * Which of the base images VMs ask for this host's pools hold, and each pool's free space:
   * placement then avoids a host that lacks them. A failure leaves the last view in place.
   */
  private async refreshStorage(conn: HostConnection, signal: AbortSignal): Promise<void> {
    // Images of the effective disks: a class's default disks are asked for by its VMs.
    const wanted = this.ctx.fleet.wantedImages(() => {
      const classes = listedClasses(this.ctx.store);
      return this.ctx.store.list("VirtualMachine").flatMap((v) => vmImages(effectiveOrDeclared(classes, v)));
    });
    try {
      const present = new Set<string>();
      for (const img of wanted) {
        const i = img.indexOf("/");
        if (await conn.provider.getVolume(img.slice(0, i), img.slice(i + 1), signal)) present.add(img);
      }
      const pools = await conn.provider.listPools(signal);
      const gained = [...present].some((img) => !conn.images.has(img));
      conn.images.clear();
      for (const img of present) conn.images.add(img);
      if (gained) {
        // A base image appeared (uploaded, pool refreshed): VMs waiting for it may go now.
        for (const v of this.ctx.store.list("VirtualMachine")) {
          const key = `${v.metadata.namespace ?? "default"}/${v.metadata.name}`;
          if (!this.ctx.fleet.assignment(key)) this.ctx.enqueue("VirtualMachine", key);
        }
      }
      conn.storage.poolFreeBytes.clear();
      for (const p of pools) if (p.active) conn.storage.poolFreeBytes.set(p.name, p.availableBytes);
      conn.storage.checkedImages.clear();
      for (const img of wanted) conn.storage.checkedImages.add(img);
    } catch (e) {
      this.ctx.logger.warn({ host: conn.hostName, err: String(e) }, "storage view not refreshed");
    }
  }

  /**
   * Take a node-statistics sample; with the one before, it gives the host's usage (usage.ts).
   * A failure (or a host without the statistics: Unsupported) leaves the last usage in place
   * and is only logged: it is no missed beat and no reason to stop placing there.
   */
  private async sampleUsage(conn: HostConnection, signal: AbortSignal): Promise<void> {
    try {
      const sample = { stats: await conn.provider.nodeStats(signal), at: this.ctx.now() };
      const usage = conn.nodeSample ? usageBetween(conn.nodeSample, sample) : undefined;
      conn.nodeSample = sample;
      if (usage) {
        conn.usage = usage;
        conn.allocatedAtSample = { ...this.ctx.fleet.allocated(conn.hostName) };
      }
    } catch (e) {
      this.ctx.logger.warn({ host: conn.hostName, err: String(e) }, "node statistics not sampled");
    }
  }

  /**
   * refreshInventory, its failure caught: the last good listing stays (stale, never emptied), the
   * host is marked InventoryStale, and the next beat lists again.
   */
  private async listInventory(conn: HostConnection, signal: AbortSignal): Promise<void> {
    const host = conn.hostName;
    const ctx = this.ctx;
    try {
      await this.refreshInventory(conn, signal);
    } catch (e) {
      const error = e instanceof Error ? e.message : String(e);
      const prev = this.inventoryFailing.get(host);
      this.inventoryFailing.set(host, { error, since: prev?.since ?? ctx.now() });
      ctx.logger.warn(
        { host, err: error, listedAt: conn.inventoryAt?.toISOString() },
        "inventory not refreshed: the last listing is kept, marked stale, and listed again next beat",
      );
      if (!prev)
        ctx.store.recordEvent({
          regarding: { kind: "Host", name: host },
          type: "Warning",
          reason: "InventoryStale",
          action: "List",
          note: `listing the domains of ${host} failed (${error}): the last listing is kept${conn.inventoryAt ? ` (from ${conn.inventoryAt.toISOString()})` : " (none yet)"}; the host answers, so its guests are presumed running and it is not fenced`,
        });
      return;
    }
    if (this.inventoryFailing.delete(host))
      ctx.store.recordEvent({
        regarding: { kind: "Host", name: host },
        type: "Normal",
        reason: "InventoryListed",
        action: "List",
        note: `the domains of ${host} are listed again`,
      });
  }

  private async refreshInventory(conn: HostConnection, signal: AbortSignal): Promise<void> {
    const ctx = this.ctx;
    const domains = await conn.provider.listDomains(signal);
    ctx.fleet.setInventory(conn.hostName, domains, ctx.now());
    await this.refreshStorage(conn, signal);
    for (const d of domains) {
      if (!d.ownership) continue;
      const key = `${d.ownership.namespace}/${d.ownership.name}`;
      const vm = ctx.store.get("VirtualMachine", key);
      if (!vm) {
        await this.removeDomain(
          conn,
          d.name,
          key,
          {
            reason: "OrphanRemoved",
            note: `domain ${d.name} belonged to VirtualMachine ${key}, which no longer exists: destroyed and undefined (volumes kept)`,
          },
          signal,
        );
        continue;
      }
      const assigned = ctx.fleet.assignment(key)?.host ?? vm.status?.host;
      if (assigned === conn.hostName) continue;
      // A copy somewhere other than where the VM is assigned (or an unassigned VM's domain),
      // judged by the one rule (copies.ts): stale against an assignment to a host not confirmed
      // down; never the copy a migration brings here; the only running copy of a VM whose host
      // is down is the VM's to follow. Anything else is the VM reconciler's to judge.
      const m = vm.status?.migration;
      const verdict = resolveCopies({
        assigned,
        assignedHealth: assigned ? hostHealth(ctx, assigned) : undefined,
        copies: [{ host: conn.hostName, running: mayRun(d.state.state), reachable: true }],
        incoming: [ctx.fleet.incomingHost(key), m?.result === "InProgress" ? m.targetHost : undefined],
      });
      if (verdict.stale.some((c) => c.host === conn.hostName && c.running)) {
        // The VM was recovered elsewhere while this host was gone: this copy is stale and must
        // not run. Destroyed here, before the host is reported Ready again.
        await this.removeDomain(
          conn,
          d.name,
          key,
          {
            reason: "StaleCopyDestroyed",
            note: `domain ${d.name} runs on ${assigned} now (recovered while this host was gone): the stale copy here was destroyed`,
          },
          signal,
        );
      } else ctx.enqueue("VirtualMachine", key);
    }
  }

  /** A domain that must not be on this host: destroyed and undefined (volumes kept), and said so. */
  private async removeDomain(
    conn: HostConnection,
    domain: string,
    key: string,
    event: { reason: "StaleCopyDestroyed" | "OrphanRemoved"; note: string },
    signal: AbortSignal,
  ): Promise<void> {
    await conn.provider.destroyDomain(domain, signal).catch((e) => {
      if (!isProviderError(e, "InvalidState") && !isProviderError(e, "NotFound")) throw e;
    });
    await conn.provider.undefineDomain(domain, signal).catch((e) => {
      if (!isProviderError(e, "NotFound")) throw e;
    });
    this.ctx.fleet.noteDomain(conn.hostName, key, undefined);
    this.ctx.store.recordEvent({
      regarding: { kind: "Host", name: conn.hostName },
      type: "Warning",
      action: "Destroy",
      ...event,
    });
  }

  /**
   * What keeps a Host being deleted: the VMs (being deleted or not: their clean-up needs the host)
   * placed on it, moving to it, or with a running copy in its inventory, as namespace/name; and,
   * while it has not been listed since this controller started and may hold copies nobody has
   * seen, the host itself. A host fenced or switched off holds nothing that runs; one never reached
   * ran nothing we started.
   */
  private usersOf(hostName: string, host: Host): string[] {
    const { store, fleet } = this.ctx;
    const phase = host.status?.phase;
    // Fenced or switched off: nothing runs there, whatever its last listing said.
    const off = phase === "Fenced" || phase === "PoweredOff";
    const users: string[] = [];
    for (const vm of store.list("VirtualMachine")) {
      const key = `${vm.metadata.namespace ?? "default"}/${vm.metadata.name}`;
      const st = vm.status;
      if (
        fleet.assignment(key)?.host === hostName ||
        st?.host === hostName ||
        fleet.incomingHost(key) === hostName ||
        (st?.migration?.result === "InProgress" && st.migration.targetHost === hostName) ||
        (!off && fleet.copiesOf(key).some((c) => c.host === hostName && c.domain.state.state !== "shutoff"))
      )
        users.push(key);
    }
    users.sort();
    const neverUp = !host.status?.lastHeartbeat && (phase === undefined || phase === "Pending");
    if (users.length === 0 && !neverUp && !off && !fleet.connection(hostName)?.inventoryAt)
      users.push(`(its domains, not listed since this controller started)`);
    return users;
  }

  /** Whether some VM is migrating to this host now. */
  private arriving(hostName: string): boolean {
    for (const p of this.ctx.fleet.placedVMs())
      if (p.host === hostName && this.ctx.fleet.assignment(p.key)?.host !== hostName) return true;
    return false;
  }

  /** What is left to move off a host being emptied: its running VMs, by how they fare. */
  private drainProgress(hostName: string): NonNullable<ObservedHost["drain"]> {
    const drain = { remaining: 0, migrating: 0, blocked: [] as string[] };
    for (const p of this.ctx.fleet.placedVMs()) {
      if (this.ctx.fleet.assignment(p.key)?.host !== hostName) continue;
      const st = this.ctx.store.get("VirtualMachine", p.key)?.status;
      if (st?.phase === "Migrating") {
        drain.migrating++;
        drain.remaining++;
        continue;
      }
      // Everything but a VM at rest keeps the host from being worked on or switched off: one
      // just placed here (not started yet) would be lost with the host.
      if (atRest(st?.phase)) continue;
      drain.remaining++;
      const blocked = st?.conditions?.find((c) => c.type === "Degraded" && c.reason === "DrainBlocked");
      if (blocked) drain.blocked.push(`${p.key}: ${blocked.message}`);
    }
    return drain;
  }

  /**
   * Enqueue the host's VMs in placement order (scheduler/placement.ts placementOrder): highest
   * availability priority first, then the biggest first. The queue is FIFO, so after a host
   * failure the important VMs are recovered (and take the free capacity) first, and big VMs are
   * not stranded behind small ones.
   */
  wakeVMsOf(hostName: string): void {
    const { store, fleet } = this.ctx;
    const keys: { key: string; priority: number; request: Capacity }[] = [];
    const classes = listedClasses(store);
    for (const vm of fleet.placedVMs()) {
      if (vm.host !== hostName) continue;
      const declared = store.get("VirtualMachine", vm.key);
      const priority =
        (declared && effectiveOrDeclared(classes, declared))?.spec.availability?.priority ?? 100;
      const request = fleet.assignment(vm.key)?.request ?? { cpuMilli: 0, memoryBytes: 0 };
      keys.push({ key: vm.key, priority, request });
    }
    keys.sort(placementOrder);
    for (const k of keys) this.ctx.enqueue("VirtualMachine", k.key);
  }

  private missesOf(hostName: string): HostMiss[] {
    const now = performance.now();
    if (!this.misses || now - this.misses.at > MISSES_REFRESH_MS) {
      const byHost = new Map<string, HostMiss[]>();
      for (const m of missesByHost(this.ctx.store.list("VirtualMachine"))) {
        const list = byHost.get(m.host);
        if (list) list.push(m.miss);
        else byHost.set(m.host, [m.miss]);
      }
      this.misses = { at: now, byHost };
    }
    return this.misses.byHost.get(hostName) ?? [];
  }

  /** Coalesced: many hosts turning Ready at once wake the unplaced VMs once. */
  private wakeUnplaced(): void {
    if (this.wakeTimer) return;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      // In placement order (priority, then the biggest first), as after a host failure.
      const keys: { key: string; priority: number; request: Capacity }[] = [];
      const classes = listedClasses(this.ctx.store);
      for (const vm of this.ctx.store.list("VirtualMachine")) {
        const key = `${vm.metadata.namespace ?? "default"}/${vm.metadata.name}`;
        if (this.ctx.fleet.assignment(key)) continue;
        const effective = effectiveOrDeclared(classes, vm);
        keys.push({
          key,
          priority: effective.spec.availability?.priority ?? 100,
          request: requestOf(effective),
        });
      }
      keys.sort(placementOrder);
      for (const k of keys) this.ctx.enqueue("VirtualMachine", k.key);
    }, 50);
    this.wakeTimer.unref();
  }
}

/** The VM's effective spec; one waiting for its class as declared (its own reconcile says why). */
function effectiveOrDeclared(classes: ClassLookup, vm: VirtualMachine): VirtualMachine {
  return resolveVM(vm, classes).vm ?? vm;
}

/** A VM's size for ordering; a spec that cannot be read (its own reconcile says why) sorts last. */
function requestOf(vm: VirtualMachine): Capacity {
  try {
    return vmCapacity(vm);
  } catch {
    return { cpuMilli: 0, memoryBytes: 0 };
  }
}

export function hostKey(host: Host): string {
  return host.metadata.name;
}
