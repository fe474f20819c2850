/**
 * `virtwarden whatif host-down HOST...`: if these hosts failed now, which VMs would come back
 * where, and which would stay down? Against the current state (a standalone controller's state
 * directory, or the API server with --kubernetes); changes nothing.
 *
 * By default the failure is replayed on the simulator by the real controllers (whatif-replay.ts):
 * fencing (a host without a fence agent keeps its VMs down), the storm hold, policies, placement.
 * `--plan` only runs the recovery placement (the scheduler and priority order,
 * src/scheduler/failover.ts) assuming every fence succeeds: instant, and what the failover
 * capacity signal uses.
 */
import { Command } from "commander";
import { parseQuantity } from "../api/quantity.js";
import type { Host, Resource, VirtualMachine } from "../api/types.js";
import { failoverVM } from "../reconcilers/failover-capacity.js";
import { type FailoverPlan, type FailoverVM, planFailover } from "../scheduler/failover.js";
import type { HostCandidate } from "../scheduler/placement.js";
import { formatTable } from "./inspect.js";
import { type Replay, replayHostDown } from "./whatif-replay.js";

/**
 * Placement candidates from each Host's status (readiness, allocatable, networks, images); what
 * is allocated is summed from the VMs placed there (exact, where the Host's own figure may lag).
 */
export function candidatesFromHosts(hosts: Host[], vms: FailoverVM[]): HostCandidate[] {
  const used = new Map<string, { cpuMilli: number; memoryBytes: number }>();
  for (const v of vms) {
    const u = used.get(v.host) ?? { cpuMilli: 0, memoryBytes: 0 };
    u.cpuMilli += v.request.request.cpuMilli;
    u.memoryBytes += v.request.request.memoryBytes;
    used.set(v.host, u);
  }
  return hosts.map((h) => {
    const st = h.status ?? {};
    return {
      name: h.metadata.name,
      labels: h.metadata.labels ?? {},
      ...(h.spec.failureDomain ? { failureDomain: h.spec.failureDomain } : {}),
      ready: st.phase === "Ready",
      schedulable: !h.spec.maintenance && !h.spec.unschedulable,
      allocatable: {
        cpuMilli: (st.allocatable?.cpu ?? 0) * 1000,
        memoryBytes: st.allocatable ? parseQuantity(st.allocatable.memory) : 0,
      },
      allocated: used.get(h.metadata.name) ?? { cpuMilli: 0, memoryBytes: 0 },
      networks: new Set(st.networks ?? []),
      images: new Set(st.images ?? []),
      ...(st.reliability?.mtbfSeconds !== undefined ? { mtbfSeconds: st.reliability.mtbfSeconds } : {}),
    };
  });
}

export function vmsFromStatus(vms: VirtualMachine[]): FailoverVM[] {
  return vms.flatMap((vm) => (vm.status?.host ? [failoverVM(vm, vm.status.host)] : []));
}

export function whatIfHostDown(resources: Resource[], failed: string[]): FailoverPlan {
  const hosts = resources.filter((r): r is Host => r.kind === "Host");
  const unknown = failed.filter((f) => !hosts.some((h) => h.metadata.name === f));
  if (unknown.length > 0) throw new Error(`no such Host: ${unknown.join(", ")}`);
  const vms = vmsFromStatus(resources.filter((r): r is VirtualMachine => r.kind === "VirtualMachine"));
  return planFailover(failed, candidatesFromHosts(hosts, vms), vms);
}

export function formatPlan(plan: FailoverPlan): string {
  const rows = [["VM", "FROM", "OUTCOME", "PRIORITY", "DETAIL"]];
  for (const m of plan.moved) rows.push([m.key, m.from, `-> ${m.to}`, String(m.priority), ""]);
  for (const s of plan.stranded) rows.push([s.key, s.from, "stays down", String(s.priority), s.reason]);
  for (const l of plan.leftDown) rows.push([l.key, l.from, "stays down", "-", "not recovered by its policy"]);
  const total = plan.moved.length + plan.stranded.length + plan.leftDown.length;
  const summary = `if ${plan.failed.join(", ")} failed: ${plan.moved.length}/${total} VMs would run again elsewhere, ${plan.stranded.length} would wait for capacity, ${plan.leftDown.length} left down by policy`;
  return total === 0 ? `${summary}\n` : `${formatTable(rows)}\n\n${summary}\n`;
}

export function formatReplay(r: Replay): string {
  const rows = [["VM", "FROM", "OUTCOME", "DETAIL"]];
  for (const o of r.outcomes)
    rows.push([
      o.vm,
      o.from,
      o.outcome === "moved" ? `-> ${o.to}` : o.outcome === "waiting" ? "waits for capacity" : "stays down",
      o.detail,
    ]);
  const count = (k: string) => r.outcomes.filter((o) => o.outcome === k).length;
  const hosts = r.hosts.map((h) => `${h.name}: ${h.phase}${h.message ? ` (${h.message})` : ""}`).join("; ");
  const summary = `replayed on the simulator, if ${r.failed.join(", ")} failed: ${count("moved")}/${r.outcomes.length} VMs would run again elsewhere, ${count("waiting")} would wait for capacity, ${count("down")} would stay down\nfailed hosts: ${hosts}`;
  return r.outcomes.length === 0 ? `${summary}\n` : `${formatTable(rows)}\n\n${summary}\n`;
}

async function loadResources(opts: { stateDir: string; kubernetes?: boolean; kubeconfig?: string }) {
  if (!opts.kubernetes) {
    const { openStateReadOnly } = await import("../store/files/index.js");
    const view = await openStateReadOnly(opts.stateDir);
    return [
      ...view.list("Host"),
      ...view.list("VirtualMachine"),
      ...view.list("VirtualNetwork"),
      ...view.list("VirtualMachineClass"),
    ];
  }
  const { KubeConfig, CustomObjectsApi } = await import("@kubernetes/client-node");
  const kc = new KubeConfig();
  if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
  else kc.loadFromDefault();
  const { identified } = await import("../store/kube/request.js");
  const api = identified(kc).makeApiClient(CustomObjectsApi);
  const list = async (plural: string, kind: string) => {
    const r = (await api.listClusterCustomObject({
      group: "virtwarden.io",
      version: "v1alpha1",
      plural,
    })) as {
      items: Resource[];
    };
    return r.items.map((i) => ({ ...i, kind }) as Resource);
  };
  return [
    ...(await list("hosts", "Host")),
    ...(await list("virtualmachines", "VirtualMachine")),
    ...(await list("virtualnetworks", "VirtualNetwork")),
    // A VM's size and defaults come from its class: the replay needs them as the controller does.
    ...(await list("virtualmachineclasses", "VirtualMachineClass")),
  ];
}

export function whatifCommand(): Command {
  const cmd = new Command("whatif").description("what would happen if ... (changes nothing)");
  cmd
    .command("host-down")
    .description("which VMs of these hosts would come back where, and which would stay down")
    .argument("<host...>", "Host names")
    .option("--state-dir <dir>", "standalone mode: the controller's state directory", ".virtwarden/state")
    .option("--kubernetes", "read Hosts and VirtualMachines from the API server", false)
    .option("--kubeconfig <path>", "kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
    .option("--plan", "only the recovery placement, assuming every fence succeeds (instant)", false)
    .option("-o, --output <format>", "table | json", "table")
    .action(
      async (
        hosts: string[],
        opts: { stateDir: string; kubernetes: boolean; kubeconfig?: string; output: string; plan: boolean },
      ) => {
        const resources = await loadResources(opts);
        if (opts.plan) {
          const plan = whatIfHostDown(resources, hosts);
          if (opts.output === "json") process.stdout.write(`${JSON.stringify(plan, null, 2)}\n`);
          else process.stdout.write(formatPlan(plan));
          return;
        }
        const replay = await replayHostDown(resources, hosts);
        if (opts.output === "json") process.stdout.write(`${JSON.stringify(replay, null, 2)}\n`);
        else process.stdout.write(formatReplay(replay));
        process.exit(0);
      },
    );
  return cmd;
}
