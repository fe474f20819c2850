/**
 * The VirtualMachineRestore reconciler: brings a VM (or every member of a group snapshot) back to
 * a VirtualMachineSnapshot, on the VM's host or on `spec.targetHost` (the data must be on storage
 * that host sees), and leaves each VM in the state its runStrategy asks for.
 *
 * Steps, per member, while the restore is InProgress (the VM reconciler stands back meanwhile,
 * see members.restoreHolding):
 * 1. Never two copies (copies.ts resolveCopies, the restore's target as the VM's host and no
 *    migration exception): every copy on another host is destroyed and undefined there; a copy
 *    on a fenced, switched-off or removed host is left (nothing runs there); one on a host that
 *    does not answer fails the restore, and one that may be on a host not listed since the
 *    controller started makes it wait. Judged when the run is planned, before anything is
 *    touched.
 * 2. On the target: define the domain (from the VM's spec), make sure its pool sees the disks,
 *    stop it, import the snapshot's metadata if the snapshot was taken elsewhere, and revert to it
 *    paused; the VM is assigned to the target.
 * 3. When all members are reverted: a memory snapshot of a running VM is resumed (all members
 *    together), a disk snapshot cold-boots from the restored disks; runStrategy Halted stops it.
 * A restore ends Succeeded or Failed and is never retried after either (create a new one). A run
 * interrupted by a controller restart is run again from the top, up to MAX_INTERRUPTED_ATTEMPTS
 * runs in all; it waits until every host that may hold a copy has been listed again.
 */
import type {
  SnapshotMember,
  VirtualMachine,
  VirtualMachineRestore,
  VirtualMachineRestoreStatus,
  VirtualMachineSnapshot,
} from "../../api/types.js";
import type { ReconcileResult, Reconciler } from "../../controller/outcome.js";
import type { ReconcilerContext } from "../context.js";
import { type CopiesVerdict, mayRun, resolveCopies, type StaleCopy } from "../copies.js";
import type { HostConnection } from "../fleet.js";
import { RECOVERY_LABEL } from "../virtualmachine/decide.js";
import { hostHealth, unlistedHostsOf } from "../virtualmachine/observe.js";
import { placementRequest } from "../virtualmachine/placement-request.js";
import { renderDomain } from "../virtualmachine/render.js";
import { effectiveVM, storeClasses } from "../vm-class.js";
import { domainOf, hostOf, liveConnection, snapshotHolding, vmKey, writeReadyStatus } from "./members.js";
import { importable } from "./snapshot.js";

/** Runs of one restore a controller restart may interrupt before it is failed instead of run again. */
export const MAX_INTERRUPTED_ATTEMPTS = 3;

/** How long a host-failure recovery restore waits for all its members to be placed. */
const RECOVERY_PLACEMENT_DEADLINE_MS = 5 * 60_000;

interface Step {
  vm: VirtualMachine;
  member: SnapshotMember;
  target: string;
  conn: HostConnection;
  /** The copies on other hosts, removed before the revert (copies.ts). */
  stale: StaleCopy[];
}

export class VirtualMachineRestoreReconciler implements Reconciler {
  readonly name = "virtualmachinerestore";

  constructor(private readonly ctx: ReconcilerContext) {}

  async reconcile(key: string, signal: AbortSignal): Promise<ReconcileResult | undefined> {
    const { store } = this.ctx;
    let restore = store.get("VirtualMachineRestore", key);
    if (!restore) return undefined;
    const phase = restore.status?.phase;
    if (phase === "Succeeded" || phase === "Failed" || restore.metadata.deletionTimestamp) return undefined;
    const ns = restore.metadata.namespace ?? "default";
    const snap = store.get("VirtualMachineSnapshot", `${ns}/${restore.spec.snapshotName}`);
    if (!snap)
      return this.fail(restore, `VirtualMachineSnapshot ${ns}/${restore.spec.snapshotName} not found`);
    if (snap.status?.phase === "Failed") {
      return this.fail(restore, `snapshot ${snap.metadata.name} failed: ${snap.status.error ?? ""}`);
    }
    if (snap.status?.phase !== "Succeeded" || !snap.status.members?.length) {
      await this.write(
        restore,
        { ...(restore.status ?? {}), phase: "Pending" },
        "WaitingForSnapshot",
        `snapshot ${snap.metadata.name} is not ready yet`,
      );
      return { requeueAfterMs: 5_000 };
    }
    const attempts = restore.status?.attempts ?? (phase === "InProgress" ? 1 : 0);
    if (phase === "InProgress" && attempts >= MAX_INTERRUPTED_ATTEMPTS) {
      // Interrupted (controller restart) halfway, again and again: give up rather than loop on a
      // restore that may itself be what kills the controller. Its members are left as their run
      // strategy asks: one the restore had reverted and paused, but not resumed yet, runs again;
      // the VM reconciler corrects the rest once this one fails.
      const left = await this.resumeInterrupted(snap, signal);
      await this.fail(
        restore,
        `interrupted ${attempts} times while in progress (controller restarted); create a new restore${left}`,
      );
      for (const m of snap.status.members) this.ctx.enqueue("VirtualMachine", `${ns}/${m.vmName}`);
      return undefined;
    }
    // Interrupted once or twice (phase InProgress on entry): run it again from the top. Every step
    // re-establishes its own precondition (other copies removed, domain defined and stopped, the
    // snapshot reverted), so a second run converges to what one uninterrupted run does; the VM
    // reconciler keeps standing back meanwhile, as it did before the restart.
    const plan = this.plan(restore, snap);
    if ("wait" in plan) {
      // An interrupted run waits as it was (InProgress): the VM reconciler must keep standing back.
      if (phase === "InProgress") return { requeueAfterMs: 1_000 };
      // A host-failure recovery: the members are being placed on the surviving hosts.
      const age = this.ctx.now().getTime() - new Date(restore.metadata.creationTimestamp ?? 0).getTime();
      if (!plan.noDeadline && age > RECOVERY_PLACEMENT_DEADLINE_MS)
        return this.fail(restore, `not all members placed: ${plan.wait}`);
      await this.write(
        restore,
        { ...(restore.status ?? {}), phase: "Pending" },
        "WaitingForPlacement",
        plan.wait,
      );
      return { requeueAfterMs: 1_000 };
    }
    if ("error" in plan) return this.fail(restore, plan.error);
    const startedAt = this.ctx.now();
    const again = phase === "InProgress" ? ` (run ${attempts + 1}: the previous run was interrupted)` : "";
    restore = await this.write(
      restore,
      {
        ...(restore.status ?? {}),
        phase: "InProgress",
        startedAt: restore.status?.startedAt ?? startedAt.toISOString(),
        attempts: attempts + 1,
      },
      "InProgress",
      `restoring ${plan.steps.map((s) => `${s.vm.metadata.name} on ${s.target}`).join(", ")}${again}`,
    );
    const t0 = performance.now();
    try {
      await this.revertAll(plan.steps, snap, signal);
    } catch (e) {
      for (const s of plan.steps) this.ctx.enqueue("VirtualMachine", vmKey(s.vm));
      return this.fail(restore, e instanceof Error ? e.message : String(e));
    }
    const seconds = (performance.now() - t0) / 1000;
    const hosts = [...new Set(plan.steps.map((s) => s.target))];
    await this.write(
      restore,
      {
        ...(restore.status ?? {}),
        phase: "Succeeded",
        finishedAt: this.ctx.now().toISOString(),
        seconds,
        host: hosts.join(","),
      },
      "Restored",
      `restored to ${snap.metadata.name} in ${seconds.toFixed(2)}s`,
      true,
    );
    this.ctx.metrics.restores.inc({ result: "succeeded" });
    this.ctx.metrics.restoreSeconds.observe({ type: snap.spec.type ?? "disk" }, seconds);
    for (const s of plan.steps) {
      store.recordEvent({
        regarding: {
          kind: "VirtualMachine",
          namespace: ns,
          name: s.vm.metadata.name,
          uid: s.vm.metadata.uid,
        },
        type: "Normal",
        reason: "Restored",
        action: "Restore",
        note: `restored to snapshot ${snap.metadata.name} on ${s.target}`,
      });
      this.ctx.enqueue("VirtualMachine", vmKey(s.vm));
    }
    return undefined;
  }

  /** Where each member goes, checked before anything is touched. */
  private plan(
    restore: VirtualMachineRestore,
    snap: VirtualMachineSnapshot,
  ): { steps: Step[] } | { error: string } | { wait: string; noDeadline?: true } {
    const recovery = restore.metadata.labels?.[RECOVERY_LABEL] !== undefined;
    const { store, fleet } = this.ctx;
    const ns = restore.metadata.namespace ?? "default";
    // Step 1 removes the copies the hosts' inventories show: a host not listed since this
    // controller started may hold one (a start its predecessor sent just before it died).
    const unlisted = unlistedHostsOf(this.ctx, undefined);
    const steps: Step[] = [];
    for (const member of snap.status?.members ?? []) {
      const vm = store.get("VirtualMachine", `${ns}/${member.vmName}`);
      if (!vm) return { error: `VirtualMachine ${ns}/${member.vmName} no longer exists` };
      // A snapshot being taken of this VM finishes first (see the same check in snapshot.ts).
      const taking = snapshotHolding(store, vm);
      if (taking) return { wait: `snapshot ${taking} of ${member.vmName} is being taken`, noDeadline: true };
      const current = hostOf(fleet, vm);
      const currentReady = current !== undefined && store.get("Host", current)?.status?.phase === "Ready";
      if (recovery && !restore.spec.targetHost && !currentReady)
        return { wait: `${member.vmName} is not placed on a Ready host yet` };
      const target = restore.spec.targetHost ?? (currentReady ? current : undefined) ?? member.host;
      const copies = this.copiesAround(vm, target, unlisted);
      const unseen = copies.uncertain.filter((u) => u.why === "unlisted").map((u) => u.host);
      if (unseen.length > 0)
        return {
          wait: `${unseen.join(", ")} not listed since the controller started (a copy may run there)`,
          noDeadline: true,
        };
      const live = liveConnection(fleet, target);
      if ("reason" in live) return { error: `${member.vmName}: target ${live.reason}` };
      const unchecked = copies.left.find((c) => c.why === "unreachable");
      if (unchecked)
        return {
          error: `${member.vmName}: a copy on ${unchecked.host} cannot be checked (host unreachable, not fenced)`,
        };
      steps.push({ vm, member, target: target as string, conn: live.conn, stale: copies.stale });
    }
    return { steps };
  }

  /** The VM's copies around a restore onto `target`, judged by the one rule (copies.ts). */
  private copiesAround(vm: VirtualMachine, target: string | undefined, unlisted: string[]): CopiesVerdict {
    const ctx = this.ctx;
    return resolveCopies({
      assigned: target,
      assignedHealth: target ? "ready" : undefined,
      copies: ctx.fleet
        .copiesOf(vmKey(vm))
        .filter((c) => c.host !== target)
        .map((c) => {
          const health = hostHealth(ctx, c.host);
          return {
            host: c.host,
            running: mayRun(c.domain.state.state),
            reachable: health === "ready",
            ...(health === "unreachable" ? { uncertain: true } : {}),
          };
        }),
      unlisted,
    });
  }

  private async revertAll(steps: Step[], snap: VirtualMachineSnapshot, signal: AbortSignal): Promise<void> {
    await Promise.all(steps.map((s) => this.revertOne(s, snap, signal)));
    const memory = (snap.spec.type ?? "disk") === "disk+memory";
    // All members are reverted and paused (or off): now they run again together.
    await Promise.all(
      steps.map(async (s) => {
        const p = s.conn.provider;
        const domain = domainOf(s.vm);
        const strategy = s.vm.spec.runStrategy ?? "Always";
        const wasRunning = s.member.state === "running" || s.member.state === "paused";
        const run =
          strategy === "Always" || strategy === "RerunOnFailure" || (strategy === "Manual" && wasRunning);
        const state = (await p.getDomainState(domain, signal))?.state;
        const active = state === "running" || state === "paused";
        if (memory && wasRunning && run) {
          if (state === "paused") await p.resumeDomain(domain, signal);
          return;
        }
        // Disk state only (or the VM should not run): off, then a cold boot if it should run.
        if (active) await p.destroyDomain(domain, signal);
        if (run) await s.conn.startSlots(() => p.startDomain(domain, signal));
      }),
    );
  }

  /**
   * After an interruption: resume each member found paused that should run (runStrategy Always or
   * RerunOnFailure, or Manual for a member that ran when snapshotted). Returns what could not be
   * resumed, for the failure message ("" when nothing).
   */
  private async resumeInterrupted(snap: VirtualMachineSnapshot, signal: AbortSignal): Promise<string> {
    const { store, fleet } = this.ctx;
    const ns = snap.metadata.namespace ?? "default";
    const problems: string[] = [];
    const resumed: string[] = [];
    for (const member of snap.status?.members ?? []) {
      const vm = store.get("VirtualMachine", `${ns}/${member.vmName}`);
      if (!vm) continue;
      const strategy = vm.spec.runStrategy ?? "Always";
      const wasRunning = member.state === "running" || member.state === "paused";
      const run =
        strategy === "Always" || strategy === "RerunOnFailure" || (strategy === "Manual" && wasRunning);
      if (!run) continue;
      const live = liveConnection(fleet, hostOf(fleet, vm));
      if ("reason" in live) {
        problems.push(`${member.vmName}: ${live.reason}`);
        continue;
      }
      try {
        const domain = domainOf(vm);
        if ((await live.conn.provider.getDomainState(domain, signal))?.state !== "paused") continue;
        await live.conn.provider.resumeDomain(domain, signal);
        resumed.push(member.vmName);
      } catch (e) {
        problems.push(`${member.vmName}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    return (
      (resumed.length ? `; resumed ${resumed.join(", ")}` : "") +
      (problems.length ? `; not checked: ${problems.join("; ")}` : "")
    );
  }

  private async revertOne(s: Step, snap: VirtualMachineSnapshot, signal: AbortSignal): Promise<void> {
    const { fleet } = this.ctx;
    const key = vmKey(s.vm);
    const domain = domainOf(s.vm);
    // 1. Never two copies: the stale ones, as plan judged them.
    for (const copy of s.stale) {
      const other = fleet.connection(copy.host);
      if (!other?.isConnected)
        throw new Error(`${s.vm.metadata.name}: a copy on ${copy.host} cannot be removed (host unreachable)`);
      if (copy.running) await other.provider.destroyDomain(domain, signal).catch(() => {});
      await other.provider.undefineDomain(domain, signal);
      fleet.noteDomain(copy.host, key, undefined);
    }
    // 2. The domain on the target, stopped, its disks visible, the snapshot known, reverted.
    const p = s.conn.provider;
    const effective = effectiveVM(storeClasses(this.ctx.store), s.vm);
    const desired = renderDomain(effective);
    for (const d of desired.disks) {
      if (!(await p.getVolume(d.pool, d.volume, signal))) {
        throw new Error(`${s.vm.metadata.name}: disk ${d.pool}/${d.volume} is not on ${s.target}'s storage`);
      }
    }
    const state = await p.getDomainState(domain, signal);
    if (state && state.state !== "shutoff") await p.destroyDomain(domain, signal);
    await p.defineDomain(desired, signal);
    const known = await p.listSnapshots(domain, signal);
    if (!known.some((x) => x.name === s.member.snapshotName)) {
      await p.importSnapshot(domain, importable(s.member, snap), signal);
    }
    await p.revertSnapshot(domain, s.member.snapshotName, { paused: true }, signal);
    // The revert brings back the configuration of the snapshot time; the VM's spec wins.
    await p.defineDomain(desired, signal);
    const req = placementRequest(key, effective);
    fleet.assign(key, {
      host: s.target,
      namespace: s.vm.metadata.namespace ?? "default",
      labels: s.vm.metadata.labels ?? {},
      request: req.request,
    });
  }

  private async fail(restore: VirtualMachineRestore, error: string): Promise<undefined> {
    await this.write(
      restore,
      { ...(restore.status ?? {}), phase: "Failed", error, finishedAt: this.ctx.now().toISOString() },
      "RestoreFailed",
      error,
    );
    this.ctx.metrics.restores.inc({ result: "failed" });
    this.ctx.store.recordEvent({
      regarding: {
        kind: "VirtualMachineRestore",
        namespace: restore.metadata.namespace,
        name: restore.metadata.name,
        uid: restore.metadata.uid,
      },
      type: "Warning",
      reason: "RestoreFailed",
      action: "Restore",
      note: error,
    });
    return undefined;
  }

  private write(
    restore: VirtualMachineRestore,
    status: VirtualMachineRestoreStatus,
    reason: string,
    message: string,
    ok = false,
  ): Promise<VirtualMachineRestore> {
    return writeReadyStatus(this.ctx.store, restore, status, { ok, reason, message }, this.ctx.now());
  }
}
