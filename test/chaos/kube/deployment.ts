/**
 * What a Deployment with two replicas does for `virtwarden run --kubernetes`, as real processes:
 * keeps `replicas` running (one that exits, killed or by itself, is replaced after a short pause,
 * as a ReplicaSet would), tells which one holds the leader Lease (read from the API server with a
 * plain client, not with the code under test), and SIGKILLs the leader on request. Each replica
 * reaches the API server through its own PartitionProxy, so that one replica alone can be cut off
 * from it. Every process is stopped by its pid.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { hostname } from "node:os";
import { join } from "node:path";
import { CoordinationV1Api, type KubeConfig } from "@kubernetes/client-node";
import { PartitionProxy } from "./proxy.js";

/**
 * The checkout the replicas run from: this one, or VW_CHAOS_CONTROLLER_ROOT (a frozen copy, e.g.
 * `git archive HEAD` with node_modules linked, when this tree is being edited while the test runs).
 */
const ROOT = process.env.VW_CHAOS_CONTROLLER_ROOT ?? join(import.meta.dirname, "..", "..", "..");
export const LEASE_NAMESPACE = "virtwarden-system";
const LEASE_NAME = "virtwarden-leader";

export interface Replica {
  pid: number;
  proc: ChildProcess;
  startedAt: number;
  /** Its own way to the API server (partition() cuts this replica off). */
  proxy: PartitionProxy;
  exit?: { code: number | null; signal: NodeJS.Signals | null; at: number };
  log(): string;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      s.close(() => resolve(typeof addr === "object" && addr ? addr.port : 0));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Deployment {
  readonly all: Replica[] = [];
  /** Exits nobody asked for (not our SIGKILL): a replica that stopped by itself, and its code. */
  readonly selfExits: { pid: number; code: number | null; at: number; lastLines: string }[] = [];
  private readonly killed = new Set<number>();
  private stopped = false;
  private readonly leases: CoordinationV1Api;

  constructor(
    private readonly kubeconfigPath: string,
    kc: KubeConfig,
    private readonly replicas = 2,
  ) {
    this.leases = kc.makeApiClient(CoordinationV1Api);
  }

  live(): Replica[] {
    return this.all.filter((r) => !r.exit);
  }

  async start(): Promise<void> {
    for (let i = 0; i < this.replicas; i++) await this.spawn();
  }

  private async spawn(): Promise<Replica> {
    const port = await freePort();
    const text = readFileSync(this.kubeconfigPath, "utf8");
    const m = /server: https:\/\/([\d.]+):(\d+)/.exec(text);
    if (!m) throw new Error(`no server in ${this.kubeconfigPath}`);
    const proxy = new PartitionProxy(m[1] as string, Number(m[2]));
    const proxyPort = await proxy.start();
    const kubeconfig = `${this.kubeconfigPath}.replica-${proxyPort}`;
    writeFileSync(kubeconfig, text.replace(m[0], `server: https://${m[1]}:${proxyPort}`));
    const proc = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        join(ROOT, "src/cli/main.ts"),
        "run",
        "--kubernetes",
        "--kubeconfig",
        kubeconfig,
        "--namespace",
        LEASE_NAMESPACE,
        "--metrics-addr",
        `127.0.0.1:${port}`,
        "--log-format",
        "json",
        "--heartbeat-interval",
        "500",
        "--consolidate-interval",
        "0",
        "--log-level",
        process.env.VW_TEST_LOG ?? "info",
      ],
      { stdio: ["ignore", "pipe", "pipe"], cwd: ROOT },
    );
    let out = "";
    const add = (b: Buffer) => {
      out = (out + b.toString()).slice(-400_000);
    };
    proc.stdout?.on("data", add);
    proc.stderr?.on("data", add);
    const r: Replica = { pid: proc.pid ?? 0, proc, proxy, startedAt: Date.now(), log: () => out };
    proc.once("exit", (code, signal) => {
      r.exit = { code, signal, at: Date.now() };
      void proxy.stop();
      if (!this.killed.has(r.pid))
        this.selfExits.push({
          pid: r.pid,
          code,
          at: Date.now(),
          lastLines: out.split("\n").slice(-6).join("\n"),
        });
      // The ReplicaSet's part: a replacement, after a pause (a kubelet's restart is not instant).
      if (!this.stopped) void sleep(500).then(() => (this.stopped ? undefined : this.spawn()));
    });
    this.all.push(r);
    return r;
  }

  /** The Lease's holder pid (identity hostname_pid), or undefined if none or unreadable. */
  async holderPid(): Promise<number | undefined> {
    try {
      const l = await this.leases.readNamespacedLease({ name: LEASE_NAME, namespace: LEASE_NAMESPACE });
      const id = l.spec?.holderIdentity ?? "";
      const prefix = `${hostname()}_`;
      return id.startsWith(prefix) ? Number(id.slice(prefix.length)) : undefined;
    } catch {
      return undefined;
    }
  }

  /** The live replica holding the Lease (waits for one, up to `ms`). */
  async leader(ms = 60_000): Promise<Replica> {
    const deadline = Date.now() + ms;
    for (;;) {
      const pid = await this.holderPid();
      const r = this.live().find((x) => x.pid === pid);
      if (r) return r;
      if (Date.now() > deadline) throw new Error(`no live replica holds the lease within ${ms} ms`);
      await sleep(200);
    }
  }

  /**
   * SIGKILL the current leader; resolves with how long until another live replica held the
   * Lease. Returns the killed pid too.
   */
  async killLeader(): Promise<{ pid: number; handoverMs: number }> {
    const victim = await this.leader();
    const t0 = Date.now();
    this.kill(victim);
    const deadline = t0 + 60_000;
    for (;;) {
      const pid = await this.holderPid();
      if (pid !== undefined && pid !== victim.pid && this.live().some((x) => x.pid === pid))
        return { pid: victim.pid, handoverMs: Date.now() - t0 };
      if (Date.now() > deadline) throw new Error(`no handover within 60 s after killing ${victim.pid}`);
      await sleep(100);
    }
  }

  kill(r: Replica): void {
    this.killed.add(r.pid);
    try {
      process.kill(r.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }

  /** Stop every replica (by pid) and wait for them to be gone. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const r of this.live()) this.kill(r);
    for (let i = 0; i < 100 && this.live().length > 0; i++) await sleep(50);
  }

  /** Every replica's output, for a post-mortem; returns the file written. */
  dumpLogs(path: string): string {
    writeFileSync(
      path,
      this.all
        .map((r) => `=== replica ${r.pid} (exit ${JSON.stringify(r.exit ?? null)}) ===\n${r.log()}`)
        .join("\n"),
    );
    return path;
  }
}
