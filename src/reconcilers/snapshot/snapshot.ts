/**
 * The VirtualMachineSnapshot reconciler: takes a snapshot once, records where its data is, and
 * deletes the data when the resource is deleted (finalizer).
 *
 * - Storage: internal qcow2 snapshots, made by libvirt in the VM's disk images. On shared storage
 *   they survive the host and can be restored on another one (the restore imports the metadata).
 *   libvirt cannot take an internal disk-only snapshot of a running domain, so a running VM's
 *   snapshot always holds its memory too; type `disk` restores then cold-boot from the disks.
 * - Group snapshots (spec.group): every running member is paused, each is snapshotted (at most
 *   maxParallelPerHost at once per host), then all are resumed; the pause window is recorded. If
 *   any member fails, the members already taken are deleted: a partial group is not a snapshot.
 * - Once Succeeded or Failed a snapshot is immutable. One that cannot start (VM not placed, host
 *   unreachable) waits up to PENDING_DEADLINE_MS, then fails.
 * - Deletion waits for restores that still need the snapshot, and for the hosts holding its data.
 */

import type {
  SnapshotMember,
  VirtualMachine,
  VirtualMachineSnapshot,
  VirtualMachineSnapshotStatus,
} from "../../api/types.js";
import type { ReconcileResult, Reconciler } from "../../controller/outcome.js";
import { isProviderError } from "../../providers/types.js";
import { FINALIZER, type ReconcilerContext } from "../context.js";
import type { HostConnection } from "../fleet.js";
import { renderDomain } from "../virtualmachine/render.js";
import { effectiveVM, storeClasses } from "../vm-class.js";
import {
  domainOf,
  hostOf,
  liveConnection,
  restoreHolding,
  snapshotTargets,
  writeReadyStatus,
} from "./members.js";

export const PENDING_DEADLINE_MS = 5 * 60_000;
const DEFAULT_PARALLEL_PER_HOST = 2;

interface Target {
  vm: VirtualMachine;
  host: string;
  conn: HostConnection;
}

export class VirtualMachineSnapshotReconciler implements Reconciler {
  readonly name = "virtualmachinesnapshot";

  constructor(private readonly ctx: ReconcilerContext) {}

  async reconcile(key: string, signal: AbortSignal): Promise<ReconcileResult | undefined> {
    const { store, fleet } = this.ctx;
    let snap = store.get("VirtualMachineSnapshot", key);
    if (!snap) return undefined;
    if (snap.metadata.deletionTimestamp) return this.finalize(snap, signal);
    if (!(snap.metadata.finalizers ?? []).includes(FINALIZER)) {
      snap = await store.addFinalizer(snap, FINALIZER);
    }
    const phase = snap.status?.phase;
    if (phase === "Succeeded" || phase === "Failed") return undefined;

    const { vms, error } = snapshotTargets(store, snap);
    if (error) {
      await this.finish(snap, { phase: "Failed", error }, "VMNotFound");
      return undefined;
    }
    const targets: Target[] = [];
    const waiting: string[] = [];
    for (const vm of vms) {
      const host = hostOf(fleet, vm);
      const live = liveConnection(fleet, host);
      if ("reason" in live) waiting.push(`${vm.metadata.name}: ${live.reason}`);
      else targets.push({ vm: effectiveVM(storeClasses(store), vm), host: host as string, conn: live.conn });
    }
    // Placed is not defined yet: a snapshot declared with its VM waits for the domain to exist.
    for (const t of targets)
      if (!(await t.conn.provider.getDomainState(domainOf(t.vm), signal)))
        waiting.push(`${t.vm.metadata.name}: not defined on ${t.host} yet`);
    if (waiting.length > 0) {
      const age = this.ctx.now().getTime() - new Date(snap.metadata.creationTimestamp ?? 0).getTime();
      const message = `cannot snapshot yet: ${waiting.join("; ")}`;
      if (age > PENDING_DEADLINE_MS) {
        await this.finish(snap, { phase: "Failed", error: message }, "Unavailable");
        return undefined;
      }
      await this.write(snap, { ...(snap.status ?? {}), phase: "Pending" }, "Waiting", message, false);
      return { requeueAfterMs: 5_000 };
    }

    // One thing at a time on a VM's domain: a restore reverting it (destroying, redefining,
    // resuming) under a snapshot breaks the snapshot ("Unable to read from monitor"), and the
    // restore would revert to a state the snapshot then records half of. Checked last, just
    // before InProgress is written (the restore makes the same check against snapshots).
    const restoring = targets
      .map((t) => [t.vm.metadata.name, restoreHolding(store, t.vm)] as const)
      .filter((x): x is readonly [string, string] => x[1] !== undefined);
    if (restoring.length > 0) {
      const message = `waiting for ${restoring.map(([v, r]) => `restore ${r} of ${v}`).join(", ")} to finish`;
      await this.write(snap, { ...(snap.status ?? {}), phase: "Pending" }, "Waiting", message, false);
      return { requeueAfterMs: 2_000 };
    }
    snap = await this.write(snap, { ...(snap.status ?? {}), phase: "InProgress" }, "InProgress", "", false);
    const type = snap.spec.type ?? "disk";
    const group = snap.spec.group !== undefined;
    const policy = snap.spec.policy
      ? store.get("SnapshotPolicy", `${snap.metadata.namespace}/${snap.spec.policy}`)
      : undefined;
    const perHost = policy?.spec.maxParallelPerHost ?? DEFAULT_PARALLEL_PER_HOST;
    const started = this.ctx.now();
    const t0 = performance.now();
    try {
      const taken = await takeSnapshot(
        snap,
        targets,
        { memory: type === "disk+memory", group, perHost },
        signal,
      );
      const seconds = (performance.now() - t0) / 1000;
      const sizeBytes = taken.members.reduce((n, m) => n + (m.sizeBytes ?? 0), 0);
      const single = taken.members.length === 1 ? taken.members[0] : undefined;
      await this.finish(
        snap,
        {
          phase: "Succeeded",
          readyToUse: true,
          creationTime: started.toISOString(),
          members: taken.members,
          sizeBytes,
          ...(single
            ? {
                host: single.host,
                location: `${single.host}: ${(single.disks ?? []).join(", ")} @ ${single.snapshotName}`,
              }
            : { location: `${taken.members.length} members` }),
          ...(group ? { pauseWindowSeconds: taken.pauseWindowSeconds } : {}),
          durationSeconds: Math.round(seconds * 1e6) / 1e6,
          healthy: vms.every((v) => healthyPhase(v)),
        },
        "Taken",
      );
      this.ctx.metrics.snapshotSeconds.observe({ consistency: group ? "group" : "vm" }, seconds);
      if (group) this.ctx.metrics.snapshotPauseSeconds.observe(taken.pauseWindowSeconds);
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      await this.finish(snap, { phase: "Failed", error: message }, "SnapshotFailed");
    }
    return undefined;
  }

  /** Phase, Ready condition, event, metric and a wake-up for the owning policy. */
  private async finish(
    snap: VirtualMachineSnapshot,
    status: VirtualMachineSnapshotStatus,
    reason: string,
  ): Promise<void> {
    const ok = status.phase === "Succeeded";
    await this.write(
      snap,
      { ...(snap.status ?? {}), ...status },
      reason,
      ok ? `snapshot taken: ${status.location}` : (status.error ?? ""),
      ok,
    );
    const ns = snap.metadata.namespace ?? "default";
    this.ctx.store.recordEvent({
      regarding: {
        kind: "VirtualMachineSnapshot",
        namespace: ns,
        name: snap.metadata.name,
        uid: snap.metadata.uid,
      },
      type: ok ? "Normal" : "Warning",
      reason: ok ? "SnapshotTaken" : "SnapshotFailed",
      action: "Snapshot",
      note: ok
        ? `${status.members?.length ?? 0} VM(s), ${status.sizeBytes ?? 0} bytes`
        : (status.error ?? ""),
    });
    const policy = snap.spec.policy ? `${ns}/${snap.spec.policy}` : "none";
    this.ctx.metrics.snapshots.inc({ policy, result: ok ? "succeeded" : "failed" });
    if (snap.spec.policy) this.ctx.enqueue("SnapshotPolicy", `${ns}/${snap.spec.policy}`);
  }

  private write(
    snap: VirtualMachineSnapshot,
    status: VirtualMachineSnapshotStatus,
    reason: string,
    message: string,
    ready: boolean,
  ): Promise<VirtualMachineSnapshot> {
    return writeReadyStatus(
      this.ctx.store,
      snap,
      { ...status, readyToUse: ready },
      { ok: ready, reason, message },
      this.ctx.now(),
    );
  }

  /** Delete the snapshot's data from the VMs' disks, then let the resource go. */
  private async finalize(
    snap: VirtualMachineSnapshot,
    signal: AbortSignal,
  ): Promise<ReconcileResult | undefined> {
    const { store, fleet } = this.ctx;
    if (!(snap.metadata.finalizers ?? []).includes(FINALIZER)) return undefined;
    const ns = snap.metadata.namespace ?? "default";
    const needed = store
      .list("VirtualMachineRestore")
      .filter(
        (r) =>
          (r.metadata.namespace ?? "default") === ns &&
          r.spec.snapshotName === snap.metadata.name &&
          r.status?.phase !== "Succeeded" &&
          r.status?.phase !== "Failed",
      );
    if (needed.length > 0) {
      await this.write(
        snap,
        snap.status ?? {},
        "InUse",
        `deletion waits for restore ${needed.map((r) => r.metadata.name).join(", ")}`,
        !!snap.status?.readyToUse,
      );
      return { requeueAfterMs: 5_000 };
    }
    for (const m of snap.status?.members ?? []) {
      const vm = store.get("VirtualMachine", `${ns}/${m.vmName}`);
      // The VM is gone and its disks with it: so is the snapshot's data.
      if (!vm) continue;
      const live = liveConnection(fleet, hostOf(fleet, vm));
      if ("reason" in live) {
        await this.write(snap, snap.status ?? {}, "DeletePending", `${m.vmName}: ${live.reason}`, false);
        return { requeueAfterMs: 10_000 };
      }
      await deleteMemberSnapshot(live.conn, vm, m, snap, signal);
    }
    await store.removeFinalizer(snap, FINALIZER);
    return undefined;
  }
}

function healthyPhase(vm: VirtualMachine): boolean {
  const p = vm.status?.phase;
  return p !== "CrashLoop" && p !== "Recovering" && p !== "Failed";
}

/** Remove one member's snapshot from the disks of the VM's current host (importing it first). */
export async function deleteMemberSnapshot(
  conn: HostConnection,
  vm: VirtualMachine,
  m: SnapshotMember,
  snap: VirtualMachineSnapshot,
  signal?: AbortSignal,
): Promise<void> {
  const domain = domainOf(vm);
  const known = await conn.provider.listSnapshots(domain, signal).catch((e: unknown) => {
    if (isProviderError(e, "NotFound")) return undefined;
    throw e;
  });
  if (!known) return; // no domain on this host: nothing to delete through it
  if (!known.some((s) => s.name === m.snapshotName)) {
    if (m.host === conn.hostName) return; // taken here and already gone
    try {
      await conn.provider.importSnapshot(domain, importable(m, snap), signal);
    } catch (e) {
      if (isProviderError(e, "NotFound")) return; // its data is not reachable from here
      throw e;
    }
  }
  await conn.provider.deleteSnapshot(domain, m.snapshotName, signal);
}

export function importable(m: SnapshotMember, snap: VirtualMachineSnapshot) {
  const state = m.state ?? "shutoff";
  return {
    name: m.snapshotName,
    createdAt: new Date(snap.status?.creationTime ?? snap.metadata.creationTimestamp ?? 0),
    state,
    memory: state !== "shutoff",
  };
}

interface TakeOptions {
  memory: boolean;
  group: boolean;
  perHost: number;
}

/**
 * Take every member's snapshot. For a group, all running members are paused first and resumed
 * last (also on failure); the pause window is measured from the first pause to the last resume.
 */
export async function takeSnapshot(
  snap: VirtualMachineSnapshot,
  targets: Target[],
  opts: TakeOptions,
  signal?: AbortSignal,
): Promise<{ members: SnapshotMember[]; pauseWindowSeconds: number }> {
  const name = snap.metadata.name;
  const paused: Target[] = [];
  const members: SnapshotMember[] = [];
  let pauseStart = 0;
  let pauseEnd = 0;
  try {
    if (opts.group) {
      pauseStart = performance.now();
      await Promise.all(
        targets.map(async (t) => {
          const st = await t.conn.provider.getDomainState(domainOf(t.vm), signal);
          if (st?.state !== "running") return;
          await t.conn.provider.pauseDomain(domainOf(t.vm), signal);
          paused.push(t);
        }),
      );
    }
    const results = await Promise.allSettled(
      targets.map((t) => {
        t.conn.snapshotSlots.concurrency = opts.perHost;
        return t.conn.snapshotSlots(() => snapshotOne(t, name, opts.memory, signal));
      }),
    );
    for (const r of results) if (r.status === "fulfilled") members.push(r.value);
    const failed = results.flatMap((r, i) =>
      r.status === "rejected"
        ? [
            `${targets[i]?.vm.metadata.name}: ${r.reason instanceof Error ? r.reason.message : String(r.reason)}`,
          ]
        : [],
    );
    if (failed.length > 0) {
      // A group with a member missing is no consistent snapshot: remove what was taken.
      await Promise.allSettled(
        members.map((m) => {
          const t = targets.find((x) => x.vm.metadata.name === m.vmName);
          return t?.conn.provider.deleteSnapshot(domainOf(t.vm), m.snapshotName, signal);
        }),
      );
      throw new Error(`snapshot failed for ${failed.join("; ")}`);
    }
  } finally {
    if (paused.length > 0) {
      await Promise.allSettled(paused.map((t) => t.conn.provider.resumeDomain(domainOf(t.vm))));
      pauseEnd = performance.now();
    }
  }
  members.sort((a, b) => a.vmName.localeCompare(b.vmName));
  return { members, pauseWindowSeconds: paused.length > 0 ? (pauseEnd - pauseStart) / 1000 : 0 };
}

async function snapshotOne(
  t: Target,
  name: string,
  memory: boolean,
  signal?: AbortSignal,
): Promise<SnapshotMember> {
  const p = t.conn.provider;
  const domain = domainOf(t.vm);
  const disks = renderDomain(t.vm).disks.map((d) => ({ pool: d.pool, volume: d.volume }));
  const allocation = async () => {
    let n = 0;
    for (const d of disks) n += (await p.getVolume(d.pool, d.volume, signal))?.allocationBytes ?? 0;
    return n;
  };
  // A retry after an interruption: the half-recorded snapshot of the earlier attempt goes first.
  const existing = await p.listSnapshots(domain, signal);
  if (existing.some((s) => s.name === name)) await p.deleteSnapshot(domain, name, signal);
  const before = await allocation();
  const state = await p.getDomainState(domain, signal);
  const running = state?.state === "running" || state?.state === "paused";
  const info = await p.createSnapshot(
    domain,
    { name, memory: memory && running, description: `virtwarden ${t.vm.metadata.namespace}/${name}` },
    signal,
  );
  const after = await allocation();
  const s = info.state;
  return {
    vmName: t.vm.metadata.name,
    host: t.host,
    snapshotName: name,
    // What the images grew by (libvirt does not report an internal snapshot's size), unless
    // the provider knows it.
    sizeBytes: info.sizeBytes ?? Math.max(0, after - before),
    state: s === "running" || s === "paused" ? s : "shutoff",
    disks: disks.map((d) => `${d.pool}/${d.volume}`),
  };
}
