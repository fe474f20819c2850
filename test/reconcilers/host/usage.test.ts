/** A host's usage from two node-statistics samples, and how long placement trusts it: pure tables. */
import { describe, expect, it } from "vitest";
import type { NodeStats } from "../../../src/providers/types.js";
import { measuredUse, type NodeSample, usageBetween } from "../../../src/reconcilers/host/usage.js";

const GiB = 1024 ** 3;
const s = (
  at: number,
  user: number,
  kernel: number,
  idle: number,
  mem: Partial<NodeStats["memory"]> = {},
): NodeSample => ({
  stats: {
    cpu: { userNs: user * 1e9, kernelNs: kernel * 1e9, idleNs: idle * 1e9, iowaitNs: 0 },
    memory: { totalBytes: 16 * GiB, freeBytes: 8 * GiB, buffersBytes: 1 * GiB, cachedBytes: 3 * GiB, ...mem },
  },
  at: new Date(at * 1000),
});

describe("usageBetween", () => {
  it.each<[string, NodeSample, NodeSample, number | undefined]>([
    // 30 s on 4 CPUs = 120 CPU-s: 24 busy (18 user + 6 kernel), 96 idle.
    ["busy share of the time between samples", s(0, 100, 50, 1000), s(30, 118, 56, 1096), 20],
    ["all idle", s(0, 100, 50, 1000), s(30, 100, 50, 1120), 0],
    ["all busy", s(0, 100, 50, 1000), s(30, 200, 70, 1000), 100],
    ["counters went back (a reboot): no usage", s(0, 100, 50, 1000), s(30, 5, 2, 90), undefined],
    ["counters did not move: no usage", s(0, 100, 50, 1000), s(30, 100, 50, 1000), undefined],
  ])("%s", (_what, prev, cur, cpuPercent) => {
    expect(usageBetween(prev, cur)?.cpuPercent).toBe(cpuPercent);
  });

  it("counts memory in use as total - free - buffers - cached, at the newer sample", () => {
    expect(usageBetween(s(0, 1, 1, 1), s(30, 2, 2, 2, { freeBytes: 2 * GiB }))).toEqual({
      cpuPercent: 66.67,
      memoryUsedBytes: 10 * GiB,
      memoryTotalBytes: 16 * GiB,
      memoryPercent: 62.5,
      sampledAt: "1970-01-01T00:00:30.000Z",
    });
  });
});

describe("measuredUse", () => {
  const usage = {
    cpuPercent: 25,
    memoryUsedBytes: 4 * GiB,
    memoryTotalBytes: 16 * GiB,
    sampledAt: "2026-01-01T00:00:00Z",
  };
  const at = (s: number) => new Date(Date.parse(usage.sampledAt) + s * 1000);
  it.each<[string, Date, number | undefined, boolean]>([
    ["fresh", at(30), 8, true],
    ["three intervals old: still", at(90), 8, true],
    ["older than three intervals: not a measurement of now", at(91), 8, false],
    ["no CPU count known", at(30), undefined, false],
  ])("%s", (_what, now, cpus, trusted) => {
    const m = measuredUse(usage, cpus, now, 30_000);
    expect(m).toEqual(
      trusted
        ? { cpuUtilisation: 0.25, cpus: 8, memoryUsedBytes: 4 * GiB, memoryTotalBytes: 16 * GiB }
        : undefined,
    );
  });

  it("carries what was allocated at the sample, for placement to count VMs placed since", () => {
    const atSample = { cpuMilli: 3000, memoryBytes: 2 * GiB };
    expect(measuredUse(usage, 8, at(30), 30_000, atSample)?.allocatedAtSample).toEqual(atSample);
  });
});
