import { describe, expect, it } from "vitest";
import type { VirtualMachine } from "../../../src/api/types.js";
import type { DomainStateInfo } from "../../../src/providers/types.js";
import {
  decideVM,
  restartBackoffSeconds,
  STEADY_RESYNC_MS,
} from "../../../src/reconcilers/virtualmachine/decide.js";
import { placementRequest } from "../../../src/reconcilers/virtualmachine/placement-request.js";
import { renderDomain } from "../../../src/reconcilers/virtualmachine/render.js";
import { nextStatus } from "../../../src/reconcilers/virtualmachine/status.js";
import type { ObservedVM, OtherCopy } from "../../../src/reconcilers/virtualmachine/types.js";
import type { HostCandidate } from "../../../src/scheduler/placement.js";
import { vm } from "../../support/fixtures.js";

const NOW = new Date("2026-06-01T12:00:00Z");
const GiB = 1024 ** 3;

function candidate(name: string): HostCandidate {
  return {
    name,
    labels: {},
    ready: true,
    schedulable: true,
    allocatable: { cpuMilli: 8000, memoryBytes: 16 * GiB },
    allocated: { cpuMilli: 0, memoryBytes: 0 },
    networks: new Set(),
    images: new Set(),
  };
}

interface Obs {
  domain?:
    | { state: DomainStateInfo; edited?: Partial<ReturnType<typeof renderDomain>>; staleHash?: boolean }
    | "unknown";
  copies?: OtherCopy[];
  hostHealth?: ObservedVM["hostHealth"];
  lastEventAt?: Date;
  candidates?: HostCandidate[];
  hostFailure?: ObservedVM["hostFailure"];
}

function observe(v: VirtualMachine, o: Obs = {}): ObservedVM {
  const desired = renderDomain(v);
  const key = `${v.metadata.namespace}/${v.metadata.name}`;
  let domain: ObservedVM["domain"];
  if (o.domain === "unknown") domain = "unknown";
  else if (o.domain) {
    const spec = { ...desired, ...(o.domain.edited ?? {}) };
    if (o.domain.staleHash && spec.ownership) spec.ownership = { ...spec.ownership, specHash: "old" };
    domain = { state: o.domain.state, spec };
  }
  return {
    key,
    vm: v,
    desired,
    assignedHost: v.status?.host,
    hostHealth: v.status?.host ? (o.hostHealth ?? "ready") : undefined,
    domain,
    otherCopies: o.copies ?? [],
    placement: {
      request: placementRequest(key, v),
      candidates: o.candidates ?? [candidate("a"), candidate("b")],
      placed: [],
    },
    lastEventAt: o.lastEventAt,
    ...(o.hostFailure ? { hostFailure: o.hostFailure } : {}),
    hasFinalizer: (v.metadata.finalizers ?? []).includes("virtwarden.io/cleanup"),
  };
}

const running: DomainStateInfo = { state: "running", reason: "booted" };
const crashed: DomainStateInfo = { state: "shutoff", reason: "crashed" };
const destroyed: DomainStateInfo = { state: "shutoff", reason: "destroyed" };
const guestShutdown: DomainStateInfo = { state: "shutoff", reason: "shutdown" };

const types = (d: ReturnType<typeof decideVM>) => d.actions.map((a) => a.type);

describe("decideVM: placement", () => {
  it("places, provisions, defines and starts a new VM", () => {
    const d = decideVM(observe(vm("web").build()), NOW);
    expect(types(d)).toEqual(["reserve", "provisionDisks", "define", "start"]);
    expect(d.status.host).toBe("a");
    expect(d.status.phase).toBe("Running");
    expect(d.events.map((e) => e.reason)).toEqual(["Scheduled", "Started"]);
  });
  it("adds the finalizer first when missing", () => {
    const d = decideVM(observe(vm("web").noFinalizer().build()), NOW);
    expect(types(d)[0]).toBe("addFinalizer");
  });
  it("stays Pending with the scheduler's reason when nothing fits", () => {
    const d = decideVM(
      observe(
        vm("big")
          .spec({ resources: { cpu: 1, memory: "64Gi" } })
          .build(),
      ),
      NOW,
    );
    expect(types(d)).toEqual([]);
    expect(d.status.phase).toBe("Pending");
    expect(d.summary).toMatchObject({ scheduled: false, reason: "Unschedulable" });
    expect(d.summary.message).toContain("insufficient memory");
    expect(d.requeueAfterMs).toBeGreaterThan(0);
  });
  it("adopts an existing copy instead of placing (controller restart)", () => {
    const d = decideVM(
      observe(vm("web").build(), { copies: [{ host: "b", reachable: true, running: true }] }),
      NOW,
    );
    expect(d.actions).toEqual([{ type: "reserve", host: "b" }]);
    expect(d.status.host).toBe("b");
    expect(d.requeueAfterMs).toBe(0);
  });
  it("spec.placement.preferReliableHosts ranks by the hosts' measured MTBF", () => {
    const hosts = [
      { ...candidate("a"), mtbfSeconds: 3_600 },
      { ...candidate("b"), mtbfSeconds: 7 * 86_400 },
    ];
    const plain = vm("job").build();
    expect(decideVM(observe(plain, { candidates: hosts }), NOW).status.host).toBe("a");
    const asks = vm("job")
      .spec({ placement: { preferReliableHosts: true } })
      .build();
    expect(decideVM(observe(asks, { candidates: hosts }), NOW).status.host).toBe("b");
  });
  it("does not place a Halted VM", () => {
    const d = decideVM(observe(vm("off").strategy("Halted").build()), NOW);
    expect(types(d)).toEqual([]);
    expect(d.status.phase).toBe("Stopped");
  });
  it("places a Manual VM without starting it", () => {
    const d = decideVM(observe(vm("m").strategy("Manual").build()), NOW);
    expect(types(d)).toEqual(["reserve", "provisionDisks", "define"]);
    expect(d.status.phase).toBe("Stopped");
  });
});

describe("decideVM: steady state and drift", () => {
  const placed = () => vm("web").onHost("a").phase("Running").status({ specHash: "x" });
  it("does nothing for a running VM that matches", () => {
    const d = decideVM(observe(placed().build(), { domain: { state: running } }), NOW);
    expect(types(d)).toEqual([]);
    expect(d.drift).toBeUndefined();
    expect(d.requeueAfterMs).toBe(STEADY_RESYNC_MS);
  });
  it("restarts a VM destroyed behind our back and reports state drift", () => {
    const at = new Date(NOW.getTime() - 300);
    const d = decideVM(observe(placed().build(), { domain: { state: destroyed }, lastEventAt: at }), NOW);
    expect(d.actions).toEqual([{ type: "start", host: "a", reason: "Drift" }]);
    expect(d.drift?.fields).toEqual(["state"]);
    expect(d.status.lastDrift).toMatchObject({
      fields: ["state"],
      detectedAt: at.toISOString(),
      correctedAt: NOW.toISOString(),
    });
    expect(d.events.map((e) => e.reason)).toContain("DriftCorrected");
  });
  it("recreates a domain undefined behind our back", () => {
    const d = decideVM(observe(placed().build(), {}), NOW);
    expect(types(d)).toEqual(["provisionDisks", "define", "start"]);
    expect(d.drift?.fields).toEqual(["domain"]);
  });
  it("redefines a domain whose configuration was edited, naming the fields", () => {
    const d = decideVM(
      observe(placed().build(), { domain: { state: running, edited: { vcpus: 4, memoryBytes: 1 } } }),
      NOW,
    );
    expect(types(d)).toEqual(["define"]);
    expect(d.drift?.fields).toEqual(["domain.vcpus", "domain.memory"]);
  });
  it("a spec change a running VM cannot take live waits for a restart: no restart, not drift", () => {
    const d = decideVM(
      observe(placed().generation(2).build(), {
        domain: { state: running, staleHash: true, edited: { vcpus: 2 } },
      }),
      NOW,
    );
    // Not even a define: the old definition (and its hash) keeps the change pending.
    expect(types(d)).toEqual([]);
    expect(d.drift).toBeUndefined();
    expect(d.restartRequired?.fields).toEqual(["spec.resources.cpu (fewer vCPUs: 2 -> 1)"]);
    expect(d.status.specHash).toBe("x");
    expect(d.events.map((e) => e.reason)).toEqual(["RestartRequired"]);
  });
  it("updateStrategy Automatic restarts to apply it, and says which fields forced it", () => {
    const d = decideVM(
      observe(placed().generation(2).spec({ updateStrategy: "Automatic" }).build(), {
        domain: { state: running, staleHash: true, edited: { vcpus: 2 } },
      }),
      NOW,
    );
    expect(types(d)).toEqual(["define", "destroy", "start"]);
    expect(d.restartRequired).toBeUndefined();
    expect(d.events.find((e) => e.reason === "Restarted")?.note).toMatch(
      /updateStrategy Automatic.*spec\.resources\.cpu/,
    );
  });
  it("stops a VM that runs although Halted", () => {
    const d = decideVM(observe(placed().strategy("Halted").build(), { domain: { state: running } }), NOW);
    expect(types(d)).toEqual(["shutdown"]);
    expect(d.status.phase).toBe("Stopping");
  });
  it("forces off a Halted VM still running after a shutdown request", () => {
    const d = decideVM(
      observe(placed().strategy("Halted").phase("Stopping").build(), { domain: { state: running } }),
      NOW,
    );
    expect(types(d)).toEqual(["shutdown", "destroy"]);
  });
  it("leaves a RerunOnFailure VM stopped after the guest shut itself down", () => {
    const d = decideVM(
      observe(placed().strategy("RerunOnFailure").build(), { domain: { state: guestShutdown } }),
      NOW,
    );
    expect(types(d)).toEqual([]);
    expect(d.status.phase).toBe("Stopped");
  });
  it("does not touch a Manual VM's state", () => {
    const d = decideVM(observe(placed().strategy("Manual").build(), { domain: { state: destroyed } }), NOW);
    expect(types(d)).toEqual([]);
    expect(d.status.phase).toBe("Stopped");
  });
  it("waits when the host cannot be asked", () => {
    const d = decideVM(observe(placed().build(), { domain: "unknown", hostHealth: "unreachable" }), NOW);
    expect(types(d)).toEqual([]);
    expect(d.summary).toMatchObject({ reason: "HostUnreachable", degraded: "HostUnreachable" });
  });
  it("keeps a VM whose start failed Starting, and retries without calling it drift", () => {
    const v = vm("app").onHost("a").phase("Stopped").status({ specHash: "x" }).build();
    const d = decideVM(observe(v, { domain: { state: destroyed }, lastEventAt: NOW }), NOW);
    const s = nextStatus({ vm: v, decision: d, error: new Error("no"), now: NOW });
    expect(s.phase).toBe("Starting");
    expect(s.lastDrift?.correctedAt).toBeUndefined();
    expect(s.lastDrift?.fields).toEqual(["state"]);
    const again = vm("app").onHost("a").phase("Starting").status({ specHash: "x" }).build();
    const r = decideVM(observe(again, { domain: { state: destroyed } }), NOW);
    expect(r.actions).toContainEqual({ type: "start", host: "a", reason: "Start" });
    expect(r.drift).toBeUndefined();
    expect(r.status.phase).toBe("Running");
  });

  it("destroys a running stale copy on another host (never two running)", () => {
    const d = decideVM(
      observe(placed().build(), {
        domain: { state: running },
        copies: [{ host: "b", reachable: true, running: true }],
      }),
      NOW,
    );
    expect(d.actions).toEqual([
      { type: "destroy", host: "b" },
      { type: "undefine", host: "b" },
    ]);
    expect(d.events[0]?.reason).toBe("SplitBrainResolved");
  });
  it("leaves an unreachable stale copy for later", () => {
    const d = decideVM(
      observe(placed().build(), {
        domain: { state: running },
        copies: [{ host: "b", reachable: false, running: true }],
      }),
      NOW,
    );
    expect(types(d)).toEqual([]);
  });
});

describe("decideVM: a VM stopped in a crash loop stays stopped until the user acts", () => {
  const lastCrash = new Date(NOW.getTime() - 60_000).toISOString();
  const held = (annotations: Record<string, string> = {}) => {
    const v = vm("db").onHost("a").phase("CrashLoop").build();
    v.metadata.annotations = annotations;
    // Its spec as last applied (the hash a real reconcile recorded), crashes emptied by a restore.
    v.status = {
      ...v.status,
      specHash: renderDomain(v).ownership?.specHash,
      recentCrashes: [],
      lastFailure: { reason: "Crashed", message: "the guest crashed on a", at: lastCrash },
      lastRecovery: { reason: "CrashLoopRestore", failedAt: lastCrash, result: "Failed" },
    };
    return v;
  };
  // Every state an unrelated reconcile can find the stopped domain in: still crashed, shut off by
  // a failed restore's revert, destroyed, or gone from the host.
  const found: [string, Obs["domain"]][] = [
    ["crashed", { state: crashed }],
    ["destroyed", { state: destroyed }],
    ["from-snapshot", { state: { state: "shutoff", reason: "from-snapshot" } }],
    ["undefined", undefined],
  ];
  for (const [what, domain] of found)
    it(`an unrelated reconcile (domain ${what}) starts nothing`, () => {
      const d = decideVM(observe(held(), { domain }), NOW);
      expect(d.actions.filter((a) => a.type === "start")).toEqual([]);
      expect(d.status.phase).toBe("CrashLoop");
      expect(d.summary).toMatchObject({ reason: "CrashLoop", degraded: "CrashLoop" });
      expect(d.summary.message).toMatch(/virtwarden\.io\/restartedAt/);
      expect(d.events.map((e) => e.reason)).not.toContain("Restarted");
      // Said once, not grown on every pass.
      const again = decideVM(
        observe({ ...held(), status: { ...held().status, ...d.status } }, { domain }),
        NOW,
      );
      expect(again.summary.message).toBe(d.summary.message);
    });

  for (const hostHealth of ["fenced", "gone"] as const)
    it(`its host ${hostHealth === "fenced" ? "failing and fenced" : "removed"} starts nothing elsewhere; released, it is recreated there`, () => {
      const d = decideVM(observe(held(), { hostHealth, candidates: [candidate("b")] }), NOW);
      expect(d.actions.filter((a) => a.type === "start")).toEqual([]);
      expect(d.status.phase).toBe("CrashLoop");
      expect(d.summary).toMatchObject({ reason: "CrashLoop", degraded: "CrashLoop" });
      expect(d.events.map((e) => e.reason)).not.toContain("Recovered");
      const v = held({ "virtwarden.io/restartedAt": NOW.toISOString() });
      v.status = { ...v.status, recentCrashes: [lastCrash] };
      const r = decideVM(observe(v, { hostHealth, candidates: [candidate("b")] }), NOW);
      expect(r.status.host).toBe("b");
      expect(r.status.recentCrashes).toEqual([]);
      expect(r.status.phase).not.toBe("CrashLoop");
    });

  it("an annotation older than the crash does not release it; a newer one starts it, crash count reset", () => {
    const old = decideVM(
      observe(held({ "virtwarden.io/restartedAt": "2026-01-01T00:00:00Z" }), { domain: { state: crashed } }),
      NOW,
    );
    expect(types(old)).not.toContain("start");
    const v = held({ "virtwarden.io/restartedAt": NOW.toISOString() });
    v.status = { ...v.status, recentCrashes: [lastCrash] };
    const d = decideVM(observe(v, { domain: { state: crashed } }), NOW);
    expect(types(d)).toContain("start");
    expect(d.status.phase).toBe("Running");
    expect(d.status.recentCrashes).toEqual([]);
    expect(d.events.find((e) => e.reason === "Started")?.note).toMatch(/crash-loop hold was released/);
    // Not a valid time: no release.
    const junk = decideVM(
      observe(held({ "virtwarden.io/restartedAt": "yes please" }), { domain: { state: crashed } }),
      NOW,
    );
    expect(types(junk)).not.toContain("start");
  });

  it("a spec change releases it (the new spec is applied, then started)", () => {
    const v = held();
    v.spec = { ...v.spec, resources: { cpu: 2, memory: "512Mi" } };
    const d = decideVM(observe(v, { domain: { state: crashed, staleHash: true } }), NOW);
    expect(types(d)).toEqual(["define", "start"]);
    expect(d.status.phase).toBe("Running");
  });

  it("runStrategy Halted leaves the hold: Stopped, and Always afterwards starts it", () => {
    const v = held();
    v.spec = { ...v.spec, runStrategy: "Halted" };
    const d = decideVM(observe(v, { domain: { state: crashed } }), NOW);
    expect(types(d)).not.toContain("start");
    expect(d.status.phase).not.toBe("CrashLoop");
  });
});

describe("decideVM: crashes", () => {
  const placed = () => vm("db").onHost("a").phase("Running").status({ specHash: "x" });
  it("restarts the first crash at once and records the recovery from the crash time", () => {
    const at = new Date(NOW.getTime() - 200);
    const d = decideVM(observe(placed().build(), { domain: { state: crashed }, lastEventAt: at }), NOW);
    expect(d.actions).toEqual([{ type: "start", host: "a", reason: "Restart" }]);
    expect(d.status.restartCount).toBe(1);
    expect(d.status.lastRecovery).toMatchObject({
      reason: "Crash",
      failedAt: at.toISOString(),
      result: "Succeeded",
      seconds: 0.2,
    });
    expect(d.recovered).toEqual({ cause: "Crash", seconds: 0.2 });
  });
  it("backs off exponentially on repeated crashes", () => {
    const recent = [new Date(NOW.getTime() - 20_000).toISOString()];
    const d = decideVM(
      observe(placed().status({ recentCrashes: recent, restartCount: 1 }).build(), {
        domain: { state: crashed },
      }),
      NOW,
    );
    expect(types(d)).toEqual([]);
    expect(d.status.phase).toBe("Recovering");
    expect(d.requeueAfterMs).toBe(1000);
  });
  it("restarts once the backoff has passed", () => {
    const recent = [
      new Date(NOW.getTime() - 20_000).toISOString(),
      new Date(NOW.getTime() - 2000).toISOString(),
    ];
    const d = decideVM(
      observe(placed().phase("Recovering").status({ recentCrashes: recent }).build(), {
        domain: { state: crashed },
      }),
      NOW,
    );
    expect(types(d)).toEqual(["start"]);
  });
  it("stops in CrashLoop after the threshold within the window", () => {
    const recent = [1, 2, 3, 4].map((i) => new Date(NOW.getTime() - i * 10_000).toISOString());
    const d = decideVM(
      observe(placed().status({ recentCrashes: recent }).build(), { domain: { state: crashed } }),
      NOW,
    );
    expect(types(d)).toEqual([]);
    expect(d.status.phase).toBe("CrashLoop");
    expect(d.summary.degraded).toBe("CrashLoop");
    expect(d.events.map((e) => e.reason)).toEqual(["Crashed", "CrashLoop"]);
  });
  describe("onCrashLoop RestoreLatestSnapshot", () => {
    const recent = [1, 2, 3, 4].map((i) => new Date(NOW.getTime() - i * 10_000).toISOString());
    const looping = () =>
      placed()
        .spec({ availability: { onCrashLoop: "RestoreLatestSnapshot" } })
        .status({ recentCrashes: recent });
    const crashLoopObs = (crashLoop: ObservedVM["crashLoop"]) => ({
      ...observe(looping().build(), { domain: { state: crashed } }),
      crashLoop,
    });

    it("restores the newest healthy snapshot instead of stopping", () => {
      const d = decideVM(crashLoopObs({ snapshot: "db-good" }), NOW);
      // Named from the VM's uid and the restart count that tripped the threshold, not the clock.
      expect(d.actions).toEqual([
        { type: "restoreSnapshot", snapshot: "db-good", name: "db-crashloop-uiddefau-1" },
      ]);
      expect(d.status.phase).toBe("Recovering");
      expect(d.status.recentCrashes).toEqual([]);
      expect(d.status.lastRecovery).toMatchObject({ reason: "CrashLoopRestore", result: "InProgress" });
      expect(d.summary.reason).toBe("RestoringSnapshot");
    });

    it("waits for its restore, and stops in CrashLoop when the restore failed", () => {
      const restoring = looping()
        .phase("Recovering")
        .status({
          recentCrashes: [],
          lastRecovery: { reason: "CrashLoopRestore", failedAt: NOW.toISOString(), result: "InProgress" },
        })
        .build();
      const waiting = decideVM(
        {
          ...observe(restoring, { domain: { state: crashed } }),
          crashLoop: { restore: { name: "r1", phase: "InProgress" } },
        },
        NOW,
      );
      expect(types(waiting)).toEqual([]);
      expect(waiting.status.phase).toBe("Recovering");
      const failed = decideVM(
        {
          ...observe(restoring, { domain: { state: crashed } }),
          crashLoop: { restore: { name: "r1", phase: "Failed" } },
        },
        NOW,
      );
      expect(failed.status.phase).toBe("CrashLoop");
      expect(failed.status.lastRecovery?.result).toBe("Failed");
      expect(failed.summary.message).toMatch(/restore r1 failed/);
    });

    it("a VM running again after its crash-loop restore failed keeps the recovery Failed", () => {
      // Real-bed chaos (crash-loop seed 2): the controller was killed mid-restore, the new one
      // failed the interrupted restore and resumed the paused domain. The VM runs, but the
      // recovery did not give it the snapshot: the record must not say Succeeded.
      const restoring = looping()
        .phase("Recovering")
        .status({
          recentCrashes: [],
          lastRecovery: { reason: "CrashLoopRestore", failedAt: NOW.toISOString(), result: "InProgress" },
        })
        .build();
      const decideAfterRestore = (phase: string) =>
        decideVM(
          {
            ...observe(restoring, { domain: { state: running } }),
            crashLoop: { restore: { name: "r1", phase } },
          },
          NOW,
        );
      expect(decideAfterRestore("Failed").status.lastRecovery).toMatchObject({
        reason: "CrashLoopRestore",
        result: "Failed",
      });
      expect(decideAfterRestore("Succeeded").status.lastRecovery).toMatchObject({
        reason: "CrashLoopRestore",
        result: "Succeeded",
      });
    });

    it("stops when there is no healthy snapshot, or it loops again right after a restore", () => {
      const none = decideVM(crashLoopObs({}), NOW);
      expect(none.status.phase).toBe("CrashLoop");
      expect(none.summary.message).toMatch(/no snapshot taken while it was healthy/);
      const again = decideVM(
        {
          ...observe(looping().build(), { domain: { state: crashed } }),
          crashLoop: {
            snapshot: "db-good",
            restore: { name: "r1", phase: "Succeeded", createdAt: new Date(NOW.getTime() - 60_000) },
          },
        },
        NOW,
      );
      expect(types(again)).toEqual([]);
      expect(again.summary.message).toMatch(/crash-looped again after a snapshot restore/);
    });

    it("names the restore the same on a retry, whenever it runs, and asks for it again", () => {
      // The first try created the restore and its status write was lost: same status, later clock.
      const first = decideVM(crashLoopObs({ snapshot: "db-good" }), NOW);
      const later = new Date(NOW.getTime() + 30_000);
      const created = { name: "db-crashloop-uiddefau-1", createdAt: NOW };
      for (const phase of [undefined, "Pending", "InProgress"]) {
        const retry = decideVM(
          crashLoopObs({ snapshot: "db-good", restore: { ...created, ...(phase ? { phase } : {}) } }),
          later,
        );
        // Its own restore is not "a restore right before this loop": it is adopted, not a stop.
        expect(retry.actions).toEqual(first.actions);
        expect(retry.status.phase).toBe("Recovering");
        expect(retry.status.lastRecovery).toMatchObject({ reason: "CrashLoopRestore", result: "InProgress" });
      }
      // The same episode's restore already ran and the VM loops still: stopped, not restored twice.
      const ran = decideVM(
        crashLoopObs({ snapshot: "db-good", restore: { ...created, phase: "Succeeded" } }),
        later,
      );
      expect(types(ran)).toEqual([]);
      expect(ran.status.phase).toBe("CrashLoop");
    });

    it("gives another episode, or the same name re-created, another restore name", () => {
      const name = (v: VirtualMachine) =>
        (
          decideVM({ ...observe(v, { domain: { state: crashed } }), crashLoop: { snapshot: "s" } }, NOW)
            .actions[0] as { name?: string } | undefined
        )?.name;
      const a = name(looping().build());
      const b = name(looping().status({ restartCount: 7 }).build());
      const recreated = looping().build();
      recreated.metadata.uid = "0f3e9a77-1111-2222-3333-444444444444";
      const c = name(recreated);
      expect(a).toBe("db-crashloop-uiddefau-1");
      expect(b).toBe("db-crashloop-uiddefau-8");
      expect(c).toBe("db-crashloop-0f3e9a77-1");
    });
  });

  it("forgets crashes older than the window", () => {
    const old = [1, 2, 3, 4].map((i) => new Date(NOW.getTime() - 3600_000 - i).toISOString());
    const d = decideVM(
      observe(placed().status({ recentCrashes: old }).build(), { domain: { state: crashed } }),
      NOW,
    );
    expect(types(d)).toEqual(["start"]);
    expect(d.status.recentCrashes).toHaveLength(1);
  });
  it("does not restart a crashed Manual VM", () => {
    const d = decideVM(observe(placed().strategy("Manual").build(), { domain: { state: crashed } }), NOW);
    expect(types(d)).toEqual([]);
    expect(d.status.phase).toBe("Failed");
  });
  it("grows backoff 0, 1, 2, 4 ... capped", () => {
    const v = vm("x")
      .spec({ availability: { restartBackoff: { initialSeconds: 1, maxSeconds: 5 } } })
      .build();
    expect([1, 2, 3, 4, 5, 6].map((n) => restartBackoffSeconds(v, n))).toEqual([0, 1, 2, 4, 5, 5]);
  });
});

describe("decideVM: host failure", () => {
  const onA = () => vm("app").onHost("a").phase("Running").status({ specHash: "x" });
  const failedAt = new Date(NOW.getTime() - 4_000);
  const fencedAt = new Date(NOW.getTime() - 1_000);
  const hostFailure = { lastHeartbeat: failedAt, fencedAt };

  it("places a VM of a fenced host on another host and times the recovery from the last heartbeat", () => {
    const d = decideVM(
      observe(onA().build(), { hostHealth: "fenced", hostFailure, candidates: [candidate("b")] }),
      NOW,
    );
    expect(d.actions).toEqual([
      { type: "reserve", host: "b" },
      { type: "provisionDisks", host: "b" },
      { type: "define", host: "b" },
      { type: "start", host: "b", reason: "Restart" },
    ]);
    expect(d.status.host).toBe("b");
    expect(d.status.lastRecovery).toMatchObject({
      reason: "HostFailure",
      fromHost: "a",
      toHost: "b",
      failedAt: failedAt.toISOString(),
      detectedAt: fencedAt.toISOString(),
      result: "Succeeded",
      seconds: 4,
    });
    expect(d.recovered).toEqual({ cause: "HostFailure", seconds: 4 });
    expect(d.status.lastFailure?.reason).toBe("HostFailure");
    expect(d.events.map((e) => e.reason)).toEqual(["HostFailed", "Scheduled", "Recovered"]);
  });

  it("releases the VM and waits for capacity with a clear reason when nothing fits", () => {
    const full = { ...candidate("b"), allocated: { cpuMilli: 8000, memoryBytes: 16 * GiB } };
    const d = decideVM(
      observe(onA().build(), { hostHealth: "fenced", hostFailure, candidates: [full] }),
      NOW,
    );
    expect(types(d)).toEqual(["release"]);
    expect(d.status.phase).toBe("Recovering");
    expect(d.status.host).toBeUndefined();
    expect(d.summary.reason).toBe("WaitingForCapacity");
    expect(d.status.lastRecovery?.result).toBe("InProgress");
  });

  it("finishes a waiting recovery when it is placed later", () => {
    const waiting = vm("app")
      .phase("Recovering")
      .status({
        lastRecovery: {
          reason: "HostFailure",
          fromHost: "a",
          failedAt: failedAt.toISOString(),
          detectedAt: fencedAt.toISOString(),
          result: "InProgress",
        },
      })
      .build();
    const d = decideVM(observe(waiting, { candidates: [candidate("c")] }), NOW);
    expect(types(d)).toEqual(["reserve", "provisionDisks", "define", "start"]);
    expect(d.status.lastRecovery).toMatchObject({ toHost: "c", result: "Succeeded", seconds: 4 });
  });

  it("does not start anything while the host is only unreachable (not fenced)", () => {
    const d = decideVM(observe(onA().build(), { hostHealth: "unreachable", domain: "unknown" }), NOW);
    expect(types(d)).toEqual([]);
    expect(d.summary.reason).toBe("HostUnreachable");
  });

  it("follows the VM's only running copy when its host is fenced: neither destroyed nor started again", () => {
    const d = decideVM(
      observe(onA().build(), {
        hostHealth: "fenced",
        hostFailure,
        candidates: [candidate("b"), candidate("c")],
        copies: [
          { host: "b", reachable: true, running: true },
          { host: "c", reachable: true, running: false },
        ],
      }),
      NOW,
    );
    // The defined copy elsewhere goes; the running one is the VM now.
    expect(d.actions).toEqual([
      { type: "undefine", host: "c" },
      { type: "reserve", host: "b" },
    ]);
    expect(d.status.host).toBe("b");
    expect(d.summary.reason).toBe("Adopting");
    expect(d.events.map((e) => e.reason)).toEqual(["StaleCopyRemoved", "HostFailed", "Adopted"]);
    // Still a recovery from a's failure, timed from its last heartbeat, and finished: it runs.
    expect(d.status.phase).toBe("Running");
    expect(d.status.lastRecovery).toMatchObject({
      reason: "HostFailure",
      fromHost: "a",
      toHost: "b",
      result: "Succeeded",
      finishedAt: NOW.toISOString(),
    });
    expect(d.recovered?.cause).toBe("HostFailure");
    expect(d.status.lastFailure?.reason).toBe("HostFailure");
  });

  it("recovers nothing while a copy may run on a host that does not answer", () => {
    const d = decideVM(
      observe(onA().build(), {
        hostHealth: "fenced",
        hostFailure,
        candidates: [candidate("b")],
        copies: [{ host: "c", reachable: false, running: true, uncertain: true }],
      }),
      NOW,
    );
    expect(types(d)).not.toContain("start");
    expect(d.summary.reason).toBe("CopyUncertain");
  });

  /** On a, moving to b (a maintenance migration under way). */
  const movingFromAToB = () =>
    onA()
      .phase("Migrating")
      .status({
        migration: {
          reason: "Maintenance",
          sourceHost: "a",
          targetHost: "b",
          result: "InProgress",
          startedAt: NOW.toISOString(),
        },
      })
      .build();

  it("an unlisted migration target holds the recovery when the source dies: the move may have finished there", () => {
    const v = movingFromAToB();
    const o = observe(v, { hostHealth: "fenced", hostFailure, candidates: [candidate("c")] });
    expect(types(decideVM(o, NOW))).toContain("start");
    const held = decideVM({ ...o, unlistedHosts: ["b"] }, NOW);
    expect(types(held)).not.toContain("start");
    expect(held.summary.reason).toBe("CopyUncertain");
  });

  it("the source fenced during a move whose target was fenced too: recovered elsewhere (the target runs nothing)", () => {
    const v = movingFromAToB();
    // b's last listing shows the VM running; b is fenced (not reachable, not uncertain).
    const copies = [{ host: "b", reachable: false, running: true }];
    const d = decideVM(
      observe(v, { hostHealth: "fenced", hostFailure, candidates: [candidate("c")], copies }),
      NOW,
    );
    expect(d.actions).toContainEqual({ type: "start", host: "c", reason: "Restart" });
    expect(d.status.migration?.result).toBe("Aborted");
    // Not answering (and not fenced), it may hold the VM that arrived: nothing starts.
    const unsure = decideVM(
      observe(v, {
        hostHealth: "fenced",
        hostFailure,
        candidates: [candidate("c")],
        copies: [{ ...copies[0], uncertain: true }] as OtherCopy[],
      }),
      NOW,
    );
    expect(types(unsure)).toEqual([]);
    expect(unsure.summary.reason).toBe("HostUnreachable");
  });

  it("does not adopt a defined copy while a copy may run where none can ask (that one may be the VM)", () => {
    const d = decideVM(
      observe(vm("web").build(), {
        copies: [
          { host: "b", reachable: true, running: false },
          { host: "c", reachable: false, running: true, uncertain: true },
        ],
      }),
      NOW,
    );
    expect(types(d)).not.toContain("reserve");
    expect(types(d)).not.toContain("start");
    expect(d.summary.reason).toBe("CopyUncertain");
  });

  it("leaves the VM down with onHostFailure: Nothing", () => {
    const v = onA()
      .spec({ availability: { onHostFailure: "Nothing" } })
      .build();
    const d = decideVM(observe(v, { hostHealth: "fenced", hostFailure }), NOW);
    expect(types(d)).toEqual([]);
    expect(d.status.phase).toBe("Failed");
    expect(d.summary.reason).toBe("HostFailed");
  });

  it("claims nothing when the recovery's start fails: Recovering, recovery InProgress", () => {
    const d = decideVM(
      observe(onA().build(), { hostHealth: "fenced", hostFailure, candidates: [candidate("b")] }),
      NOW,
    );
    const s = nextStatus({ vm: onA().build(), decision: d, error: new Error("write lock"), now: NOW });
    expect(s.phase).toBe("Recovering");
    expect(s.host).toBe("b");
    expect(s.lastRecovery).toEqual({
      reason: "HostFailure",
      fromHost: "a",
      toHost: "b",
      failedAt: failedAt.toISOString(),
      detectedAt: fencedAt.toISOString(),
      result: "InProgress",
    });
    expect(s.conditions?.find((c) => c.type === "Ready")?.status).toBe("False");
  });

  it("retries a failed recovery start, not as drift, and closes the recovery when it runs", () => {
    const v = vm("app")
      .onHost("b")
      .phase("Recovering")
      .status({
        specHash: "x",
        lastRecovery: {
          reason: "HostFailure",
          fromHost: "a",
          toHost: "b",
          failedAt: failedAt.toISOString(),
          result: "InProgress",
        },
      })
      .build();
    const failedStart: DomainStateInfo = { state: "shutoff", reason: "failed" };
    const d = decideVM(observe(v, { domain: { state: failedStart } }), NOW);
    expect(d.actions).toContainEqual({ type: "start", host: "b", reason: "Restart" });
    expect(d.drift).toBeUndefined();
    expect(d.status.phase).toBe("Running");
    expect(d.status.lastRecovery).toMatchObject({ result: "Succeeded", seconds: 4 });
    expect(d.recovered).toEqual({ cause: "HostFailure", seconds: 4 });
    // Found running (started by the previous attempt after all): closed too.
    const r = decideVM(observe(v, { domain: { state: running } }), NOW);
    expect(r.actions).toEqual([]);
    expect(r.recovered).toEqual({ cause: "HostFailure", seconds: 4 });
  });

  it("recreates the VMs of a removed Host", () => {
    const d = decideVM(observe(onA().build(), { hostHealth: "gone", candidates: [candidate("b")] }), NOW);
    expect(d.status.host).toBe("b");
    expect(d.status.lastFailure?.message).toMatch(/was removed/);
  });
});

describe("decideVM: the work lost by a recovery from a checkpoint", () => {
  const failedAt = new Date(NOW.getTime() - 4_000);
  const takenAt = new Date(failedAt.getTime() - 600_000); // checkpoint 10 min before the failure
  const hostFailure = { lastHeartbeat: failedAt, fencedAt: new Date(NOW.getTime() - 1_000) };
  const job = () =>
    vm("job")
      .spec({ availability: { onHostFailure: "RestoreCheckpoint" } })
      .onHost("a")
      .phase("Running")
      .status({ specHash: "x" });

  it("placing it elsewhere to resume from the checkpoint records the checkpoint and failedAt - its time", () => {
    const o = observe(job().build(), { hostHealth: "fenced", hostFailure, candidates: [candidate("b")] });
    o.checkpoint = { snapshot: "job-ckpt", snapshotTakenAt: takenAt };
    const d = decideVM(o, NOW);
    expect(types(d)).toContain("restoreSnapshot");
    expect(d.status.phase).toBe("Recovering");
    expect(d.status.lastRecovery).toMatchObject({
      result: "InProgress",
      failedAt: failedAt.toISOString(),
      checkpoint: "job-ckpt",
      lostWorkSeconds: 600,
    });
  });

  const recovering = (restorePhase: string) => {
    const v = job()
      .phase("Recovering")
      .status({
        host: "b",
        lastRecovery: {
          reason: "HostFailure",
          fromHost: "a",
          toHost: "b",
          failedAt: failedAt.toISOString(),
          result: "InProgress",
          checkpoint: "job-ckpt",
          lostWorkSeconds: 600,
        },
      })
      .build();
    return { v, restore: { name: "job-ckpt-after-a", phase: restorePhase } };
  };

  it("resumed: the recovery closes with the lost work, and the metric gets it", () => {
    const { v, restore } = recovering("Succeeded");
    const o = observe(v, { domain: { state: { state: "running", reason: "unpaused" } } });
    o.checkpoint = { snapshot: "job-ckpt", snapshotTakenAt: takenAt, restore };
    const d = decideVM(o, NOW);
    expect(d.status.lastRecovery).toMatchObject({
      result: "Succeeded",
      checkpoint: "job-ckpt",
      lostWorkSeconds: 600,
    });
    expect(d.recovered).toEqual({ cause: "HostFailure", seconds: 4, lostWorkSeconds: 600 });
  });

  it("its restore failed and it boots from its disks: no checkpoint and no lost-work figure", () => {
    const { v, restore } = recovering("Failed");
    const o = observe(v, { domain: { state: { state: "shutoff", reason: "unknown" } } });
    o.checkpoint = { snapshot: "job-ckpt", snapshotTakenAt: takenAt, restore };
    const d = decideVM(o, NOW);
    expect(types(d)).toContain("start");
    expect(d.status.lastRecovery?.result).toBe("Succeeded");
    expect(d.status.lastRecovery).not.toHaveProperty("checkpoint");
    expect(d.status.lastRecovery).not.toHaveProperty("lostWorkSeconds");
    expect(d.recovered).toEqual({ cause: "HostFailure", seconds: 4 });
  });

  it("a checkpoint newer than the failure (clock skew) loses nothing, never a negative figure", () => {
    const o = observe(job().build(), { hostHealth: "fenced", hostFailure, candidates: [candidate("b")] });
    o.checkpoint = { snapshot: "job-ckpt", snapshotTakenAt: new Date(failedAt.getTime() + 5_000) };
    expect(decideVM(o, NOW).status.lastRecovery?.lostWorkSeconds).toBe(0);
  });
});

describe("decideVM: deletion", () => {
  it("removes every copy, the disks, then the finalizer", () => {
    const v = vm("web")
      .spec({ disks: [{ name: "root", source: { image: { name: "debian-12.qcow2" } } }] })
      .onHost("a")
      .deleting()
      .build();
    const d = decideVM(
      observe(v, { domain: { state: running }, copies: [{ host: "b", reachable: true, running: false }] }),
      NOW,
    );
    expect(d.actions).toEqual([
      { type: "destroy", host: "a" },
      { type: "undefine", host: "a" },
      { type: "destroy", host: "b" },
      { type: "undefine", host: "b" },
      {
        type: "deleteDisks",
        host: "a",
        volumes: [{ pool: "default", name: "default_web-root.qcow2" }],
      },
      { type: "release" },
      { type: "removeFinalizer" },
    ]);
  });
  describe("disk deletion policy", () => {
    const disks = [
      { name: "root", source: { image: { name: "base.qcow2" } } },
      { name: "copy", source: { image: { name: "base.qcow2", pool: "fast", clone: "full" as const } } },
      { name: "scratch", size: "1Gi" },
      { name: "data", source: { volume: { name: "db-data", pool: "san" } } },
    ];
    const vol = (pool: string, name: string) => ({ pool, name });
    const rows: {
      title: string;
      policies: (undefined | "Delete" | "Retain")[];
      deleted: { pool: string; name: string }[];
      retained: string | undefined;
    }[] = [
      {
        title: "unset: disks the VM created go, an existing volume stays",
        policies: [undefined, undefined, undefined, undefined],
        deleted: [
          vol("default", "default_web-root.qcow2"),
          vol("fast", "default_web-copy.qcow2"),
          vol("default", "default_web-scratch.qcow2"),
        ],
        retained: "kept san/db-data on a (deletionPolicy: Retain)",
      },
      {
        title: "Retain keeps a clone the guest wrote to",
        policies: ["Retain", undefined, "Retain", undefined],
        deleted: [vol("fast", "default_web-copy.qcow2")],
        retained: "kept default/default_web-root.qcow2, default/default_web-scratch.qcow2, san/db-data on a",
      },
      {
        title: "Delete on an existing volume is honoured (said, not assumed)",
        policies: ["Delete", "Delete", "Delete", "Delete"],
        deleted: [
          vol("default", "default_web-root.qcow2"),
          vol("fast", "default_web-copy.qcow2"),
          vol("default", "default_web-scratch.qcow2"),
          vol("san", "db-data"),
        ],
        retained: undefined,
      },
      {
        title: "all retained: no deleteDisks at all",
        policies: ["Retain", "Retain", "Retain", "Retain"],
        deleted: [],
        retained:
          "kept default/default_web-root.qcow2, fast/default_web-copy.qcow2, default/default_web-scratch.qcow2, san/db-data on a",
      },
    ];
    for (const row of rows)
      it(row.title, () => {
        const v = vm("web")
          .spec({
            disks: disks.map((d, i) => {
              const p = row.policies[i];
              return p ? { ...d, deletionPolicy: p } : { ...d };
            }),
          })
          .onHost("a")
          .deleting()
          .build();
        const d = decideVM(observe(v, { domain: { state: running } }), NOW);
        const del = d.actions.find((a) => a.type === "deleteDisks");
        if (row.deleted.length === 0) expect(del).toBeUndefined();
        else expect(del).toEqual({ type: "deleteDisks", host: "a", volumes: row.deleted });
        const kept = d.events.find((e) => e.reason === "DisksRetained");
        if (row.retained === undefined) {
          expect(kept).toBeUndefined();
          expect(d.retained).toBeUndefined();
        } else {
          expect(kept?.note).toContain(row.retained);
          expect(d.retained?.host).toBe("a");
          expect(d.retained?.volumes.length).toBe(4 - row.deleted.length);
        }
        expect(types(d).slice(-2)).toEqual(["release", "removeFinalizer"]);
      });
  });
  it("waits for an unreachable host before removing the finalizer", () => {
    const v = vm("web").onHost("a").deleting().build();
    const d = decideVM(observe(v, { domain: "unknown", hostHealth: "unreachable" }), NOW);
    expect(types(d)).toEqual([]);
    expect(d.summary.reason).toBe("CleanupPending");
  });
});

describe("decideVM: a paused domain", () => {
  const paused: DomainStateInfo = { state: "paused", reason: "user" };
  const placed = () => vm("db").onHost("a").phase("Running").status({ specHash: "x" });
  const ready = (v: VirtualMachine, d: ReturnType<typeof decideVM>) =>
    nextStatus({ vm: v, decision: d, now: NOW }).conditions?.find((c) => c.type === "Ready");
  // Paused and held by nobody (a restore or group snapshot interrupted between its pause and its
  // resume): resumed when the VM should run, never reported Ready while it stays paused.
  const rows: {
    name: string;
    strategy: "Always" | "RerunOnFailure" | "Manual";
    holder?: string;
    actions: string[];
    ready: "True" | "False";
    reason: string;
  }[] = [
    {
      name: "Always, nobody holds it",
      strategy: "Always",
      actions: ["resume"],
      ready: "True",
      reason: "Running",
    },
    {
      name: "RerunOnFailure, nobody holds it",
      strategy: "RerunOnFailure",
      actions: ["resume"],
      ready: "True",
      reason: "Running",
    },
    { name: "Manual, nobody holds it", strategy: "Manual", actions: [], ready: "False", reason: "Paused" },
    {
      name: "a group snapshot's pause window",
      strategy: "Always",
      holder: "VirtualMachineSnapshot shop-1",
      actions: [],
      ready: "True",
      reason: "Running",
    },
    {
      name: "a restore in progress",
      strategy: "Always",
      holder: "VirtualMachineRestore r1",
      actions: [],
      ready: "True",
      reason: "Running",
    },
  ];
  for (const r of rows) {
    it(`paused, ${r.name}: ${r.actions.join(", ") || "left alone"}, Ready=${r.ready}`, () => {
      const v = placed().strategy(r.strategy).build();
      const o = observe(v, { domain: { state: paused } });
      const d = decideVM(r.holder ? { ...o, pauseHolder: r.holder } : o, NOW);
      expect(types(d)).toEqual(r.actions);
      if (r.actions.includes("resume")) {
        expect(d.actions).toContainEqual({ type: "resume", host: "a" });
        expect(d.drift?.fields).toEqual(["state"]);
      }
      expect(types(d)).not.toContain("start");
      const c = ready(v, d);
      expect(c?.status).toBe(r.ready);
      expect(c?.reason).toBe(r.reason);
    });
  }
  it("paused during a live migration (the runner pauses the guest at the end): not resumed", () => {
    const v = placed().build();
    const o: ObservedVM = {
      ...observe(v, { domain: { state: paused } }),
      migrationJob: { state: "running", kind: "live", to: "b", progress: 0.9 },
    };
    expect(types(decideVM(o, NOW))).not.toContain("resume");
  });
  it("a resume that fails is not reported Ready", () => {
    const v = placed().build();
    const d = decideVM(observe(v, { domain: { state: paused } }), NOW);
    const s = nextStatus({ vm: v, decision: d, error: new Error("resume refused"), now: NOW });
    expect(s.conditions?.find((c) => c.type === "Ready")?.status).toBe("False");
  });
});
