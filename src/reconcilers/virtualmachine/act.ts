/**
 * Execute a VM decision: a thin executor over the provider and the store. Each action is
 * idempotent (a crash between two actions is repaired by the next reconcile): "already off",
 * "already gone" and "already exists" count as done.
 */
import { parseQuantity } from "../../api/quantity.js";
import { API_VERSION, type VirtualMachine } from "../../api/types.js";
import { type HypervisorProvider, isProviderError, ProviderError } from "../../providers/types.js";
import type { ReconcilerContext } from "../context.js";
import { FINALIZER } from "../context.js";
import {
  type BringUpPhase,
  type BringUpProgress,
  DeadlineExceededError,
  PHASE_OF_ACTION,
  phaseStart,
} from "./deadlines.js";
import { CRASHLOOP_RESTORE_LABEL } from "./decide.js";
import { DEFAULT_POOL, diskVolumeName } from "./render.js";
import type { ObservedVM, VMAction, VMDecision } from "./types.js";

function providerFor(ctx: ReconcilerContext, host: string): HypervisorProvider {
  const conn = ctx.fleet.connection(host);
  if (!conn) throw new ProviderError("Unreachable", host, "connect", "no connection to this host");
  return conn.provider;
}

async function tolerate(
  p: Promise<unknown>,
  ...codes: Parameters<typeof isProviderError>[1][]
): Promise<void> {
  try {
    await p;
  } catch (e) {
    if (codes.some((c) => isProviderError(e, c))) return;
    throw e;
  }
}

/** Create each disk's volume on the host when missing: a linked clone, a full copy, or blank. */
async function provisionDisks(
  ctx: ReconcilerContext,
  vm: VirtualMachine,
  domain: string,
  host: string,
  signal: AbortSignal,
): Promise<void> {
  const provider = providerFor(ctx, host);
  for (const disk of vm.spec.disks ?? []) {
    if (disk.source?.volume) {
      const pool = disk.source.volume.pool ?? DEFAULT_POOL;
      if (!(await provider.getVolume(pool, disk.source.volume.name, signal))) {
        throw new ProviderError(
          "NotFound",
          host,
          "provisionDisks",
          `volume ${pool}/${disk.source.volume.name} missing`,
        );
      }
      continue;
    }
    const image = disk.source?.image;
    const pool = image?.pool ?? DEFAULT_POOL;
    const name = diskVolumeName(domain, disk.name);
    if (await provider.getVolume(pool, name, signal)) continue;
    const size = disk.size ? parseQuantity(disk.size) : 0;
    if (!image) {
      await provider.createVolume(pool, { name, capacityBytes: size, format: "qcow2" }, signal);
      continue;
    }
    const base = await provider.getVolume(pool, image.name, signal);
    if (!base) {
      throw new ProviderError(
        "NotFound",
        host,
        "provisionDisks",
        `base image ${pool}/${image.name} is not present on this host (disk ${disk.name})`,
      );
    }
    const capacityBytes = Math.max(size, base.capacityBytes);
    const from = { pool, volume: image.name };
    await provider.createVolume(
      pool,
      image.clone === "full"
        ? { name, capacityBytes, format: "qcow2", copyFrom: from }
        : { name, capacityBytes, format: "qcow2", backing: from },
      signal,
    );
  }
}

/**
 * Delete the volumes the decision names (the disks whose deletionPolicy is Delete; see
 * render.disksOnDeletion). Never a base image: no disk's volume is one.
 */
async function deleteDisks(
  ctx: ReconcilerContext,
  volumes: { pool: string; name: string }[],
  host: string,
  signal: AbortSignal,
): Promise<void> {
  const provider = providerFor(ctx, host);
  for (const v of volumes) await tolerate(provider.deleteVolume(v.pool, v.name, signal), "NotFound");
}

/**
 * The store refused a create because the name is taken: a Kubernetes 409 on create, or the
 * file store's check. Our names are derived from what the object is for, so the taken name is
 * the object an earlier try created (the cache had not shown it yet): adopt it.
 */
function alreadyExists(e: unknown, exists: () => boolean): boolean {
  const code = (e as { code?: unknown } | undefined)?.code;
  return code === 409 || exists();
}

/** VMMigration.timeoutSeconds unless set. */
const DEFAULT_MIGRATION_TIMEOUT_S = 600;

/**
 * Run the decision's actions in order. `progress.current` says how far a bring-up got (the phase
 * under way and since when) for the status written should an action fail; each bring-up phase
 * runs under its deadline (what is left of it, when a retry continues the phase).
 */
export async function actVM(
  ctx: ReconcilerContext,
  o: ObservedVM,
  decision: VMDecision,
  signal: AbortSignal,
  progress: { current?: BringUpProgress } = {},
): Promise<VirtualMachine> {
  let vm = o.vm;
  const name = o.desired.name;
  const request = o.placement.request;
  // Reservations first and synchronously: no await may separate a placement from its reservation.
  const assignment = {
    namespace: request.namespace,
    labels: vm.metadata.labels ?? {},
    request: request.request,
  };
  for (const a of decision.actions) {
    if (a.type === "reserve") {
      ctx.fleet.assign(o.key, { host: a.host, ...assignment });
      if (request.strategy === "roundRobin") ctx.fleet.noteRoundRobin(a.host);
    }
    if (a.type === "reserveIncoming") ctx.fleet.reserveIncoming(o.key, { host: a.host, ...assignment });
  }
  const debug = ctx.logger.isLevelEnabled("debug");
  const bringUp = decision.bringUp;
  for (const a of decision.actions) {
    const t = debug ? performance.now() : 0;
    if (
      bringUp &&
      (a.type === "provisionDisks" || a.type === "define" || a.type === "start") &&
      a.host === bringUp.host
    )
      await timed(a, PHASE_OF_ACTION[a.type], bringUp);
    else await runAction(a, signal);
    if (debug)
      ctx.logger.debug({ key: o.key, action: a.type, ms: Math.round(performance.now() - t) }, "action done");
  }
  return vm;

  /** A bring-up action, under what is left of its phase's deadline. */
  async function timed(
    a: VMAction,
    phase: BringUpPhase,
    b: NonNullable<VMDecision["bringUp"]>,
  ): Promise<void> {
    const now = ctx.now();
    const current = progress.current;
    const since = current?.phase === phase ? current.since : phaseStart(b.prior, b.host, phase, now);
    progress.current = { phase, since };
    const left = b.deadlinesMs[phase] - (now.getTime() - since.getTime());
    if (left <= 0) throw new DeadlineExceededError(phase, b.host, b.deadlinesMs[phase]);
    const deadline = AbortSignal.timeout(left);
    const both = AbortSignal.any([signal, deadline]);
    try {
      await runAction(a, both);
    } catch (e) {
      if (deadline.aborted && !signal.aborted)
        throw new DeadlineExceededError(phase, b.host, b.deadlinesMs[phase]);
      throw e;
    }
  }

  async function runAction(a: VMAction, signal: AbortSignal): Promise<void> {
    switch (a.type) {
      case "reserve":
      case "reserveIncoming":
        return;
      case "release":
        ctx.fleet.release(o.key);
        return;
      case "releaseIncoming":
        ctx.fleet.releaseIncoming(o.key);
        return;
      case "forgetMigration":
        ctx.migrations?.forget(o.key);
        return;
      case "migrate": {
        if (!ctx.migrations) throw new Error("no migration runner in this controller");
        ctx.migrations.start({
          vmKey: o.key,
          domain: name,
          from: a.from,
          to: a.to,
          kind: a.kind,
          volumes: o.desired.disks.map((d) => ({ pool: d.pool, name: d.volume })),
          timeoutSeconds: vm.spec.migration?.timeoutSeconds ?? DEFAULT_MIGRATION_TIMEOUT_S,
          ...(vm.spec.migration?.bandwidthMiBps ? { bandwidthMiBps: vm.spec.migration.bandwidthMiBps } : {}),
          assignment,
        });
        return;
      }
      case "addFinalizer":
        // The store's object carries the declared spec; what is acted on is the effective one
        // (its class merged in: its disks, say), so only the metadata is taken from the store.
        vm = { ...(await ctx.store.addFinalizer(vm, FINALIZER)), spec: vm.spec };
        return;
      case "removeFinalizer":
        await ctx.store.removeFinalizer(vm, FINALIZER);
        return;
      case "provisionDisks":
        await provisionDisks(ctx, vm, name, a.host, signal);
        return;
      case "define":
        await providerFor(ctx, a.host).defineDomain(o.desired, signal);
        return;
      case "start": {
        const provider = providerFor(ctx, a.host);
        // Per-host start slots, taken in queue (priority) order: many QEMUs starting at once on
        // one host slow each other down and the important VMs would finish last like the rest.
        const slots = ctx.fleet.connection(a.host)?.startSlots;
        const start = () => tolerate(provider.startDomain(name, signal), "InvalidState");
        await (slots ? slots(start) : start());
        if (a.reason !== "Start") ctx.metrics.vmRestarts.inc({ reason: a.reason });
        if (a.reason === "SpecChange") ctx.fleet.assign(o.key, { host: a.host, ...assignment });
        const state = await provider.getDomainState(name, signal);
        ctx.fleet.noteDomain(a.host, o.key, {
          name,
          uuid: o.desired.uuid ?? "",
          state: state ?? { state: "running", reason: "booted" },
          ownership: o.desired.ownership,
          vcpus: o.desired.vcpus,
          memoryBytes: o.desired.memoryBytes,
          persistent: true,
        });
        return;
      }
      case "updateLive": {
        const provider = providerFor(ctx, a.host);
        const { vcpus, memoryBytes, attach, detach, attachDisks, detachDisks } = a.change;
        if (vcpus !== undefined || memoryBytes !== undefined) {
          const size: { vcpus?: number; memoryBytes?: number } = {};
          if (vcpus !== undefined) size.vcpus = vcpus;
          if (memoryBytes !== undefined) size.memoryBytes = memoryBytes;
          await provider.resizeDomain(name, size, signal);
          // The placement ledger holds what the VM has now (written by VM actions only).
          ctx.fleet.assign(o.key, { host: a.host, ...assignment });
        }
        // Already gone / already there (a retry after a crash between two of these): done.
        for (const nic of detach ?? [])
          await tolerate(provider.detachInterface(name, nic, signal), "NotFound");
        for (const d of detachDisks ?? []) await tolerate(provider.detachDisk(name, d, signal), "NotFound");
        for (const nic of attach ?? []) await provider.attachInterface(name, nic, signal);
        for (const d of attachDisks ?? []) await provider.attachDisk(name, d, signal);
        return;
      }
      case "shutdown":
        await tolerate(providerFor(ctx, a.host).shutdownDomain(name, signal), "InvalidState", "NotFound");
        return;
      case "resume":
        await tolerate(providerFor(ctx, a.host).resumeDomain(name, signal), "InvalidState");
        return;
      case "destroy":
        await tolerate(providerFor(ctx, a.host).destroyDomain(name, signal), "InvalidState", "NotFound");
        return;
      case "undefine":
        await tolerate(providerFor(ctx, a.host).undefineDomain(name, signal), "NotFound");
        ctx.fleet.noteDomain(a.host, o.key, undefined);
        return;
      case "deleteDisks":
        await deleteDisks(ctx, a.volumes, a.host, signal);
        return;
      case "restoreSnapshot": {
        const ns = vm.metadata.namespace ?? "default";
        const key = `${ns}/${a.name}`;
        // A group's members ask for the same restore, and a retry asks again: the first creates it.
        if (ctx.store.get("VirtualMachineRestore", key)) return;
        try {
          await ctx.store.create({
            apiVersion: API_VERSION,
            kind: "VirtualMachineRestore",
            metadata: {
              name: a.name,
              namespace: ns,
              labels: a.labels ?? { [CRASHLOOP_RESTORE_LABEL]: vm.metadata.name },
            },
            spec: { snapshotName: a.snapshot },
          });
        } catch (e) {
          if (!alreadyExists(e, () => !!ctx.store.get("VirtualMachineRestore", key))) throw e;
          ctx.logger.info({ key: o.key, restore: a.name }, "restore already exists: adopted");
        }
        return;
      }
    }
  }
}
