/**
 * `virtwarden whatif host-down --replay HOST...`: the failure replayed on the simulator by the
 * controllers `virtwarden run` uses. The current state is copied into simulated hosts (their
 * capacity, labels, networks, maintenance flags and fencing kind) with each placed VM running
 * where it runs now; then the named hosts crash, and the host, fencing and VM controllers act:
 * detection, fencing (ipmi and exec become the simulator's agent; manual fencing still waits for
 * an operator, which the replay reports), the storm hold, placement in priority order,
 * anti-affinity, networks and capacity. What each affected VM ended up as is the answer.
 *
 * Time is compressed (50 ms heartbeats); the replay takes a second or two of wall time.
 */
import { Registry } from "prom-client";
import { parseQuantity } from "../api/quantity.js";
import type { Host, Resource, VirtualMachine, VirtualMachineClass, VirtualNetwork } from "../api/types.js";
import { objectKey } from "../api/types.js";
import { silentLogger } from "../controller/log.js";
import { createFenceAgentFactory } from "../providers/fence/index.js";
import { Simulator, simulatorFactory } from "../providers/sim/index.js";
import { MemoryStore } from "../store/memory.js";
import { Runtime } from "./runtime.js";

export interface ReplayOutcome {
  vm: string;
  from: string;
  /** "moved": running elsewhere; "waiting": for capacity; "down": anything else, see detail. */
  outcome: "moved" | "waiting" | "down";
  to?: string;
  detail: string;
}

export interface Replay {
  failed: string[];
  outcomes: ReplayOutcome[];
  /** Each failed host's phase at the end (Fenced, or stuck short of it, and why). */
  hosts: { name: string; phase: string; message: string }[];
}

const HEARTBEAT_S = 0.05;
/** Agents the replay swaps for the simulator's switch: a what-if never touches a real BMC. */
const AUTOMATIC_FENCING = new Set(["ipmi", "exec", "sim", "fence-agents"]);

function simHost(h: Host): Host {
  const spec: Host["spec"] = {
    ...structuredClone(h.spec),
    uri: `sim://${h.metadata.name}`,
    heartbeat: { intervalSeconds: HEARTBEAT_S, missedBeats: h.spec.heartbeat?.missedBeats ?? 3 },
  };
  if (h.spec.fencing && AUTOMATIC_FENCING.has(h.spec.fencing.agent)) {
    const {
      agent: _a,
      address: _ad,
      port: _p,
      cipherSuite: _cs,
      program: _prog,
      options: _o,
      credentialsSecretRef: _c,
      credentialsFile: _f,
      command: _cmd,
      ...rest
    } = h.spec.fencing;
    spec.fencing = { ...rest, agent: "sim" };
  }
  return {
    apiVersion: h.apiVersion,
    kind: "Host",
    metadata: { name: h.metadata.name, ...(h.metadata.labels ? { labels: { ...h.metadata.labels } } : {}) },
    spec,
  };
}

function placedVM(vm: VirtualMachine): VirtualMachine {
  return {
    apiVersion: vm.apiVersion,
    kind: "VirtualMachine",
    metadata: {
      name: vm.metadata.name,
      namespace: vm.metadata.namespace ?? "default",
      ...(vm.metadata.labels ? { labels: { ...vm.metadata.labels } } : {}),
      ...(vm.metadata.creationTimestamp ? { creationTimestamp: vm.metadata.creationTimestamp } : {}),
    },
    spec: structuredClone(vm.spec),
    ...(vm.status?.host ? { status: { host: vm.status.host, phase: "Starting" as const } } : {}),
  };
}

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

export async function replayHostDown(
  resources: Resource[],
  failed: string[],
  opts: { timeoutMs?: number } = {},
): Promise<Replay> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const hosts = resources.filter((r): r is Host => r.kind === "Host");
  const unknown = failed.filter((f) => !hosts.some((h) => h.metadata.name === f));
  if (unknown.length > 0) throw new Error(`no such Host: ${unknown.join(", ")}`);
  const vms = resources.filter((r): r is VirtualMachine => r.kind === "VirtualMachine");
  const images = new Map<string, { pool: string; name: string; capacityBytes: number }>();
  const classes = resources.filter((r): r is VirtualMachineClass => r.kind === "VirtualMachineClass");
  for (const v of [...vms, ...classes])
    for (const d of v.spec.disks ?? [])
      if (d.source?.image) {
        const pool = d.source.image.pool ?? "default";
        images.set(`${pool}/${d.source.image.name}`, {
          pool,
          name: d.source.image.name,
          capacityBytes: 1024 ** 3,
        });
      }
  const sim = new Simulator({ seed: 1, latency: "none", baseImages: [...images.values()] });
  const store = new MemoryStore();
  for (const h of hosts) {
    const cap = h.status?.capacity;
    sim.addHost(h.metadata.name, {
      cpus: cap?.cpu ?? 8,
      memoryBytes: cap?.memory ? parseQuantity(cap.memory) : 32 * 1024 ** 3,
    });
    store.apply(simHost(h));
  }
  for (const c of classes) store.apply({ ...structuredClone(c), metadata: { ...c.metadata } });
  for (const n of resources.filter((r): r is VirtualNetwork => r.kind === "VirtualNetwork"))
    store.apply({ ...structuredClone(n), metadata: { ...n.metadata }, status: undefined } as VirtualNetwork);
  const placed = vms.filter((v) => v.status?.host && !v.metadata.deletionTimestamp);
  for (const v of placed) store.apply(placedVM(v));

  const rt = new Runtime({
    store,
    providerFactory: simulatorFactory(sim),
    fenceAgents: createFenceAgentFactory({
      readSecret: (ref) => store.readSecret(ref),
      simPower: sim,
      simHostName: (h) => h.spec.uri.replace("sim://", ""),
    }),
    registry: new Registry(),
    logger: silentLogger,
    heartbeatIntervalMs: HEARTBEAT_S * 1000,
  });
  try {
    await rt.start();
    const key = (v: VirtualMachine) => objectKey(v.metadata);
    const now = (v: VirtualMachine) => store.get("VirtualMachine", key(v));
    // The world as it is: every placed VM running where it runs now.
    await until(
      () =>
        placed.every((v) => {
          const s = now(v)?.status;
          return s?.host === v.status?.host && (s?.phase === "Running" || s?.phase === "Stopped");
        }),
      timeoutMs,
    );
    const affected = placed.filter((v) => failed.includes(v.status?.host as string));
    for (const f of failed) sim.crashHost(f);
    const settled = (v: VirtualMachine) => {
      const s = now(v)?.status;
      if (!s) return true;
      if (s.phase === "Running" && s.host && !failed.includes(s.host)) return true;
      if (s.phase === "Failed") return true;
      return (s.conditions ?? []).some((c) => c.reason === "WaitingForCapacity");
    };
    // Fencing that needs an operator, a failed fence or a storm hold leave hosts short of
    // Fenced for good: settled once nothing changed for a while after detection.
    let last = "";
    let quietSince = Date.now();
    await until(() => {
      if (affected.every(settled)) return true;
      const snapshot = JSON.stringify([
        ...affected.map((v) => now(v)?.status),
        ...failed.map((f) => store.get("Host", f)?.status?.phase),
      ]);
      if (snapshot !== last) {
        last = snapshot;
        quietSince = Date.now();
      }
      const detected = failed.every((f) => {
        const p = store.get("Host", f)?.status?.phase;
        return p === "Unreachable" || p === "Fencing" || p === "Fenced";
      });
      return detected && Date.now() - quietSince > 40 * HEARTBEAT_S * 1000;
    }, timeoutMs);

    const outcomes: ReplayOutcome[] = affected.map((v) => {
      const s = now(v)?.status ?? {};
      const from = v.status?.host as string;
      const ready = s.conditions?.find((c) => c.type === "Ready");
      if (s.phase === "Running" && s.host && !failed.includes(s.host))
        return { vm: key(v), from, outcome: "moved", to: s.host, detail: "" };
      if (s.conditions?.some((c) => c.reason === "WaitingForCapacity"))
        return { vm: key(v), from, outcome: "waiting", detail: ready?.message ?? "waiting for capacity" };
      const host = store.get("Host", from)?.status;
      const hostWhy = host?.conditions?.find((c) => c.type === "Fenced" || c.type === "Ready");
      const detail =
        s.phase === "Failed"
          ? (ready?.message ?? "left down by its policy")
          : `host ${from} is ${host?.phase ?? "unknown"}${hostWhy?.message ? `: ${hostWhy.message}` : ""}`;
      return { vm: key(v), from, outcome: "down", detail };
    });
    return {
      failed,
      outcomes,
      hosts: failed.map((f) => {
        const st = store.get("Host", f)?.status;
        const c =
          st?.conditions?.find((x) => x.type === "Fenced") ?? st?.conditions?.find((x) => x.type === "Ready");
        return { name: f, phase: st?.phase ?? "unknown", message: c?.message ?? "" };
      }),
    };
  } finally {
    await rt.stop(500);
  }
}
