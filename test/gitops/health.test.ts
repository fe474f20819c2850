/**
 * Flux and Argo CD health of virtwarden objects, computed by the engines those tools run, on
 * objects read back from a real kube-apiserver: kstatus (sigs.k8s.io/cli-utils status.Compute)
 * and gopher-lua running examples/gitops/argocd-health.yaml (test/support/gitops-health).
 *
 * Each VM state's status is made by the controller's own code, written through the status
 * subresource and read back: decideVM + nextStatus on an observation in that state (placing,
 * running, crash loop, unschedulable, host failure); where an observation is long to stage
 * (a migration under way, a restart backoff, a failed start, a blocked drain) nextStatus on the
 * decision decide.ts returns there.
 * The harness is built from its Go module (cached by source hash); a missing Go or a failed
 * build fails this file, under CI and everywhere else: it is never skipped.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VirtualMachine, VirtualMachineStatus, VirtualNetwork } from "../../src/api/types.js";
import type { DomainStateInfo } from "../../src/providers/types.js";
import { decideHost, type ObservedHost } from "../../src/reconcilers/host/decide.js";
import { DEFAULT_DEADLINES_S } from "../../src/reconcilers/virtualmachine/deadlines.js";
import { decideVM } from "../../src/reconcilers/virtualmachine/decide.js";
import { placementRequest } from "../../src/reconcilers/virtualmachine/placement-request.js";
import { renderDomain } from "../../src/reconcilers/virtualmachine/render.js";
import { nextStatus } from "../../src/reconcilers/virtualmachine/status.js";
import type { ObservedVM, VMDecision } from "../../src/reconcilers/virtualmachine/types.js";
import { NETWORK_STALL_MS, networkStatus } from "../../src/reconcilers/virtualnetwork/status.js";
import { type KubeApiServer, startKubeApiServer } from "../support/kube/apiserver.js";

const ROOT = join(import.meta.dirname, "..", "..");
const ARGO_CM = join(ROOT, "examples/gitops/argocd-health.yaml");
let kube: KubeApiServer;
let harness: string;

interface Health {
  status: string;
  message: string;
}

beforeAll(async () => {
  harness = execFileSync("bash", [join(ROOT, "test/support/gitops-health/build.sh")], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    timeout: 20 * 60_000,
  }).trim();
  kube = await startKubeApiServer();
  kube.kubectl(["apply", "-k", join(ROOT, "crds")]);
  kube.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
}, 1_800_000);

afterAll(async () => {
  await kube?.stop();
});

function health(objs: unknown[]): { kstatus: Health[]; argo: Health[] } {
  const input = JSON.stringify(objs);
  const run = (args: string[]) =>
    JSON.parse(execFileSync(harness, args, { input, encoding: "utf8" })) as Health[];
  return { kstatus: run(["kstatus"]), argo: run(["argocd", ARGO_CM]) };
}

const vmYaml = (name: string, extra = "", cpu = 1) =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: ${name}, namespace: default}\nspec:\n  resources: {cpu: ${cpu}, memory: 1Gi}\n${extra}`;

function get(kind: string, name: string): VirtualMachine {
  return JSON.parse(kube.kubectl(["get", kind, name, "-o", "json"]).stdout) as VirtualMachine;
}

function writeStatus(kind: string, name: string, status: unknown): void {
  kube.kubectl([
    "patch",
    kind,
    name,
    "--subresource=status",
    "--type=merge",
    "-p",
    JSON.stringify({ status }),
  ]);
}

type Summary = VMDecision["summary"];
const decision = (status: VirtualMachineStatus, summary: Summary, actions: VMDecision["actions"] = []) =>
  ({ actions, status, summary, drift: undefined, events: [], requeueAfterMs: undefined }) as VMDecision;

/** Create the VM, compute its status with nextStatus as the reconciler does, write it, read it back. */
function vmIn(name: string, make: (vm: VirtualMachine) => VirtualMachineStatus, extra = ""): VirtualMachine {
  kube.kubectl(["apply", "-f", "-"], { input: vmYaml(name, extra) });
  const vm = get("vm", name);
  writeStatus("vm", name, make(vm));
  return get("vm", name);
}

const T0 = new Date("2026-12-02T10:00:00Z");
const GiB = 1024 ** 3;
const roomy = {
  name: "h1",
  labels: {},
  ready: true,
  schedulable: true,
  allocatable: { cpuMilli: 8000, memoryBytes: 16 * GiB },
  allocated: { cpuMilli: 0, memoryBytes: 0 },
  networks: new Set<string>(),
  images: new Set<string>(),
};

/**
 * What the reconciler observes, for decideVM: the VM as read from the API server (its status as
 * it stands), one host h1 (or none with room), the domain on it in `state` when placed.
 */
function observed(
  vm: VirtualMachine,
  o: {
    state?: DomainStateInfo;
    room?: boolean;
    hostHealth?: ObservedVM["hostHealth"];
    hostStalled?: string;
  } = {},
): ObservedVM {
  const desired = renderDomain(vm);
  const key = `${vm.metadata.namespace}/${vm.metadata.name}`;
  return {
    key,
    vm,
    desired,
    assignedHost: vm.status?.host,
    hostHealth: vm.status?.host ? (o.hostHealth ?? "ready") : undefined,
    ...(o.hostStalled ? { hostStalled: o.hostStalled } : {}),
    domain: vm.status?.host && o.state ? { state: o.state, spec: desired } : undefined,
    otherCopies: [],
    placement: {
      request: placementRequest(key, vm),
      candidates: o.room === false ? [] : [roomy],
      placed: [],
    },
    lastEventAt: undefined,
    hasFinalizer: true,
  };
}

/** The status the reconciler writes: decideVM then nextStatus, both the controller's code. */
const decided = (vm: VirtualMachine, now: Date, o?: Parameters<typeof observed>[1]) =>
  nextStatus({ vm, decision: decideVM(observed(vm, o), now), now });
const running: Summary = { scheduled: true, synced: true, reason: "Applied", message: "" };

describe("health of a VirtualMachine in each state (kstatus for Flux, Lua for Argo CD)", () => {
  const rows: { state: string; obj: () => unknown; kstatus: string; argo: string }[] = [];
  const seen = new Map<string, unknown>();
  const row = (state: string, kstatus: string, argo: string, obj: () => unknown) =>
    rows.push({ state, obj, kstatus, argo });

  row("no status yet", "InProgress", "Progressing", () => {
    kube.kubectl(["apply", "-f", "-"], { input: vmYaml("fresh") });
    const vm = get("vm", "fresh");
    // The CRD's status default, applied by the API server on read.
    expect(vm.status).toEqual({ observedGeneration: 0 });
    return vm;
  });
  row("placing (no host has room yet)", "InProgress", "Progressing", () =>
    vmIn("placing", (vm) => decided(vm, T0, { room: false })),
  );
  row("starting (the start failed, retried)", "InProgress", "Progressing", () =>
    vmIn("starting", (vm) =>
      nextStatus({
        vm,
        decision: decision({ phase: "Running", host: "h1" }, running, [
          { type: "start", host: "h1", reason: "Start" },
        ]),
        error: new Error("libvirt: connection reset"),
        now: T0,
      }),
    ),
  );
  row("migrating", "InProgress", "Progressing", () =>
    vmIn("migrating", (vm) =>
      nextStatus({
        vm,
        decision: decision(
          { phase: "Migrating", host: "h1" },
          { scheduled: true, synced: false, reason: "Migrating", message: "live migration to h2" },
        ),
        now: T0,
      }),
    ),
  );
  row("recovering after a crash (restart backoff)", "InProgress", "Progressing", () =>
    vmIn("recovering", (vm) =>
      nextStatus({
        vm,
        decision: decision(
          { phase: "Recovering", host: "h1", restartCount: 2 },
          {
            scheduled: true,
            synced: false,
            reason: "RestartBackoff",
            message: "crashed 2 time(s); restarting in 2s",
            degraded: "Crashed",
          },
        ),
        now: T0,
      }),
    ),
  );
  row("running (placed and started)", "Current", "Healthy", () =>
    vmIn("running", (vm) => {
      const st = decided(vm, T0);
      expect([st.phase, st.host]).toEqual(["Running", "h1"]);
      return st;
    }),
  );
  row("running, drain blocked (Degraded=True, Ready=True)", "Current", "Degraded", () =>
    vmIn("drain", (vm) =>
      nextStatus({
        vm,
        decision: decision(
          { phase: "Running", host: "h1" },
          { ...running, degraded: "DrainBlocked", message: "no host can take it" },
        ),
        now: T0,
      }),
    ),
  );
  row("halted and stopped", "Current", "Suspended", () =>
    vmIn(
      "halted",
      (vm) =>
        nextStatus({
          vm,
          decision: decision(
            { phase: "Stopped" },
            { scheduled: false, synced: true, reason: "Halted", message: "runStrategy Halted: not placed" },
          ),
          now: T0,
        }),
      "  runStrategy: Halted\n",
    ),
  );
  row("crash loop (5th crash within the window)", "Failed", "Degraded", () =>
    vmIn("crashloop", (vm) => {
      const recent = [1, 2, 3, 4].map((i) => new Date(T0.getTime() - i * 10_000).toISOString());
      const before = {
        ...vm,
        status: {
          ...vm.status,
          phase: "Running" as const,
          host: "h1",
          recentCrashes: recent,
          restartCount: 4,
        },
      };
      const st = decided(before, T0, { state: { state: "shutoff", reason: "crashed" } });
      expect(st.phase).toBe("CrashLoop");
      return st;
    }),
  );
  row("unschedulable past the bound", "Failed", "Degraded", () =>
    vmIn("unschedulable", (vm) => {
      const first = decided(vm, T0, { room: false });
      // A later reconcile of the same VM, still with nowhere to go.
      const later = new Date(T0.getTime() + DEFAULT_DEADLINES_S.placing * 1000);
      return decided({ ...vm, status: first }, later, { room: false });
    }),
  );
  row("host failed, onHostFailure Nothing", "Failed", "Degraded", () =>
    vmIn(
      "leftdown",
      (vm) => {
        const before = { ...vm, status: { ...vm.status, phase: "Running" as const, host: "h1" } };
        const st = decided(before, T0, { hostHealth: "fenced" });
        expect(st.phase).toBe("Failed");
        return st;
      },
      "  availability: {onHostFailure: Nothing}\n",
    ),
  );
  row("host unreachable, being fenced", "InProgress", "Progressing", () =>
    vmIn("unreachable", (vm) =>
      decided({ ...vm, status: { ...vm.status, phase: "Running" as const, host: "h1" } }, T0, {
        hostHealth: "unreachable",
      }),
    ),
  );
  row("host unreachable and its fencing failed", "Failed", "Degraded", () =>
    vmIn("fencefailed", (vm) => {
      const st = decided({ ...vm, status: { ...vm.status, phase: "Running" as const, host: "h1" } }, T0, {
        hostHealth: "unreachable",
        hostStalled: "FenceFailed: fence agent ipmi: BMC does not answer",
      });
      expect(st.conditions?.find((c) => c.type === "Stalled")?.message).toContain("BMC does not answer");
      return st;
    }),
  );
  row("generation ahead of observedGeneration", "InProgress", "Progressing", () => {
    vmIn("ahead", (vm) =>
      nextStatus({ vm, decision: decision({ phase: "Running", host: "h1" }, running), now: T0 }),
    );
    kube.kubectl(["apply", "-f", "-"], { input: vmYaml("ahead", "", 2) });
    const vm = get("vm", "ahead");
    expect(vm.metadata.generation).toBe(2);
    expect(vm.status?.observedGeneration).toBe(1);
    return vm;
  });
  row("deleting (finalizer held)", "Terminating", "Progressing", () => {
    vmIn("deleting", (vm) =>
      nextStatus({ vm, decision: decision({ phase: "Running", host: "h1" }, running), now: T0 }),
    );
    kube.kubectl([
      "patch",
      "vm",
      "deleting",
      "--type=merge",
      "-p",
      '{"metadata":{"finalizers":["virtwarden.io/cleanup"]}}',
    ]);
    kube.kubectl(["delete", "vm", "deleting", "--wait=false"]);
    const vm = get("vm", "deleting");
    expect(vm.metadata.deletionTimestamp).toBeTruthy();
    return vm;
  });

  it("every state gives the expected health in both engines", () => {
    const objs = rows.map((r) => {
      const o = r.obj();
      seen.set(r.state, o);
      return o;
    });
    const { kstatus, argo } = health(objs);
    const got = rows.map((r, i) => `${r.state}: ${kstatus[i]?.status} / ${argo[i]?.status}`);
    const want = rows.map((r) => `${r.state}: ${r.kstatus} / ${r.argo}`);
    console.log(
      rows
        .map(
          (r, i) =>
            `${r.state} | ${kstatus[i]?.status} (${kstatus[i]?.message}) | ${argo[i]?.status} (${argo[i]?.message})`,
        )
        .join("\n"),
    );
    expect(got).toEqual(want);
  });

  it("InProgress -> Current once the controller reports the VM running", () => {
    kube.kubectl(["apply", "-f", "-"], { input: vmYaml("flow") });
    const before = health([get("vm", "flow")]);
    const vm = get("vm", "flow");
    writeStatus(
      "vm",
      "flow",
      nextStatus({ vm, decision: decision({ phase: "Running", host: "h1" }, running), now: T0 }),
    );
    const after = health([get("vm", "flow")]);
    expect([before.kstatus[0]?.status, after.kstatus[0]?.status]).toEqual(["InProgress", "Current"]);
    expect([before.argo[0]?.status, after.argo[0]?.status]).toEqual(["Progressing", "Healthy"]);
  });
});

describe("health of the other kinds (Argo CD Lua; kstatus for snapshots and restores)", () => {
  const cond = (type: string, status: string, reason: string, generation = 1) => ({
    type,
    status,
    reason,
    message: `${type} ${reason}`,
    lastTransitionTime: T0.toISOString(),
    observedGeneration: generation,
  });

  it("Host, VirtualNetwork, VirtualMachineSnapshot and VirtualMachineRestore", () => {
    const apply = (yaml: string) => kube.kubectl(["apply", "-f", "-"], { input: yaml });
    const hosts = ["h-new", "h-ready", "h-maint", "h-fencefail"];
    for (const h of hosts)
      apply(
        `apiVersion: virtwarden.io/v1alpha1\nkind: Host\nmetadata: {name: ${h}}\nspec: {uri: "qemu+ssh://root@${h}/system"}\n`,
      );
    // Ready and fence-failed statuses as decideHost writes them (the others staged by hand).
    const hostObs = (name: string, over: Partial<ObservedHost>): ObservedHost => ({
      host: {
        apiVersion: "virtwarden.io/v1alpha1",
        kind: "Host",
        metadata: { name, generation: 1 },
        spec: { uri: `qemu+ssh://root@${name}/system` },
      },
      connected: true,
      info: {
        hostname: name,
        cpus: 8,
        memoryBytes: 32 * 1024 ** 3,
        freeMemoryBytes: 30 * 1024 ** 3,
        hypervisorType: "QEMU",
        hypervisorVersion: "7.2.0",
        kvm: true,
      },
      lastHeartbeat: new Date(),
      missedBeats: 0,
      lastError: undefined,
      allocated: { cpuMilli: 0, memoryBytes: 0 },
      vmCount: 0,
      networks: [],
      images: [],
      fence: { state: "notNeeded" },
      ...over,
    });
    writeStatus("host", "h-ready", decideHost(hostObs("h-ready", {}), new Date()).status);
    writeStatus("host", "h-maint", {
      phase: "Maintenance",
      observedGeneration: 1,
      conditions: [cond("Ready", "True", "Maintenance")],
    });
    const failing = hostObs("h-fencefail", {
      connected: false,
      missedBeats: 9,
      lastError: "connection refused",
      fence: { state: "failed", message: "fence agent ipmi: BMC does not answer" },
    });
    failing.host.status = { phase: "Fencing" };
    writeStatus("host", "h-fencefail", decideHost(failing, new Date()).status);
    const nets = ["net-new", "net-ok", "net-partial", "net-bad", "net-stalled"];
    for (const n of nets)
      apply(
        `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualNetwork\nmetadata: {name: ${n}, namespace: default}\nspec: {mode: bridge, bridge: br0}\n`,
      );
    // Statuses as networkStatus writes them: realised on all, on some, on none (just now), and on
    // none for longer than the stall bound.
    const net = (name: string): VirtualNetwork => ({
      ...(get("virtualnetwork", name) as unknown as VirtualNetwork),
      status: undefined,
    });
    const ok = (host: string) => ({ host, ready: true });
    const bad = (host: string) => ({ host, ready: false, message: "bridge br0 does not exist" });
    const now = new Date();
    writeStatus("virtualnetwork", "net-ok", networkStatus(net("net-ok"), [ok("h1"), ok("h2")], [], now));
    writeStatus(
      "virtualnetwork",
      "net-partial",
      networkStatus(net("net-partial"), [ok("h1"), bad("h2")], [], now),
    );
    writeStatus("virtualnetwork", "net-bad", networkStatus(net("net-bad"), [bad("h1")], [], now));
    const first = networkStatus(
      net("net-stalled"),
      [bad("h1")],
      [],
      new Date(now.getTime() - NETWORK_STALL_MS),
    );
    writeStatus(
      "virtualnetwork",
      "net-stalled",
      networkStatus({ ...net("net-stalled"), status: first }, [bad("h1")], [], now),
    );
    const snaps = ["s-new", "s-run", "s-ok", "s-fail"];
    for (const s of snaps)
      apply(
        `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachineSnapshot\nmetadata: {name: ${s}, namespace: default}\nspec: {vmName: db}\n`,
      );
    for (const r of ["r-run", "r-fail"])
      apply(
        `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachineRestore\nmetadata: {name: ${r}, namespace: default}\nspec: {snapshotName: s-ok}\n`,
      );
    const phased = (phase: string, ready: boolean) => ({
      phase,
      observedGeneration: 1,
      conditions: [
        cond("Ready", ready ? "True" : "False", phase),
        cond("Reconciling", phase === "InProgress" ? "True" : "False", phase),
        cond("Stalled", phase === "Failed" ? "True" : "False", phase),
      ],
    });
    writeStatus("virtualmachinesnapshot", "s-run", phased("InProgress", false));
    writeStatus("virtualmachinesnapshot", "s-ok", phased("Succeeded", true));
    writeStatus("virtualmachinesnapshot", "s-fail", phased("Failed", false));
    writeStatus("virtualmachinerestore", "r-run", phased("InProgress", false));
    writeStatus("virtualmachinerestore", "r-fail", phased("Failed", false));
    const objs = [
      ...hosts.map((h) => get("host", h)),
      ...nets.map((n) => get("virtualnetwork", n)),
      ...snaps.map((s) => get("virtualmachinesnapshot", s)),
      ...["r-run", "r-fail"].map((r) => get("virtualmachinerestore", r)),
    ];
    const { kstatus, argo } = health(objs);
    const names = objs.map((o) => (o as VirtualMachine).metadata.name);
    expect(names.map((n, i) => `${n}: ${argo[i]?.status}`)).toEqual([
      "h-new: Progressing",
      "h-ready: Healthy",
      "h-maint: Suspended",
      "h-fencefail: Degraded",
      "net-new: Progressing",
      "net-ok: Healthy",
      "net-partial: Progressing",
      "net-bad: Progressing",
      "net-stalled: Degraded",
      "s-new: Progressing",
      "s-run: Progressing",
      "s-ok: Healthy",
      "s-fail: Degraded",
      "r-run: Progressing",
      "r-fail: Degraded",
    ]);
    const k = (n: string) => kstatus[names.indexOf(n)]?.status;
    expect(
      ["s-new", "s-run", "s-ok", "s-fail", "r-run", "r-fail", "h-new", "h-ready", "h-fencefail", ...nets].map(
        (n) => `${n}: ${k(n)}`,
      ),
    ).toEqual([
      "s-new: InProgress",
      "s-run: InProgress",
      "s-ok: Current",
      "s-fail: Failed",
      "r-run: InProgress",
      "r-fail: Failed",
      "h-new: InProgress",
      "h-ready: Current",
      "h-fencefail: Failed",
      "net-new: InProgress",
      "net-ok: Current",
      "net-partial: InProgress",
      "net-bad: InProgress",
      "net-stalled: Failed",
    ]);
  });
});
