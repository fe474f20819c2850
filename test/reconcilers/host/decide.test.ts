import { describe, expect, it } from "vitest";
import type { Host } from "../../../src/api/types.js";
import type { HostInfo } from "../../../src/providers/types.js";
import { allocatableOf, decideHost, type ObservedHost } from "../../../src/reconcilers/host/decide.js";
import { hostResource } from "../../support/fixtures.js";

const NOW = new Date("2026-06-01T12:00:00Z");
const GiB = 1024 ** 3;
const info: HostInfo = {
  hostname: "kvm-01",
  cpus: 8,
  memoryBytes: 32 * GiB,
  freeMemoryBytes: 30 * GiB,
  hypervisorType: "QEMU",
  hypervisorVersion: "7.2.0",
  kvm: true,
};

function obs(host: Host, over: Partial<ObservedHost> = {}): ObservedHost {
  return {
    host,
    connected: true,
    info,
    lastHeartbeat: NOW,
    missedBeats: 0,
    lastError: undefined,
    allocated: { cpuMilli: 2000, memoryBytes: 4 * GiB },
    vmCount: 2,
    networks: [],
    images: [],
    fence: { state: "notNeeded" },
    ...over,
  };
}

function withPhase(host: Host, phase: NonNullable<Host["status"]>["phase"]): Host {
  return { ...host, status: { phase } };
}

describe("decideHost phases", () => {
  const h = hostResource("a");
  it.each([
    ["a connected host is Ready", obs(h), "Ready"],
    ["maintenance while connected", obs({ ...h, spec: { ...h.spec, maintenance: true } }), "Maintenance"],
    [
      "never reached stays Pending",
      obs(h, { connected: false, lastHeartbeat: undefined, missedBeats: 5 }),
      "Pending",
    ],
    ["one missed beat keeps Ready (grace)", obs(withPhase(h, "Ready"), { missedBeats: 1 }), "Ready"],
    [
      "missedBeats reached: Unreachable",
      obs(withPhase(h, "Ready"), { missedBeats: 3, connected: false }),
      "Unreachable",
    ],
    [
      "fencing phases are not overwritten by heartbeats",
      obs(withPhase(h, "Fenced"), { missedBeats: 9, connected: false }),
      "Fenced",
    ],
  ])("%s", (_name, o, want) => {
    expect(decideHost(o, NOW).phase).toBe(want);
  });

  it("honours a per-host missedBeats threshold", () => {
    const custom = { ...withPhase(h, "Ready"), spec: { ...h.spec, heartbeat: { missedBeats: 5 } } };
    expect(decideHost(obs(custom, { missedBeats: 4, connected: false }), NOW).phase).toBe("Ready");
    expect(decideHost(obs(custom, { missedBeats: 5, connected: false }), NOW).phase).toBe("Unreachable");
  });
});

describe("decideHost fencing", () => {
  it("records fencedAt and a Fenced condition saying how", () => {
    const d = decideHost(
      obs(withPhase(hostResource("a"), "Unreachable"), {
        connected: false,
        missedBeats: 5,
        fence: { state: "fenced", at: NOW.toISOString(), how: "skipped", message: "UNSAFE" },
      }),
      NOW,
    );
    expect(d.status.fencedAt).toBe(NOW.toISOString());
    expect(d.status.conditions?.find((c) => c.type === "Fenced")).toMatchObject({
      status: "True",
      reason: "FencingSkipped",
      message: "UNSAFE",
    });
  });
  it("says why it does not fence", () => {
    const d = decideHost(
      obs(withPhase(hostResource("a"), "Ready"), {
        connected: false,
        missedBeats: 5,
        fence: { state: "unconfigured", message: "no fence agent" },
      }),
      NOW,
    );
    expect(d.status.conditions?.find((c) => c.type === "Fenced")).toMatchObject({
      status: "False",
      reason: "NoFenceAgent",
    });
  });
  it("clears fencedAt once the host is back", () => {
    const h: Host = { ...hostResource("a"), status: { phase: "Fenced", fencedAt: NOW.toISOString() } };
    expect(decideHost(obs(h), NOW).status.fencedAt).toBeUndefined();
  });
});

describe("decideHost capacity and conditions", () => {
  it("subtracts reserved capacity and applies overcommit", () => {
    const h = {
      ...hostResource("a"),
      spec: { uri: "sim://a", reserved: { cpu: 2, memory: "4Gi" }, overcommit: { cpu: 2 } },
    };
    expect(allocatableOf(h, info)).toEqual({ cpuMilli: 12_000, memoryBytes: 28 * GiB });
  });
  it("reports capacity, allocation and hypervisor", () => {
    const d = decideHost(obs(hostResource("a")), NOW);
    expect(d.status).toMatchObject({
      capacity: { cpu: 8, memory: "32Gi" },
      allocatable: { cpu: 32, memory: "32Gi" },
      allocated: { cpu: 2, memory: "4Gi" },
      vmCount: 2,
      hypervisor: { type: "QEMU", version: "7.2.0", hostname: "kvm-01" },
    });
    expect(d.status.conditions?.map((c) => [c.type, c.status])).toEqual([
      ["Reachable", "True"],
      ["Schedulable", "True"],
      ["Stalled", "False"],
      ["Reconciling", "False"],
      ["Ready", "True"],
    ]);
  });
  it("persists lastHeartbeat only every 30 s unless the phase changes", () => {
    const h: Host = {
      ...hostResource("a"),
      status: { phase: "Ready", lastHeartbeat: new Date(NOW.getTime() - 5000).toISOString() },
    };
    expect(decideHost(obs(h), NOW).status.lastHeartbeat).toBe(h.status?.lastHeartbeat);
    const old: Host = {
      ...h,
      status: { phase: "Ready", lastHeartbeat: new Date(NOW.getTime() - 31_000).toISOString() },
    };
    expect(decideHost(obs(old), NOW).status.lastHeartbeat).toBe(NOW.toISOString());
  });
  it("says why a host is not reachable", () => {
    const d = decideHost(
      obs(withPhase(hostResource("a"), "Ready"), {
        connected: false,
        missedBeats: 3,
        lastError: "connection refused",
      }),
      NOW,
    );
    const reachable = d.status.conditions?.find((c) => c.type === "Reachable");
    expect(reachable).toMatchObject({ status: "False", reason: "HeartbeatMissed" });
    expect(reachable?.message).toContain("connection refused");
    expect(d.ready).toBe(false);
  });
  it("keeps a cordoned host out of scheduling", () => {
    const h = { ...hostResource("a"), spec: { uri: "sim://a", unschedulable: true } };
    expect(decideHost(obs(h), NOW)).toMatchObject({ ready: true, schedulable: false });
  });
});

describe("decideHost: the conditions kstatus reads", () => {
  const h = hostResource("a");
  const cond = (d: ReturnType<typeof decideHost>, type: string) =>
    d.status.conditions?.find((c) => c.type === type);
  const both = (o: ObservedHost) => {
    const d = decideHost(o, NOW);
    return [cond(d, "Reconciling")?.status, cond(d, "Stalled")?.status, cond(d, "Stalled")?.reason];
  };
  it.each([
    ["Ready: neither", obs(h), ["False", "False", "NotStalled"]],
    [
      "never reached: Reconciling",
      obs(h, { connected: false, lastHeartbeat: undefined, missedBeats: 5 }),
      ["True", "False", "NotStalled"],
    ],
    [
      "fencing failed: Stalled",
      obs(withPhase(h, "Fencing"), {
        connected: false,
        missedBeats: 9,
        fence: { state: "failed", message: "BMC does not answer" },
      }),
      ["False", "True", "FenceFailed"],
    ],
    [
      "unreachable with no fence agent: Stalled (an operator must confirm)",
      obs(withPhase(h, "Ready"), {
        connected: false,
        missedBeats: 5,
        fence: { state: "unconfigured", message: "no fence agent" },
      }),
      ["False", "True", "NoFenceAgent"],
    ],
    [
      "maintenance draining: Reconciling",
      obs(
        { ...h, spec: { ...h.spec, maintenance: true } },
        { drain: { remaining: 2, migrating: 1, blocked: [] } },
      ),
      ["True", "False", "NotStalled"],
    ],
    [
      "maintenance, every VM left unmovable: Stalled",
      obs(
        { ...h, spec: { ...h.spec, maintenance: true } },
        { drain: { remaining: 1, migrating: 0, blocked: ["db: local disk"] } },
      ),
      ["False", "True", "DrainBlocked"],
    ],
    [
      "drained: neither",
      obs(
        { ...h, spec: { ...h.spec, maintenance: true } },
        { drain: { remaining: 0, migrating: 0, blocked: [] } },
      ),
      ["False", "False", "NotStalled"],
    ],
  ] as const)("%s", (_t, o, want) => {
    expect(both(o)).toEqual(want);
  });
});
