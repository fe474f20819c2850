/**
 * The VirtualNetwork reconciler: realise the network on every Ready host its selector picks,
 * correct it where it was destroyed or edited behind our back, remove it from hosts that no
 * longer match, and publish per-host readiness — VMs are placed only where their networks are
 * ready (the scheduler reads HostConnection.networks).
 *
 * A VM's fixed IP joins the network's DHCP host entries (changed in place on running networks),
 * and the VM is placed only on hosts whose network already serves its entry.
 *
 * Not yet here: VLANs are passed to the provider, which may not support them in every mode.
 */
import type { VirtualNetwork } from "../../api/types.js";
import type { ReconcileResult, Reconciler } from "../../controller/outcome.js";
import { isProviderError } from "../../providers/types.js";
import { matchesSelector } from "../../scheduler/placement.js";
import { jsonEqual } from "../../store/equal.js";
import { FINALIZER, type ReconcilerContext } from "../context.js";
import { leaseKey, vmFixedLeases } from "../virtualmachine/render.js";
import { decideHostNetwork, renderNetwork } from "./render.js";
import { type HostNetworkState, inUseMessage, networkStatus } from "./status.js";

/**
 * Networks are re-checked this often. A network destroyed, undefined or redefined behind our back
 * is seen at once through libvirt's network lifecycle events; this catches what no event tells
 * (events lost while a host was briefly unreachable).
 */
export const NETWORK_RESYNC_MS = 60_000;

export class VirtualNetworkReconciler implements Reconciler {
  readonly name = "virtualnetwork";

  constructor(private readonly ctx: ReconcilerContext) {}

  async reconcile(key: string, signal: AbortSignal): Promise<ReconcileResult | undefined> {
    const ctx = this.ctx;
    let vnet = ctx.store.get("VirtualNetwork", key);
    const readyKey = key;
    if (!vnet) {
      for (const h of ctx.fleet.hostNames()) {
        const conn = ctx.fleet.connection(h);
        if (conn) this.setReady(conn.networks, readyKey, undefined);
      }
      return undefined;
    }
    const desired = renderNetwork(vnet, this.claims(vnet));
    const leaseKeys = new Set((desired.leases ?? []).map((l) => leaseKey(readyKey, l.mac, l.ip)));
    // In use: a network being deleted stays on its hosts (its guests keep their links) until no
    // VM names it, as a PersistentVolumeClaim in use waits for its pods.
    const users = vnet.metadata.deletionTimestamp ? this.usersOf(vnet) : [];
    const deleting = !!vnet.metadata.deletionTimestamp && users.length === 0;
    if (!deleting && !(vnet.metadata.finalizers ?? []).includes(FINALIZER)) {
      vnet = await ctx.store.addFinalizer(vnet, FINALIZER);
    }
    const selected = new Set(
      ctx.store
        .list("Host")
        .filter(
          (h) =>
            !deleting &&
            matchesSelector(h.metadata.labels ?? {}, { matchLabels: vnet?.spec.hostSelector ?? {} }),
        )
        .map((h) => h.metadata.name),
    );
    const hosts: HostNetworkState[] = [];
    let failures = 0;
    let blocked = 0;
    const regarding = {
      kind: "VirtualNetwork" as const,
      namespace: vnet.metadata.namespace,
      name: vnet.metadata.name,
      uid: vnet.metadata.uid,
    };
    for (const hostName of ctx.fleet.hostNames()) {
      const conn = ctx.fleet.connection(hostName);
      if (!conn) continue;
      const wanted = selected.has(hostName);
      if (!conn.isConnected) {
        this.setReady(conn.networks, readyKey, undefined);
        if (wanted) hosts.push({ host: hostName, ready: false, message: "host unreachable" });
        if (deleting) blocked++;
        continue;
      }
      try {
        const actual = await conn.provider.getNetwork(desired.name, signal);
        if (!wanted) {
          this.setReady(conn.networks, readyKey, undefined);
          if (actual && actual.spec.ownership?.uid === desired.ownership?.uid) {
            await conn.provider.removeNetwork(desired.name, signal);
            ctx.store.recordEvent({
              regarding,
              type: "Normal",
              reason: "NetworkRemoved",
              action: "Remove",
              note: `removed from ${hostName}`,
            });
          }
          continue;
        }
        const d = decideHostNetwork(desired, actual);
        if (d.action === "ensure") {
          await conn.provider.ensureNetwork(desired, signal);
          // Ours, but from an older spec (the resource or its VMs' fixed IPs changed): an update.
          const update =
            d.drift === "configuration" &&
            actual?.spec.ownership?.uid === desired.ownership?.uid &&
            actual?.spec.ownership?.specHash !== desired.ownership?.specHash;
          if (update) {
            ctx.store.recordEvent({
              regarding,
              type: "Normal",
              reason: "NetworkUpdated",
              action: "Ensure",
              note: `updated on ${hostName}`,
            });
          } else if (d.drift !== "missing" || conn.networks.has(readyKey)) {
            ctx.metrics.driftDetected.inc({ kind: "VirtualNetwork", field: d.drift ?? "configuration" });
            ctx.metrics.driftCorrected.inc({ kind: "VirtualNetwork", field: d.drift ?? "configuration" });
            ctx.store.recordEvent({
              regarding,
              type: "Warning",
              reason: "DriftCorrected",
              action: "Ensure",
              note:
                d.drift === "relink"
                  ? `running guests left off the network on ${hostName} (an interrupted restart): moved back onto it`
                  : `network ${d.drift} on ${hostName}: recreated, its running guests kept on it`,
            });
          }
        }
        if (this.setReady(conn.networks, readyKey, leaseKeys)) this.wakeVMs(vnet);
        hosts.push({ host: hostName, ready: true });
      } catch (e) {
        if (!isProviderError(e)) throw e;
        failures++;
        this.setReady(conn.networks, readyKey, undefined);
        hosts.push({ host: hostName, ready: false, message: e.message });
      }
    }
    if (deleting) {
      if (blocked === 0 && failures === 0) {
        await ctx.store.removeFinalizer(vnet, FINALIZER);
        return undefined;
      }
      return { requeueAfterMs: 5_000 };
    }
    const status = networkStatus(vnet, hosts, users, ctx.now());
    if (!jsonEqual(vnet.status ?? {}, status)) {
      const wasInUse = vnet.status?.conditions?.some((c) => c.type === "InUse" && c.status === "True");
      await ctx.store.updateStatus(vnet, status);
      if (users.length > 0 && !wasInUse)
        ctx.store.recordEvent({
          regarding,
          type: "Warning",
          reason: "InUse",
          action: "Delete",
          note: inUseMessage(users),
        });
    }
    if (users.length > 0) return { requeueAfterMs: 2_000 };
    return { requeueAfterMs: failures > 0 ? 2_000 : NETWORK_RESYNC_MS };
  }

  /** The VMs (not being deleted themselves) that name this network, as namespace/name. */
  private usersOf(vnet: VirtualNetwork): string[] {
    const ns = vnet.metadata.namespace ?? "default";
    return this.ctx.store
      .list("VirtualMachine")
      .filter(
        (vm) =>
          (vm.metadata.namespace ?? "default") === ns &&
          !vm.metadata.deletionTimestamp &&
          (vm.spec.networks ?? []).some((n) => n.network === vnet.metadata.name),
      )
      .map((vm) => `${ns}/${vm.metadata.name}`)
      .sort();
  }

  /**
   * Record what this network serves on a host: ready (with these fixed leases) or, with
   * `leases` undefined, not at all. Returns whether something became ready.
   */
  private setReady(ready: Set<string>, key: string, leases: Set<string> | undefined): boolean {
    let added = false;
    for (const k of [...ready]) if (k.startsWith(`${key}#`) && !leases?.has(k)) ready.delete(k);
    if (!leases) {
      ready.delete(key);
      return false;
    }
    for (const k of [key, ...leases]) {
      if (ready.has(k)) continue;
      ready.add(k);
      added = true;
    }
    return added;
  }

  /** The fixed IPs this network's VMs claim (refused claims aside): DHCP host entries. */
  private claims(vnet: VirtualNetwork): { mac: string; ip: string; hostname: string }[] {
    const ns = vnet.metadata.namespace ?? "default";
    return this.ctx.store.list("VirtualMachine").flatMap((vm) => {
      if ((vm.metadata.namespace ?? "default") !== ns || vm.metadata.deletionTimestamp) return [];
      if (this.ctx.addresses?.conflictOf(`${ns}/${vm.metadata.name}`)) return [];
      return vmFixedLeases(vm)
        .filter((l) => l.network === vnet.metadata.name)
        .map((l) => ({ mac: l.mac, ip: l.ip, hostname: vm.metadata.name }));
    });
  }

  /** VMs waiting for this network can be placed now. */
  private wakeVMs(vnet: VirtualNetwork): void {
    const ns = vnet.metadata.namespace ?? "default";
    for (const vm of this.ctx.store.list("VirtualMachine")) {
      if ((vm.metadata.namespace ?? "default") !== ns) continue;
      if ((vm.spec.networks ?? []).some((n) => n.network === vnet.metadata.name))
        this.ctx.enqueue("VirtualMachine", `${ns}/${vm.metadata.name}`);
    }
  }
}
