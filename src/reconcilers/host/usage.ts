/**
 * A host's measured use (Host status.usage) from two node-statistics samples, and what of it
 * placement may trust. Pure.
 *
 * Contracts:
 * - CPU utilisation is the busy share of the CPU time that passed between two samples: (user +
 *   kernel) / (user + kernel + idle + iowait) deltas. One sample says nothing (the counters run
 *   since boot), so a host has no usage until its second sample.
 * - Counters that went backwards (the host rebooted, or another daemon answers at its address)
 *   or did not move give no usage: the pair is skipped and the newer sample starts the next.
 * - Memory in use is total - free - buffers - cached at the newer sample (page cache the kernel
 *   gives back on demand is not use).
 * - Placement trusts a usage at most MEASURED_MAX_AGE_INTERVALS inventory intervals old: one kept
 *   in status by an earlier controller, or from before the host stopped answering, is not a
 *   measurement of now, and the host ranks by allocation instead.
 */
import type { HostUsage } from "../../api/types.js";
import type { NodeStats } from "../../providers/types.js";
import type { Capacity, MeasuredUse } from "../../scheduler/placement.js";

export interface NodeSample {
  stats: NodeStats;
  at: Date;
}

/** How many inventory intervals a usage stays a measurement placement ranks by. */
export const MEASURED_MAX_AGE_INTERVALS = 3;

export function usageBetween(prev: NodeSample, cur: NodeSample): HostUsage | undefined {
  const busy = (s: NodeStats) => s.cpu.userNs + s.cpu.kernelNs;
  const idle = (s: NodeStats) => s.cpu.idleNs + s.cpu.iowaitNs;
  const dBusy = busy(cur.stats) - busy(prev.stats);
  const dIdle = idle(cur.stats) - idle(prev.stats);
  if (dBusy < 0 || dIdle < 0 || dBusy + dIdle <= 0) return undefined;
  const m = cur.stats.memory;
  const used = Math.max(0, m.totalBytes - m.freeBytes - m.buffersBytes - m.cachedBytes);
  return {
    cpuPercent: Math.round((10_000 * dBusy) / (dBusy + dIdle)) / 100,
    memoryUsedBytes: Math.round(used),
    memoryTotalBytes: Math.round(m.totalBytes),
    memoryPercent: m.totalBytes > 0 ? Math.round((10_000 * used) / m.totalBytes) / 100 : 0,
    sampledAt: cur.at.toISOString(),
  };
}

/** The usage as placement's MeasuredUse, or undefined when there is none recent enough to rank by. */
export function measuredUse(
  usage: HostUsage | undefined,
  cpus: number | undefined,
  now: Date,
  inventoryIntervalMs: number,
  /** What was allocated on the host when the usage was sampled (this controller's; else unknown). */
  allocatedAtSample?: Capacity,
): MeasuredUse | undefined {
  if (!usage || !cpus) return undefined;
  const age = now.getTime() - Date.parse(usage.sampledAt);
  if (!(age <= MEASURED_MAX_AGE_INTERVALS * inventoryIntervalMs)) return undefined;
  return {
    cpuUtilisation: usage.cpuPercent / 100,
    cpus,
    memoryUsedBytes: usage.memoryUsedBytes,
    memoryTotalBytes: usage.memoryTotalBytes,
    ...(allocatedAtSample ? { allocatedAtSample } : {}),
  };
}
