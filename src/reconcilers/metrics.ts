/**
 * Domain metrics of the reconcilers (the framework's own reconcile/queue metrics live in
 * controller/metrics.ts). Label values are bounded: kinds, fields, phases, causes — never VM names.
 * docs/metrics.md is the catalogue.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

export interface ReconcilerMetrics {
  driftDetected: Counter<"kind" | "field">;
  driftCorrected: Counter<"kind" | "field">;
  driftCorrectionSeconds: Histogram<"kind">;
  vmRestarts: Counter<"reason">;
  recoveries: Counter<"cause" | "result">;
  recoverySeconds: Histogram<"cause">;
  vmsByPhase: Gauge<"phase">;
  hostsByPhase: Gauge<"phase">;
  placements: Counter<"result">;
  fencing: Counter<"result">;
  failoverSufficient: Gauge;
  failoverStranded: Gauge;
  snapshots: Counter<"policy" | "result">;
  snapshotSeconds: Histogram<"consistency">;
  snapshotPauseSeconds: Histogram;
  newestSnapshotAge: Gauge<"policy">;
  restores: Counter<"result">;
  restoreSeconds: Histogram<"type">;
}

/** Where the by-phase gauges read their values at scrape time (the store's cache). */
export interface PhaseSources {
  vmPhases(): Record<string, number>;
  hostPhases(): Record<string, number>;
  /** Age in seconds of each policy's newest succeeded snapshot (absent: none yet). */
  newestSnapshotAges?(): Record<string, number>;
}

function collectInto(gauge: Gauge<"phase">, counts: Record<string, number>): void {
  gauge.reset();
  for (const [phase, n] of Object.entries(counts)) gauge.set({ phase }, n);
}

export function createReconcilerMetrics(registry: Registry, sources?: PhaseSources): ReconcilerMetrics {
  const registers = [registry];
  return {
    driftDetected: new Counter({
      name: "virtwarden_drift_detected_total",
      help: "Differences between declared and actual state, by kind and field.",
      labelNames: ["kind", "field"],
      registers,
    }),
    driftCorrected: new Counter({
      name: "virtwarden_drift_corrected_total",
      help: "Differences corrected, by kind and field.",
      labelNames: ["kind", "field"],
      registers,
    }),
    driftCorrectionSeconds: new Histogram({
      name: "virtwarden_drift_correction_duration_seconds",
      help: "From the drift happening (the hypervisor's event) to its correction.",
      labelNames: ["kind"],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers,
    }),
    vmRestarts: new Counter({
      name: "virtwarden_vm_restarts_total",
      help: "VM restarts performed by the controller, by reason.",
      labelNames: ["reason"],
      registers,
    }),
    recoveries: new Counter({
      name: "virtwarden_recoveries_total",
      help: "Recoveries of VMs, by cause and result.",
      labelNames: ["cause", "result"],
      registers,
    }),
    recoverySeconds: new Histogram({
      name: "virtwarden_recovery_duration_seconds",
      help: "Recovery time measured from the failure (not its detection) to the VM running again.",
      labelNames: ["cause"],
      buckets: [0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120, 300],
      registers,
    }),
    vmsByPhase: new Gauge({
      name: "virtwarden_vms",
      help: "VirtualMachines by phase.",
      labelNames: ["phase"],
      registers,
      collect() {
        if (sources) collectInto(this, sources.vmPhases());
      },
    }),
    hostsByPhase: new Gauge({
      name: "virtwarden_hosts",
      help: "Hosts by phase.",
      labelNames: ["phase"],
      registers,
      collect() {
        if (sources) collectInto(this, sources.hostPhases());
      },
    }),
    failoverSufficient: new Gauge({
      name: "virtwarden_failover_capacity_sufficient",
      help: "1 when the loss of any one ready host could be absorbed by the others (N-1), else 0.",
      registers,
    }),
    failoverStranded: new Gauge({
      name: "virtwarden_failover_stranded_vms",
      help: "VMs that would stay down if the worst single host failed now.",
      registers,
    }),
    fencing: new Counter({
      name: "virtwarden_fencing_total",
      help: "Host fencing outcomes: agent, confirmed (operator), skipped (unsafe), failed.",
      labelNames: ["result"],
      registers,
    }),
    placements: new Counter({
      name: "virtwarden_placements_total",
      help: "Placement decisions, by result (placed, unschedulable).",
      labelNames: ["result"],
      registers,
    }),
    snapshots: new Counter({
      name: "virtwarden_snapshots_total",
      help: "VirtualMachineSnapshots finished, by policy (none: taken by a user) and result.",
      labelNames: ["policy", "result"],
      registers,
    }),
    snapshotSeconds: new Histogram({
      name: "virtwarden_snapshot_duration_seconds",
      help: "Time to take a VirtualMachineSnapshot (all members), by consistency (vm, group).",
      labelNames: ["consistency"],
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300],
      registers,
    }),
    snapshotPauseSeconds: new Histogram({
      name: "virtwarden_snapshot_pause_window_seconds",
      help: "How long the members of a coordinated group snapshot were paused together.",
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers,
    }),
    newestSnapshotAge: new Gauge({
      name: "virtwarden_snapshot_newest_age_seconds",
      help: "Age of each SnapshotPolicy's newest succeeded snapshot (namespace/name).",
      labelNames: ["policy"],
      registers,
      collect() {
        if (!sources?.newestSnapshotAges) return;
        this.reset();
        for (const [policy, age] of Object.entries(sources.newestSnapshotAges())) this.set({ policy }, age);
      },
    }),
    restores: new Counter({
      name: "virtwarden_restores_total",
      help: "VirtualMachineRestores finished, by result.",
      labelNames: ["result"],
      registers,
    }),
    restoreSeconds: new Histogram({
      name: "virtwarden_restore_duration_seconds",
      help: "Time to restore a VM or group from a snapshot, by snapshot type (disk, disk+memory).",
      labelNames: ["type"],
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
      registers,
    }),
  };
}
