/**
 * Domain metrics of the reconcilers (the framework's own reconcile/queue metrics live in
 * controller/metrics.ts). Label values are bounded: kinds, fields, phases, causes — never VM names.
 * docs/metrics.md is the catalogue.
 */
import {
  Counter,
  Gauge,
  type GaugeConfiguration,
  Histogram,
  type LabelValues,
  type Registry,
} from "prom-client";
import type { HostReliability, HostUsage } from "../api/types.js";

export interface ReconcilerMetrics {
  driftDetected: Counter<"kind" | "field">;
  driftCorrected: Counter<"kind" | "field">;
  driftCorrectionSeconds: Histogram<"kind">;
  vmRestarts: Counter<"reason">;
  /** Bring-ups abandoned on a host past their phase's deadline (virtualmachine/deadlines.ts). */
  deadlineMisses: Counter<"phase">;
  recoveries: Counter<"cause" | "result">;
  recoverySeconds: Histogram<"cause">;
  /** Work lost by each recovery from a checkpoint: failure time - checkpoint time. */
  recoveryLostWorkSeconds: Histogram;
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
  recoveryPhaseSeconds: Histogram<"cause" | "phase">;
  outOfSyncSeconds: Counter<"kind">;
  snapshotPolicyInterval: Gauge<"policy">;
  migrations: Counter<"reason" | "result">;
  migrationSeconds: Histogram<"reason">;
  migrationsInFlight: Gauge;
  consolidationSteps: Counter<"step">;
  activeHosts: Gauge;
  activeHostsLowerBound: Gauge;
}

/** Where the by-phase gauges read their values at scrape time (the store's cache). */
export interface PhaseSources {
  vmPhases(): Record<string, number>;
  hostPhases(): Record<string, number>;
  /** Age in seconds of each policy's newest succeeded snapshot (absent: none yet). */
  newestSnapshotAges?(): Record<string, number>;
  /** Each Host's phase (hosts are few: one series per host is bounded). */
  hostPhaseByName?(): Record<string, string>;
  /** Resources whose Synced (or Ready, for kinds without Synced) condition is False, by kind. */
  outOfSync?(): Record<string, number>;
  /** Each Host's measured reliability (status.reliability), by host name. */
  hostReliability?(): Record<string, HostReliability>;
  /** Each Host's measured use (status.usage), by host name: what loadAware placement ranks by. */
  hostUsage?(): Record<string, HostUsage>;
  /** Migrations queued or running now. */
  migrationsInFlight?(): number;
  /** Availability: the fleet's (uptime / (uptime + downtime) over all VMs), and per VM if asked. */
  availability?(): {
    fleet: number | undefined;
    perVM?: { namespace: string; name: string; ratio: number }[];
  };
  /**
   * Whether this process's view of the fleet is current: it leads (or is standalone) and its
   * controllers run. While it is not (a standby waiting for the Lease, a leader that stopped),
   * the fleet gauges export no sample at all (default: always current).
   */
  current?(): boolean;
}

/**
 * A gauge of the fleet's state (availability, N-1 capacity, phases...). A plain unlabelled
 * prom-client gauge exports 0 until it is set, and a standby never sets it: its
 * `virtwarden_availability_ratio 0` reads as a real zero next to the leader's true value. This
 * one exports no sample while the process's view is not current, nor before it was first set.
 */
class FleetGauge<T extends string = string> extends Gauge<T> {
  private assigned = false;

  constructor(
    config: GaugeConfiguration<T>,
    private readonly current: () => boolean,
  ) {
    super(config);
  }

  override set(labelsOrValue: LabelValues<T> | number, value?: number): void {
    this.assigned = true;
    if (typeof labelsOrValue === "number") super.set(labelsOrValue);
    else super.set(labelsOrValue, value ?? 0);
  }

  override async get(): ReturnType<Gauge<T>["get"]> {
    const m = await super.get();
    return this.current() && this.assigned ? m : { ...m, values: [] };
  }
}

function collectInto(gauge: Gauge<"phase">, counts: Record<string, number>): void {
  gauge.reset();
  for (const [phase, n] of Object.entries(counts)) gauge.set({ phase }, n);
}

export function createReconcilerMetrics(registry: Registry, sources?: PhaseSources): ReconcilerMetrics {
  const m = buildReconcilerMetrics(registry, sources);
  // Known label sets start at 0: a series born at 1 shows no increase() in Prometheus, and an
  // alert on the first failed recovery or fence would never fire.
  for (const cause of ["Crash", "HostFailure"])
    for (const result of ["Succeeded", "Failed"]) m.recoveries.inc({ cause, result }, 0);
  for (const result of ["agent", "confirmed", "skipped", "failed"]) m.fencing.inc({ result }, 0);
  for (const result of ["succeeded", "failed"]) m.restores.inc({ result }, 0);
  for (const result of ["placed", "unschedulable"]) m.placements.inc({ result }, 0);
  // Histograms too (else the first observation is invisible to rate() and quantiles are NaN),
  // and the drift fields the reconcilers report (a fixed, small set).
  const vmFields = [
    "domain",
    "state",
    "domain.vcpus",
    "domain.memory",
    "domain.disks",
    "domain.interfaces",
    "domain.boot",
  ];
  for (const field of vmFields) {
    m.driftDetected.inc({ kind: "VirtualMachine", field }, 0);
    m.driftCorrected.inc({ kind: "VirtualMachine", field }, 0);
  }
  for (const kind of ["VirtualMachine", "VirtualNetwork"]) {
    m.driftCorrectionSeconds.zero({ kind });
    m.outOfSyncSeconds.inc({ kind }, 0);
  }
  for (const cause of ["Crash", "HostFailure"]) m.recoverySeconds.zero({ cause });
  for (const phase of ["detect", "start"]) m.recoveryPhaseSeconds.zero({ cause: "Crash", phase });
  for (const phase of ["detect", "fence", "place", "start"])
    m.recoveryPhaseSeconds.zero({ cause: "HostFailure", phase });
  for (const reason of ["Restart", "Drift", "SpecChange", "Requested"]) m.vmRestarts.inc({ reason }, 0);
  for (const consistency of ["vm", "group"]) m.snapshotSeconds.zero({ consistency });
  for (const type of ["disk", "disk+memory"]) m.restoreSeconds.zero({ type });
  for (const step of ["drain", "powerOn", "cancelDrain", "none", "wait"])
    m.consolidationSteps.inc({ step }, 0);
  for (const reason of ["Maintenance", "Consolidation"]) {
    for (const result of ["Succeeded", "Failed", "Aborted"]) m.migrations.inc({ reason, result }, 0);
    m.migrationSeconds.zero({ reason });
  }
  return m;
}

function buildReconcilerMetrics(registry: Registry, sources?: PhaseSources): ReconcilerMetrics {
  const registers = [registry];
  const current = () => sources?.current?.() ?? true;
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
    deadlineMisses: new Counter({
      name: "virtwarden_vm_deadline_misses_total",
      help: "Bring-ups of VMs abandoned on a host because a phase ran past its deadline, by phase.",
      labelNames: ["phase"],
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
    recoveryLostWorkSeconds: new Histogram({
      name: "virtwarden_recovery_lost_work_seconds",
      help: "Work lost by each recovery from a checkpoint: the failure (host's last heartbeat) minus the checkpoint's creation time.",
      buckets: [10, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200],
      registers,
    }),
    vmsByPhase: new FleetGauge(
      {
        name: "virtwarden_vms",
        help: "VirtualMachines by phase.",
        labelNames: ["phase"],
        registers,
        collect() {
          if (sources) collectInto(this, sources.vmPhases());
        },
      },
      current,
    ),
    hostsByPhase: new FleetGauge(
      {
        name: "virtwarden_hosts",
        help: "Hosts by phase.",
        labelNames: ["phase"],
        registers,
        collect() {
          if (sources) collectInto(this, sources.hostPhases());
        },
      },
      current,
    ),
    failoverSufficient: new FleetGauge(
      {
        name: "virtwarden_failover_capacity_sufficient",
        help: "1 when the loss of any one ready host could be absorbed by the others (N-1), else 0.",
        registers,
      },
      current,
    ),
    failoverStranded: new FleetGauge(
      {
        name: "virtwarden_failover_stranded_vms",
        help: "VMs that would stay down if the worst single host failed now.",
        registers,
      },
      current,
    ),
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
    newestSnapshotAge: new FleetGauge(
      {
        name: "virtwarden_snapshot_newest_age_seconds",
        help: "Age of each SnapshotPolicy's newest succeeded snapshot (namespace/name).",
        labelNames: ["policy"],
        registers,
        collect() {
          if (!sources?.newestSnapshotAges) return;
          this.reset();
          for (const [policy, age] of Object.entries(sources.newestSnapshotAges())) this.set({ policy }, age);
        },
      },
      current,
    ),
    restores: new Counter({
      name: "virtwarden_restores_total",
      help: "VirtualMachineRestores finished, by result.",
      labelNames: ["result"],
      registers,
    }),
    recoveryPhaseSeconds: new Histogram({
      name: "virtwarden_recovery_phase_duration_seconds",
      help: "Where a recovery's time went, by cause and phase (detect, fence, place, start).",
      labelNames: ["cause", "phase"],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
      registers,
    }),
    outOfSyncSeconds: new Counter({
      name: "virtwarden_out_of_sync_seconds_total",
      help: "Seconds resources spent out of sync before a drift was corrected, summed, by kind.",
      labelNames: ["kind"],
      registers,
    }),
    snapshotPolicyInterval: new FleetGauge(
      {
        name: "virtwarden_snapshot_policy_interval_seconds",
        help: "Each SnapshotPolicy's schedule interval (for staleness alerts), by namespace/name.",
        labelNames: ["policy"],
        registers,
      },
      current,
    ),
    migrations: new Counter({
      name: "virtwarden_migrations_total",
      help: "VM migrations finished, by reason (Maintenance, ...) and result (Succeeded, Failed, Aborted).",
      labelNames: ["reason", "result"],
      registers,
    }),
    migrationSeconds: new Histogram({
      name: "virtwarden_migration_duration_seconds",
      help: "Time a successful migration took, from its start to the VM running on the target, by reason.",
      labelNames: ["reason"],
      buckets: [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600],
      registers,
    }),
    consolidationSteps: new Counter({
      name: "virtwarden_consolidation_steps_total",
      help: "Consolidation rounds by what they decided: drain, powerOn, cancelDrain, none, wait.",
      labelNames: ["step"],
      registers,
    }),
    activeHosts: new FleetGauge(
      {
        name: "virtwarden_active_hosts",
        help: "Hosts powered on (not powered off by consolidation), as the consolidation last counted.",
        registers,
      },
      current,
    ),
    activeHostsLowerBound: new FleetGauge(
      {
        name: "virtwarden_active_hosts_lower_bound",
        help: "The fewest hosts the running VMs could fit on (bin-packing lower bound, per resource).",
        registers,
      },
      current,
    ),
    migrationsInFlight: new FleetGauge(
      {
        name: "virtwarden_migrations_in_progress",
        help: "VM migrations queued or running now.",
        registers,
        collect() {
          if (sources?.migrationsInFlight) this.set(sources.migrationsInFlight());
        },
      },
      current,
    ),
    restoreSeconds: new Histogram({
      name: "virtwarden_restore_duration_seconds",
      help: "Time to restore a VM or group from a snapshot, by snapshot type (disk, disk+memory).",
      labelNames: ["type"],
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
      registers,
    }),
  };
}

/** Gauges computed from the store's cache at scrape time (registered once per registry). */
export function registerStateGauges(
  registry: Registry,
  sources: Pick<
    PhaseSources,
    "hostPhaseByName" | "hostReliability" | "hostUsage" | "outOfSync" | "availability" | "current"
  >,
  perVMAvailability = false,
): void {
  const registers = [registry];
  const current = () => sources.current?.() ?? true;
  new FleetGauge(
    {
      name: "virtwarden_host_phase",
      help: "1 for each Host's current phase (Ready, Unreachable, Fencing, Fenced, Maintenance, ...).",
      labelNames: ["host", "phase"],
      registers,
      collect() {
        if (!sources.hostPhaseByName) return;
        this.reset();
        for (const [host, phase] of Object.entries(sources.hostPhaseByName())) this.set({ host, phase }, 1);
      },
    },
    current,
  );
  // From each Host's status, so they survive controller restarts and match what kubectl shows.
  // The failure count only grows (it is persisted), so it is a counter; a host without a figure
  // (no failure yet, not come back yet) has no sample for it.
  new Counter({
    name: "virtwarden_host_failures_total",
    help: "Down episodes observed per Host (judged dead by the heartbeat rule), from status.reliability.",
    labelNames: ["host"],
    registers,
    collect() {
      this.reset();
      if (!(sources.current?.() ?? true)) return;
      for (const [host, r] of Object.entries(sources.hostReliability?.() ?? {}))
        this.inc({ host }, r.failures);
    },
  });
  const reliabilityGauge = (name: string, help: string, pick: (r: HostReliability) => number | undefined) =>
    new FleetGauge(
      {
        name,
        help,
        labelNames: ["host"],
        registers,
        collect() {
          this.reset();
          for (const [host, r] of Object.entries(sources.hostReliability?.() ?? {})) {
            const v = pick(r);
            if (v !== undefined) this.set({ host }, v);
          }
        },
      },
      current,
    );
  reliabilityGauge(
    "virtwarden_host_mtbf_seconds",
    "Each Host's observed mean time between failures: up time / failures (status.reliability).",
    (r) => r.mtbfSeconds,
  );
  reliabilityGauge(
    "virtwarden_host_mttr_seconds",
    "Each Host's observed mean time to repair: down time / finished recoveries (status.reliability).",
    (r) => r.mttrSeconds,
  );
  reliabilityGauge(
    "virtwarden_host_availability",
    "Each Host's observed availability: up time / observed time, 0..1 (status.reliability).",
    (r) => r.availability,
  );
  // Rebuilt from the Hosts' status at each scrape: a deleted host (or one not yet measured) has
  // no series.
  const usageGauge = (name: string, help: string, pick: (u: HostUsage) => number | undefined) =>
    new FleetGauge(
      {
        name,
        help,
        labelNames: ["host"],
        registers,
        collect() {
          this.reset();
          for (const [host, u] of Object.entries(sources.hostUsage?.() ?? {})) {
            const v = pick(u);
            if (v !== undefined) this.set({ host }, v);
          }
        },
      },
      current,
    );
  usageGauge(
    "virtwarden_host_cpu_usage_ratio",
    "Each Host's measured CPU use, busy share of all its CPUs between the last two samples, 0..1 (status.usage).",
    (u) => u.cpuPercent / 100,
  );
  usageGauge(
    "virtwarden_host_memory_usage_ratio",
    "Each Host's measured memory use, (total - free - buffers - cached) / total at the last sample, 0..1 (status.usage).",
    (u) => (u.memoryTotalBytes > 0 ? u.memoryUsedBytes / u.memoryTotalBytes : undefined),
  );
  new FleetGauge(
    {
      name: "virtwarden_out_of_sync_resources",
      help: "Resources not in their declared state now (Synced condition False), by kind.",
      labelNames: ["kind"],
      registers,
      collect() {
        if (!sources.outOfSync) return;
        this.reset();
        for (const [kind, n] of Object.entries(sources.outOfSync())) this.set({ kind }, n);
      },
    },
    current,
  );
  new FleetGauge(
    {
      name: "virtwarden_availability_ratio",
      help: "Fleet availability since each VM's creation: uptime / (uptime + downtime), i.e. MTBF / (MTBF + MTTR).",
      registers,
      collect() {
        const a = sources.availability?.();
        if (a?.fleet !== undefined) this.set(a.fleet);
      },
    },
    current,
  );
  if (perVMAvailability) {
    new FleetGauge(
      {
        name: "virtwarden_vm_availability_ratio",
        help: "Each VM's availability since its creation (opt-in: one series per VM).",
        labelNames: ["namespace", "name"],
        registers,
        collect() {
          this.reset();
          for (const v of sources.availability?.().perVM ?? [])
            this.set({ namespace: v.namespace, name: v.name }, v.ratio);
        },
      },
      current,
    );
  }
}
