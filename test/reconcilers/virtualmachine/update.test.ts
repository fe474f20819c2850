/**
 * Spec changes on a running VM: which go in live, which wait for a restart (the plan, a table),
 * and what the decision and status make of them: live resize without a restart, RestartRequired
 * without a restart, a restart asked by annotation honoured exactly once, updateStrategy
 * Automatic.
 */
import { describe, expect, it } from "vitest";
import type { VirtualMachine } from "../../../src/api/types.js";
import type { DomainSpec, DomainStateInfo } from "../../../src/providers/types.js";
import { decideVM } from "../../../src/reconcilers/virtualmachine/decide.js";
import { placementRequest } from "../../../src/reconcilers/virtualmachine/placement-request.js";
import { InvalidSpecError, renderDomain } from "../../../src/reconcilers/virtualmachine/render.js";
import { nextStatus } from "../../../src/reconcilers/virtualmachine/status.js";
import type { ObservedVM } from "../../../src/reconcilers/virtualmachine/types.js";
import {
  pendingRestartRequest,
  planSpecChange,
  RESTART_ANNOTATION,
} from "../../../src/reconcilers/virtualmachine/update.js";
import { vm } from "../../support/fixtures.js";

const MiB = 1024 ** 2;
const NOW = new Date("2026-06-01T12:00:00Z");
const running: DomainStateInfo = { state: "running", reason: "booted" };

type Resources = NonNullable<VirtualMachine["spec"]["resources"]>;
const withResources = (r: Resources, extra: Partial<VirtualMachine["spec"]> = {}) =>
  vm("web")
    .spec({ resources: r, ...extra })
    .build();

/** The plan from a VM defined with `from` to the same VM with `to`. */
function plan(from: Resources, to: Resources, extra: Partial<VirtualMachine["spec"]> = {}) {
  const before = renderDomain(withResources(from));
  const v = withResources(to, extra);
  return planSpecChange(v, renderDomain(v), before);
}

describe("planSpecChange: live or restart", () => {
  const base: Resources = { cpu: 2, memory: "256Mi", maxCpu: 4, maxMemory: "512Mi" };
  const rows: [string, Resources, Partial<VirtualMachine["spec"]>, ReturnType<typeof plan>][] = [
    [
      "memory up within maxMemory",
      { ...base, memory: "384Mi" },
      {},
      { live: { memoryBytes: 384 * MiB }, restart: [] },
    ],
    [
      "memory down (balloon inflates)",
      { ...base, memory: "128Mi" },
      {},
      { live: { memoryBytes: 128 * MiB }, restart: [] },
    ],
    [
      "memory up to exactly maxMemory",
      { ...base, memory: "512Mi" },
      {},
      { live: { memoryBytes: 512 * MiB }, restart: [] },
    ],
    ["vCPUs up within maxCpu", { ...base, cpu: 3 }, {}, { live: { vcpus: 3 }, restart: [] }],
    ["vCPUs up to exactly maxCpu", { ...base, cpu: 4 }, {}, { live: { vcpus: 4 }, restart: [] }],
    [
      "both at once",
      { ...base, cpu: 4, memory: "500Mi" },
      {},
      { live: { vcpus: 4, memoryBytes: 500 * MiB }, restart: [] },
    ],
    [
      "memory above maxMemory (and maxMemory raised with it)",
      { ...base, memory: "1Gi", maxMemory: "1Gi" },
      {},
      {
        live: {},
        restart: [
          "spec.resources.memory (1Gi is above the running domain's maximum 512Mi)",
          "spec.resources.maxMemory",
        ],
      },
    ],
    [
      "vCPUs above maxCpu",
      { ...base, cpu: 6, maxCpu: 8 },
      {},
      {
        live: {},
        restart: [
          "spec.resources.cpu (6 is above the running domain's maximum of 4 vCPUs)",
          "spec.resources.maxCpu",
        ],
      },
    ],
    [
      "fewer vCPUs",
      { ...base, cpu: 1 },
      {},
      { live: {}, restart: ["spec.resources.cpu (fewer vCPUs: 2 -> 1)"] },
    ],
    [
      "a maximum raised alone needs a restart; the live part still goes live",
      { ...base, cpu: 3, maxCpu: 8 },
      {},
      { live: { vcpus: 3 }, restart: ["spec.resources.maxCpu"] },
    ],
    [
      "a disk's bus",
      base,
      { disks: [{ name: "root", size: "1Gi", bus: "sata" }] },
      { live: {}, restart: ["spec.disks"] },
    ],
    ["the kernel", base, { boot: { kernel: "/boot/vmlinuz" } }, { live: {}, restart: ["spec.boot"] }],
  ];
  for (const [what, to, extra, want] of rows)
    it(what, () => {
      expect(plan(base, to, extra)).toEqual(want);
    });

  describe("NICs: added after the last, or the last removed, go live; others wait", () => {
    const v = (networks: VirtualMachine["spec"]["networks"]) =>
      vm("web").spec({ resources: base, networks }).build();
    const nicPlan = (
      from: VirtualMachine["spec"]["networks"],
      to: VirtualMachine["spec"]["networks"],
      ready: (i: number) => boolean = () => true,
    ) => planSpecChange(v(to), renderDomain(v(to)), renderDomain(v(from)), ready);
    const a = { network: "front" };
    const b = { network: "back" };
    it("one added at the end: plugged in, with the MAC it would have had from the start", () => {
      const p = nicPlan([a], [a, b]);
      expect(p.restart).toEqual([]);
      expect(p.live.attach).toEqual([renderDomain(v([a, b])).interfaces[1]]);
    });
    it("the last removed: unplugged", () => {
      const p = nicPlan([a, b], [a]);
      expect(p).toEqual({ live: { detach: [renderDomain(v([a, b])).interfaces[1]] }, restart: [] });
    });
    it("the first removed (the next one's derived MAC moves): a restart", () => {
      expect(nicPlan([a, b], [b])).toEqual({ live: {}, restart: ["spec.networks"] });
    });
    it("a model changed in place: a restart", () => {
      expect(nicPlan([a], [{ ...a, model: "e1000" }]).restart).toEqual(["spec.networks"]);
    });
    it("one whose network is not ready on the host yet: waits, saying so", () => {
      expect(nicPlan([a], [a, b], (i) => i !== 1)).toEqual({
        live: {},
        restart: ["spec.networks (back not ready on the VM's host)"],
      });
    });
  });

  describe("disks: a hotpluggable one added at the end, or the last removed, go live; others wait", () => {
    const v = (disks: VirtualMachine["spec"]["disks"]) => vm("web").spec({ resources: base, disks }).build();
    const diskPlan = (from: VirtualMachine["spec"]["disks"], to: VirtualMachine["spec"]["disks"]) =>
      planSpecChange(v(to), renderDomain(v(to)), renderDomain(v(from)));
    const root = { name: "root", size: "1Gi" };
    const data = { name: "data", size: "2Gi" };
    it("a virtio disk added at the end: plugged in as the next target", () => {
      const p = diskPlan([root], [root, data]);
      expect(p).toEqual({ live: { attachDisks: [renderDomain(v([root, data])).disks[1]] }, restart: [] });
      expect(p.live.attachDisks?.[0]).toMatchObject({ target: "vdb", volume: "default_web-data.qcow2" });
    });
    it("the last removed: unplugged (its volume stays)", () => {
      expect(diskPlan([root, data], [root])).toEqual({
        live: { detachDisks: [renderDomain(v([root, data])).disks[1]] },
        restart: [],
      });
    });
    it("a sata disk added (no hotplug on that bus), or a bus changed in place: a restart", () => {
      expect(diskPlan([root], [root, { ...data, bus: "sata" }]).restart).toEqual(["spec.disks"]);
      expect(diskPlan([root], [{ ...root, bus: "scsi" }]).restart).toEqual(["spec.disks"]);
    });
  });

  it("memory on a domain without a balloon (no maxMemory) needs a restart", () => {
    expect(plan({ cpu: 1, memory: "256Mi" }, { cpu: 1, memory: "384Mi" })).toEqual({
      live: {},
      restart: ["spec.resources.memory (the running domain has no maxMemory)"],
    });
    // Adding maxMemory later adds the balloon device: a restart.
    expect(plan({ cpu: 1, memory: "256Mi" }, { cpu: 1, memory: "256Mi", maxMemory: "1Gi" }).restart).toEqual([
      "spec.resources.maxMemory",
    ]);
  });

  it("vCPUs reaching maxCpu and the reverse keep the same maximum (no restart)", () => {
    // cpu 4 of maxCpu 4 renders like cpu 4: the domain's maximum is 4 either way.
    const atMax = plan({ cpu: 2, memory: "256Mi", maxCpu: 4 }, { cpu: 4, memory: "256Mi", maxCpu: 4 });
    expect(atMax).toEqual({ live: { vcpus: 4 }, restart: [] });
  });

  it("an instance type names spec.instanceType", () => {
    const v = vm("web").spec({ resources: undefined, instanceType: "medium" }).build();
    const before = { ...renderDomain(v), vcpus: 1 } satisfies DomainSpec;
    expect(planSpecChange(v, renderDomain(v), before).restart[0]).toMatch(/^spec\.instanceType /);
  });

  it("a maximum below its value is refused, naming the field", () => {
    expect(() => renderDomain(withResources({ cpu: 4, memory: "1Gi", maxCpu: 2 }))).toThrow(InvalidSpecError);
    expect(() => renderDomain(withResources({ cpu: 1, memory: "1Gi", maxMemory: "512Mi" }))).toThrow(
      /spec\.resources\.maxMemory: 512Mi is below memory 1Gi/,
    );
  });
});

/** A VM placed on host a, running, whose domain was defined from `from`. */
function observed(v: VirtualMachine, from: VirtualMachine, state = running): ObservedVM {
  const key = `${v.metadata.namespace}/${v.metadata.name}`;
  return {
    key,
    vm: v,
    desired: renderDomain(v),
    assignedHost: "a",
    hostHealth: "ready",
    domain: { state, spec: renderDomain(from) },
    otherCopies: [],
    placement: { request: placementRequest(key, v), candidates: [], placed: [] },
    lastEventAt: undefined,
    hasFinalizer: true,
  };
}

const placed = (r: Resources, extra: Partial<VirtualMachine["spec"]> = {}) => {
  const v = withResources(r, extra);
  v.metadata.creationTimestamp = "2026-06-01T10:00:00Z";
  v.status = { host: "a", phase: "Running", specHash: renderDomain(v).ownership?.specHash };
  return v;
};

/** The same VM with new resources (a user's patch): its status still says what ran before. */
function patched(
  v: VirtualMachine,
  r: Partial<Resources>,
  annotations?: Record<string, string>,
): VirtualMachine {
  const next = structuredClone(v);
  next.spec.resources = { ...(next.spec.resources as Resources), ...r };
  next.metadata.generation = (next.metadata.generation ?? 1) + 1;
  if (annotations) next.metadata.annotations = { ...next.metadata.annotations, ...annotations };
  return next;
}

const types = (d: ReturnType<typeof decideVM>) => d.actions.map((a) => a.type);
const sized: Resources = { cpu: 2, memory: "256Mi", maxCpu: 4, maxMemory: "512Mi" };

describe("decideVM on a running VM whose spec changed", () => {
  it("memory and vCPUs within the maxima: resized live, redefined, never restarted", () => {
    const before = placed(sized);
    const v = patched(before, { cpu: 3, memory: "384Mi" });
    const d = decideVM(observed(v, before), NOW);
    expect(d.actions).toEqual([
      { type: "updateLive", host: "a", change: { vcpus: 3, memoryBytes: 384 * MiB } },
      { type: "define", host: "a" },
    ]);
    expect(d.restartRequired).toBeUndefined();
    expect(d.status.specHash).toBe(renderDomain(v).ownership?.specHash);
    expect(d.events.map((e) => e.reason)).toEqual(["UpdatedLive"]);
    expect(d.events[0]?.note).toBe(
      "changed on the running domain, no restart: vCPUs 2 -> 3, memory 256Mi -> 384Mi",
    );
  });

  it("beyond the maximum: RestartRequired naming the field, nothing restarted, the definition left as it is", () => {
    const before = placed(sized);
    const v = patched(before, { memory: "1Gi", maxMemory: "1Gi" });
    const d = decideVM(observed(v, before), NOW);
    expect(types(d)).toEqual([]);
    expect(d.restartRequired?.fields).toEqual([
      "spec.resources.memory (1Gi is above the running domain's maximum 512Mi)",
      "spec.resources.maxMemory",
    ]);
    expect(d.status.specHash).toBe(before.status?.specHash);
    const s = nextStatus({ vm: v, decision: d, now: NOW });
    const c = s.conditions?.find((x) => x.type === "RestartRequired");
    expect(c).toMatchObject({ status: "True", reason: "NotLiveUpdatable" });
    expect(c?.message).toMatch(/spec\.resources\.memory.*virtwarden restart vm default\/web/);
    // Still Ready: the guest runs; the change waits.
    expect(s.conditions?.find((x) => x.type === "Ready")?.status).toBe("True");
    // Said once: the next pass with that status records no second event.
    const again = decideVM(observed({ ...v, status: s }, before), NOW);
    expect(again.events).toEqual([]);
    expect(types(again)).toEqual([]);
  });

  it("part live, part not: the live part goes in now, the rest waits", () => {
    const before = placed(sized);
    const v = patched(before, { cpu: 3, maxCpu: 8 });
    const d = decideVM(observed(v, before), NOW);
    expect(d.actions).toEqual([{ type: "updateLive", host: "a", change: { vcpus: 3 } }]);
    expect(d.restartRequired?.fields).toEqual(["spec.resources.maxCpu"]);
  });

  it("the restart annotation restarts it once, records status.restartedAt, and RestartRequired clears", () => {
    const before = placed(sized);
    const waiting = patched(before, { memory: "1Gi", maxMemory: "1Gi" });
    const first = decideVM(observed(waiting, before), NOW);
    waiting.status = nextStatus({ vm: waiting, decision: first, now: NOW });
    const asked = "2026-06-01T12:05:00Z";
    const later = new Date("2026-06-01T12:05:01Z");
    const v = { ...waiting, metadata: { ...waiting.metadata, annotations: { [RESTART_ANNOTATION]: asked } } };
    const d = decideVM(observed(v, before), later);
    expect(types(d)).toEqual(["define", "destroy", "start"]);
    expect(d.actions.find((a) => a.type === "start")).toMatchObject({ reason: "SpecChange" });
    expect(d.status.restartedAt).toBe(later.toISOString());
    expect(d.events.find((e) => e.reason === "Restarted")?.note).toMatch(/as asked.*spec\.resources\.memory/);
    const s = nextStatus({ vm: v, decision: d, now: later });
    expect(s.conditions?.some((c) => c.type === "RestartRequired")).toBe(false);
    // The next pass finds the new definition running: nothing more, the annotation is spent.
    const after = decideVM(observed({ ...v, status: s }, v), new Date("2026-06-01T12:06:00Z"));
    expect(types(after)).toEqual([]);
  });

  it("an annotation not later than the last restart, or before the VM existed, asks nothing", () => {
    const before = placed(sized);
    const waiting = patched(before, { memory: "1Gi", maxMemory: "1Gi" });
    const spent = {
      ...waiting,
      metadata: { ...waiting.metadata, annotations: { [RESTART_ANNOTATION]: "2026-06-01T11:00:00Z" } },
      status: { ...waiting.status, restartedAt: "2026-06-01T11:00:00Z" },
    };
    expect(types(decideVM(observed(spent, before), NOW))).toEqual([]);
    const copied = {
      ...waiting,
      metadata: { ...waiting.metadata, annotations: { [RESTART_ANNOTATION]: "2026-05-01T00:00:00Z" } },
    };
    expect(pendingRestartRequest(copied)).toBeUndefined();
    expect(types(decideVM(observed(copied, before), NOW))).toEqual([]);
  });

  it("an asked restart with no spec change restarts it once (virtwarden restart vm)", () => {
    const v = placed(sized);
    v.metadata.annotations = { [RESTART_ANNOTATION]: NOW.toISOString() };
    const d = decideVM(observed(v, v), NOW);
    expect(types(d)).toEqual(["destroy", "start"]);
    expect(d.actions.find((a) => a.type === "start")).toMatchObject({ reason: "Requested" });
    expect(d.status.restartedAt).toBe(NOW.toISOString());
    const again = decideVM(observed({ ...v, status: d.status }, v), new Date(NOW.getTime() + 1000));
    expect(types(again)).toEqual([]);
  });

  it("a request stamped ahead of the controller's clock is recorded as its own time (honoured once)", () => {
    const v = placed(sized);
    const ahead = "2026-06-01T12:00:03Z";
    v.metadata.annotations = { [RESTART_ANNOTATION]: ahead };
    const d = decideVM(observed(v, v), NOW);
    expect(d.status.restartedAt).toBe(new Date(ahead).toISOString());
    expect(types(decideVM(observed({ ...v, status: d.status }, v), NOW))).toEqual([]);
  });

  it("an asked restart with live changes pending restarts once with everything, resizing nothing first", () => {
    const before = placed(sized);
    const v = patched(before, { memory: "300Mi" }, { [RESTART_ANNOTATION]: NOW.toISOString() });
    const d = decideVM(observed(v, before), NOW);
    expect(types(d)).toEqual(["define", "destroy", "start"]);
  });

  it("a restart that failed is not recorded as honoured: the request stands for the retry", () => {
    const v = placed(sized);
    v.metadata.annotations = { [RESTART_ANNOTATION]: NOW.toISOString() };
    const d = decideVM(observed(v, v), NOW);
    expect(d.status.restartedAt).toBe(NOW.toISOString());
    const failed = nextStatus({ vm: v, decision: d, error: new Error("start failed"), now: NOW });
    expect(failed.restartedAt).toBeUndefined();
    expect(pendingRestartRequest({ ...v, status: failed })).toBe(NOW.toISOString());
  });

  it("runStrategy Halted: a running VM is shut down, never restarted or resized for a request or a change", () => {
    const before = placed(sized, { runStrategy: "Halted" });
    const v = patched(before, { memory: "300Mi" }, { [RESTART_ANNOTATION]: NOW.toISOString() });
    const d = decideVM(observed(v, before), NOW);
    expect(types(d)).toEqual(["define", "shutdown"]);
  });

  it("a request on a stopped VM is spent without starting it (its next start is the restart)", () => {
    const v = placed(sized, { runStrategy: "Manual" });
    v.status = { ...v.status, phase: "Stopped" };
    v.metadata.annotations = { [RESTART_ANNOTATION]: NOW.toISOString() };
    const d = decideVM(observed(v, v, { state: "shutoff", reason: "shutdown" }), NOW);
    expect(types(d)).not.toContain("start");
    expect(d.status.restartedAt).toBe(NOW.toISOString());
  });

  it("updateStrategy Automatic restarts at once for what cannot go live, and still resizes live what can", () => {
    const auto = { updateStrategy: "Automatic" as const };
    const before = placed(sized, auto);
    const restart = decideVM(observed(patched(before, { cpu: 1 }), before), NOW);
    expect(types(restart)).toEqual(["define", "destroy", "start"]);
    expect(restart.events[0]?.note).toBe(
      "restarted to apply changes that need a restart (updateStrategy Automatic): spec.resources.cpu (fewer vCPUs: 2 -> 1)",
    );
    const live = decideVM(observed(patched(before, { memory: "300Mi" }), before), NOW);
    expect(types(live)).toEqual(["updateLive", "define"]);
  });

  it("a NIC added: plugged in once its network is ready on the VM's host, waiting until then", () => {
    const before = placed(sized, { networks: [{ network: "front" }] });
    const v = structuredClone(before);
    v.spec.networks = [{ network: "front" }, { network: "back", ip: "10.0.0.5" }];
    v.metadata.generation = 2;
    const o = observed(v, before);
    const mac = renderDomain(v).interfaces[1]?.mac as string;
    const host = (networks: string[]) => ({
      name: "a",
      labels: {},
      ready: true,
      schedulable: true,
      allocatable: { cpuMilli: 8000, memoryBytes: 8 * 1024 * MiB },
      allocated: { cpuMilli: 0, memoryBytes: 0 },
      networks: new Set(networks),
      images: new Set<string>(),
    });
    // The network is there but not yet its fixed lease for this NIC: wait.
    const waiting = decideVM(
      { ...o, placement: { ...o.placement, candidates: [host(["default/back"])] } },
      NOW,
    );
    expect(types(waiting)).toEqual([]);
    expect(waiting.restartRequired?.fields).toEqual(["spec.networks (back not ready on the VM's host)"]);
    const ready = decideVM(
      {
        ...o,
        placement: { ...o.placement, candidates: [host(["default/back", `default/back#${mac}=10.0.0.5`])] },
      },
      NOW,
    );
    expect(ready.actions).toEqual([
      { type: "updateLive", host: "a", change: { attach: [renderDomain(v).interfaces[1]] } },
      { type: "define", host: "a" },
    ]);
    expect(ready.events[0]?.note).toMatch(/NIC 52:54:00:\S+ on default_back plugged in/);
  });

  it("a disk added: its volume provisioned, then plugged in, then the definition", () => {
    const before = placed(sized, { disks: [{ name: "root", size: "1Gi" }] });
    const v = structuredClone(before);
    v.spec.disks = [...(v.spec.disks ?? []), { name: "data", size: "2Gi" }];
    v.metadata.generation = 2;
    const d = decideVM(observed(v, before), NOW);
    expect(types(d)).toEqual(["provisionDisks", "updateLive", "define"]);
    expect(d.restartRequired).toBeUndefined();
  });

  it("a crash while a change waits boots the new definition (no restart request needed)", () => {
    const before = placed(sized);
    const v = patched(before, { memory: "1Gi", maxMemory: "1Gi" });
    const d = decideVM(observed(v, before, { state: "shutoff", reason: "crashed" }), NOW);
    expect(types(d)).toEqual(["define", "start"]);
    expect(d.restartRequired).toBeUndefined();
  });
});
