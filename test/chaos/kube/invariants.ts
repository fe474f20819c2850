/**
 * The invariants of Kubernetes-mode chaos, checked without the code under test: QEMU processes
 * per guest from the hosts' pid files and /proc (guestsOf), `virsh` on each host's own socket,
 * and the API server's objects read with a plain @kubernetes/client-node client.
 *
 * - `CopyWatch`: every 150 ms, which hosts have a QEMU for each guest; when a guest has QEMUs on
 *   two hosts, virsh is asked on both: two `running` is a violation (a paused migration or
 *   restore target alone is not).
 * - `converged()`: every declared VM exists with the uid it was created with, is Running with
 *   status.host where its only QEMU runs (virsh: running); no domain on a live host that no VM
 *   owns there; no volume in the shared pool that no VM owns; restores and snapshots exactly the
 *   ones the test created (plus host-failure recovery restores, one per failure).
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import type { Testbed, TestHost } from "../../support/testbed/index.js";
import { guestsOf } from "../../support/testbed/watch.js";

const run = promisify(execFile);
const GROUP = "virtwarden.io";
const VERSION = "v1alpha1";

export async function virsh(h: TestHost, args: string[]): Promise<string | undefined> {
  try {
    const { stdout } = await run("virsh", ["-q", "-c", h.unixUri, ...args], { timeout: 10_000 });
    return stdout;
  } catch {
    return undefined;
  }
}

export interface KObj {
  metadata: {
    name: string;
    namespace?: string;
    uid: string;
    labels?: Record<string, string>;
    deletionTimestamp?: string;
  };
  spec: Record<string, unknown>;
  status?: {
    phase?: string;
    host?: string;
    error?: string;
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
    lastRecovery?: { reason?: string; fromHost?: string; toHost?: string; result?: string };
  };
}

export class Api {
  private readonly custom: CustomObjectsApi;
  constructor(kc: KubeConfig) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }
  async list(plural: string): Promise<KObj[]> {
    const out = (await this.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural })) as {
      items: KObj[];
    };
    return out.items;
  }
  /** undefined when the API server does not answer. */
  async tryList(plural: string): Promise<KObj[] | undefined> {
    try {
      return await this.list(plural);
    } catch {
      return undefined;
    }
  }
}

export class CopyWatch {
  readonly violations: string[] = [];
  samples = 0;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  constructor(private readonly tb: Testbed) {}

  start(): void {
    this.timer = setInterval(() => void this.sample(), 150);
  }

  private async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const guests = guestsOf(this.tb);
      this.samples++;
      for (const [guest, hosts] of guests) {
        if (hosts.length < 2) continue;
        const states = await Promise.all(
          hosts.map(async (name) => {
            const h = this.tb.hosts.find((x) => x.name === name) as TestHost;
            return ((await virsh(h, ["domstate", guest])) ?? "").trim();
          }),
        );
        const running = hosts.filter((_, i) => states[i] === "running");
        if (running.length > 1)
          this.violations.push(`${new Date().toISOString()} ${guest} running on ${running.join(" and ")}`);
      }
    } finally {
      this.busy = false;
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (let i = 0; i < 100 && this.busy; i++) await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Expected {
  /** VM name (namespace default) -> uid it was created with. */
  vms: Map<string, string>;
  /** VirtualMachineRestore names the test created. */
  restores: Set<string>;
  /** VirtualMachineSnapshot names the test created. */
  snapshots: Set<string>;
  /** Hosts that are off for good (fenced): their state is not looked at. */
  deadHosts: Set<string>;
}

export const domainName = (vm: string) => `default_${vm}`;

/** What is wrong now; empty when converged. */
export async function problems(api: Api, tb: Testbed, want: Expected): Promise<string[]> {
  const out: string[] = [];
  const vms = await api.tryList("virtualmachines");
  const restores = await api.tryList("virtualmachinerestores");
  const snapshots = await api.tryList("virtualmachinesnapshots");
  if (!vms || !restores || !snapshots) return ["API server not answering"];
  const byName = new Map(vms.map((v) => [v.metadata.name, v]));
  const guests = guestsOf(tb);
  const live = tb.hosts.filter((h) => !want.deadHosts.has(h.name));
  for (const [name, uid] of want.vms) {
    const v = byName.get(name);
    if (!v) {
      out.push(`VM ${name} lost (not in the API server)`);
      continue;
    }
    if (v.metadata.uid !== uid) out.push(`VM ${name} uid changed ${uid} -> ${v.metadata.uid}`);
    const q = guests.get(domainName(name)) ?? [];
    if (v.status?.phase !== "Running") {
      const ready = v.status?.conditions?.find((c) => c.type === "Ready");
      out.push(
        `VM ${name} phase ${v.status?.phase ?? "-"} (${ready?.reason ?? ""}: ${ready?.message ?? ""})`,
      );
    }
    if (q.length !== 1) out.push(`VM ${name} has ${q.length} QEMU processes (${q.join(",")})`);
    else if (v.status?.host !== q[0])
      out.push(`VM ${name} status.host ${v.status?.host} but QEMU on ${q[0]}`);
    else {
      const h = tb.hosts.find((x) => x.name === q[0]) as TestHost;
      const st = ((await virsh(h, ["domstate", domainName(name)])) ?? "").trim();
      if (st !== "running") out.push(`VM ${name} on ${q[0]}: virsh says ${st || "nothing"}`);
    }
  }
  for (const v of vms)
    if (!want.vms.has(v.metadata.name)) out.push(`VM ${v.metadata.name} exists but was never declared`);
  // Domains: each one is a declared VM's, on the host its status names.
  for (const h of live) {
    const names = await virsh(h, ["list", "--all", "--name"]);
    if (names === undefined) {
      out.push(`${h.name}: virsh list failed`);
      continue;
    }
    for (const d of names
      .split("\n")
      .map((x) => x.trim())
      .filter(Boolean)) {
      const vm = [...want.vms.keys()].find((n) => domainName(n) === d);
      if (!vm) out.push(`orphan domain ${d} on ${h.name}`);
      else if (byName.get(vm)?.status?.host !== h.name) out.push(`stale domain ${d} on ${h.name}`);
    }
  }
  // Volumes in the shared pool: base image and one root disk per declared VM.
  const h0 = live[0];
  if (h0) {
    await virsh(h0, ["pool-refresh", "default"]);
    const vols = await virsh(h0, ["vol-list", "default"]);
    if (vols === undefined) out.push(`${h0.name}: vol-list failed`);
    else {
      const okVols = new Set([
        "base.qcow2",
        ...[...want.vms.keys()].map((n) => `${domainName(n)}-root.qcow2`),
      ]);
      for (const line of vols.split("\n")) {
        const v = line.trim().split(/\s+/)[0];
        if (v && !okVols.has(v)) out.push(`orphan volume ${v}`);
      }
    }
  }
  // Restores and snapshots: exactly what was created, and at most one recovery restore per
  // (checkpoint, failure) — their names are derived from that, so a second is a duplicate name
  // and cannot exist; crash-loop restores must not appear here at all (nothing crash-loops).
  for (const r of restores) {
    const n = r.metadata.name;
    if (want.restores.has(n)) continue;
    if (r.metadata.labels?.["virtwarden.io/recovery-of"] !== undefined) continue;
    out.push(`unexpected VirtualMachineRestore ${n} (labels ${JSON.stringify(r.metadata.labels ?? {})})`);
  }
  for (const n of want.restores)
    if (!restores.some((r) => r.metadata.name === n)) out.push(`VirtualMachineRestore ${n} lost`);
  for (const s of snapshots)
    if (!want.snapshots.has(s.metadata.name))
      out.push(`unexpected VirtualMachineSnapshot ${s.metadata.name}`);
  for (const n of want.snapshots)
    if (!snapshots.some((s) => s.metadata.name === n)) out.push(`VirtualMachineSnapshot ${n} lost`);
  // Spec edits reached the hosts: each guest has the vCPUs its spec asks for (virsh dominfo).
  if (out.length === 0) {
    for (const [name] of want.vms) {
      const v = byName.get(name) as KObj;
      const h = tb.hosts.find((x) => x.name === v.status?.host) as TestHost;
      const info = (await virsh(h, ["dominfo", domainName(name)])) ?? "";
      const cpus = Number(/^CPU\(s\):\s+(\d+)/m.exec(info)?.[1]);
      const asked = (v.spec.resources as { cpu?: number } | undefined)?.cpu;
      if (cpus !== asked) out.push(`VM ${name} on ${h.name}: ${cpus} vCPUs, spec asks ${asked}`);
    }
  }
  return out;
}

/**
 * Waits until `problems` is empty (checked every 500 ms), up to `ms`. Resolves with the seconds it
 * took, or the last problems when it never converged.
 */
export async function converge(
  api: Api,
  tb: Testbed,
  want: Expected,
  ms: number,
): Promise<{ seconds: number; problems: string[] }> {
  const t0 = Date.now();
  let last: string[] = [];
  while (Date.now() - t0 < ms) {
    last = await problems(api, tb, want);
    if (last.length === 0) {
      const at = Date.now();
      // Stable: still converged a moment later (not a state passed through on the way).
      await new Promise((r) => setTimeout(r, 1500));
      last = await problems(api, tb, want);
      if (last.length === 0) return { seconds: (at - t0) / 1000, problems: [] };
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return { seconds: (Date.now() - t0) / 1000, problems: last };
}
