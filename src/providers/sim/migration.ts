/**
 * Simulated live migration and its job: migrateDomain waits the latency table's migrateMs (half,
 * progress 50, half) and moves the domain only if both hosts are still reachable at the end;
 * abortJob cuts the wait short.
 */
import type { JobInfo, MigrationOptions } from "../types.js";
import { clone, type SimSession, simHostName } from "./session.js";
import { isActive, type SimDomain } from "./world.js";

export async function migrateDomain(
  s: SimSession,
  name: string,
  targetUri: string,
  options: MigrationOptions,
  signal?: AbortSignal,
): Promise<void> {
  const source = s.host("migrateDomain");
  const d = s.domain(source, name, "migrateDomain");
  if (!isActive(d.state)) throw s.err("InvalidState", "migrateDomain", "only a running domain migrates live");
  const targetName = simHostName(s.mapUri(targetUri));
  const target = s.sim.lookupHost(targetName);
  if (!target?.reachable) throw s.err("OperationFailed", "migrateDomain", `target ${targetName} unreachable`);
  if (target === source) throw s.err("InvalidState", "migrateDomain", "source and target are the same host");
  if (target.usedMemory() + d.spec.memoryBytes > target.memoryBytes) {
    throw s.err("InsufficientResources", "migrateDomain", `not enough free memory on ${targetName}`);
  }
  const total = s.sim.delay("migrateMs");
  d.job = { startedAt: Date.now(), totalMs: total };
  options.onProgress?.(0);
  const aborted = new AbortController();
  d.job.abort = () => aborted.abort();
  const combined = signal ? AbortSignal.any([signal, aborted.signal]) : aborted.signal;
  try {
    if (total > 0) {
      await s.wait("migrateDomain", total / 2, combined);
      options.onProgress?.(50);
      await s.wait("migrateDomain", total / 2, combined);
    }
  } finally {
    d.job = undefined;
  }
  if (!source.reachable) throw s.err("Unreachable", "migrateDomain", "source lost during migration");
  if (!target.reachable) throw s.err("OperationFailed", "migrateDomain", "target lost during migration");
  const moved: SimDomain = {
    spec: clone(d.spec),
    uuid: d.uuid,
    state: { state: "running", reason: "migrated" },
    persistent: true,
    snapshots: [],
  };
  target.domains.set(name, moved);
  source.domains.delete(name);
  d.state = { state: "shutoff", reason: "migrated" };
  options.onProgress?.(100);
  s.sim.emit(source, d, "stopped", "migrated");
  s.sim.emit(target, moved, "started", "migrated");
}

export async function getJobInfo(s: SimSession, domain: string, signal?: AbortSignal): Promise<JobInfo> {
  return s.call("getJobInfo", "callMs", signal, (h) => {
    const d = s.domain(h, domain, "getJobInfo");
    if (!d.job) return { active: false, type: "none" };
    const elapsedMs = Date.now() - d.job.startedAt;
    const total = d.spec.memoryBytes;
    const processed = Math.min(total, Math.round((elapsedMs / Math.max(1, d.job.totalMs)) * total));
    return {
      active: true,
      type: "unbounded",
      elapsedMs,
      dataTotal: total,
      dataProcessed: processed,
      dataRemaining: total - processed,
    };
  });
}

export async function abortJob(s: SimSession, domain: string, signal?: AbortSignal): Promise<void> {
  await s.call("abortJob", "callMs", signal, (h) => {
    const d = s.domain(h, domain, "abortJob");
    if (!d.job?.abort) throw s.err("InvalidState", "abortJob", "no job is running");
    d.job.abort();
  });
}
