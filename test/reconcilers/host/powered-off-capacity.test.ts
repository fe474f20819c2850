/**
 * A host that consolidation switched off stays a candidate across a controller restart: the new
 * process never reached it (it is off), so its capacity comes from what its status last recorded.
 * Without it the planner did not see the host and never switched it on again, however many VMs
 * waited for room (found by the real-bed chaos suite: consolidate, seed 1, a kill after the power-off).
 */
import { expect, it } from "vitest";
import type { Host } from "../../../src/api/types.js";
import { decideHost } from "../../../src/reconcilers/host/decide.js";
import { hostResource } from "../../support/fixtures.js";

const NOW = new Date("2026-06-01T12:00:00Z");
const GiB = 1024 ** 3;

it("a host powered off on purpose keeps its recorded capacity when the controller never reached it", () => {
  const h: Host = {
    ...hostResource("a"),
    spec: { uri: "sim://a", reserved: { memory: "1Gi" }, overcommit: { cpu: 2 }, allowPowerOff: true },
    status: {
      phase: "PoweredOff",
      capacity: { cpu: 4, memory: "8Gi" },
      consolidation: { state: "PoweredOff", since: "2026-06-01T11:00:00Z", message: "idle" },
    },
  };
  const d = decideHost(
    {
      host: h,
      connected: false,
      info: undefined,
      lastHeartbeat: undefined,
      missedBeats: 9,
      lastError: "connection refused",
      allocated: { cpuMilli: 0, memoryBytes: 0 },
      vmCount: 0,
      networks: [],
      images: [],
      fence: { state: "notNeeded" },
      consolidation: { state: "PoweredOff", since: "2026-06-01T11:00:00Z", message: "idle" },
    },
    NOW,
  );
  expect(d.phase).toBe("PoweredOff");
  expect(d.allocatable).toEqual({ cpuMilli: 8000, memoryBytes: 7 * GiB });
  expect(d.ready).toBe(false);
  expect(d.schedulable).toBe(false);
});

it("a host that is merely unreachable gets no invented capacity", () => {
  const h: Host = { ...hostResource("b"), status: { phase: "Ready", capacity: { cpu: 4, memory: "8Gi" } } };
  const d = decideHost(
    {
      host: h,
      connected: false,
      info: undefined,
      lastHeartbeat: undefined,
      missedBeats: 9,
      lastError: "connection refused",
      allocated: { cpuMilli: 0, memoryBytes: 0 },
      vmCount: 0,
      networks: [],
      images: [],
      fence: { state: "notNeeded" },
    },
    NOW,
  );
  expect(d.allocatable).toBeUndefined();
});
