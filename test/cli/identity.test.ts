/**
 * Who the controller says it is, as the real API server records it, and what each replica's
 * /metrics says about leadership. Two `virtwarden run --kubernetes` processes (simulated sim://
 * hosts, so no libvirt bed is needed) against a real kube-apiserver:
 * - every field manager of the objects the controller wrote (a VM's finalizer and status, the
 *   Hosts' status, the Lease, events.k8s.io Events) is `virtwarden`, none `node-fetch`, read from
 *   managedFields; the API server's audit log shows the controller's User-Agent on every request
 *   it made (lists, watches, reads and writes) and `fieldManager=virtwarden` on every write;
 * - the leader exports virtwarden_leader 1 and the fleet gauges, the standby virtwarden_leader 0
 *   and no availability or N-1 sample; when the leader stops, the standby takes over and exports
 *   them.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventuallyWith } from "../support/eventually.js";
import { type KubeApiServer, startKubeApiServer } from "../support/kube/apiserver.js";

const ROOT = join(import.meta.dirname, "..", "..");
let kube: KubeApiServer;
const replicas: ChildProcess[] = [];

function startReplica(port: number): { proc: ChildProcess; log: () => string } {
  const proc = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      join(ROOT, "src/cli/main.ts"),
      "run",
      "--kubernetes",
      "--kubeconfig",
      kube.kubeconfig,
      "--namespace",
      "virtwarden-system",
      "--metrics-addr",
      `127.0.0.1:${port}`,
      "--log-format",
      "json",
      "--heartbeat-interval",
      "300",
    ],
    { stdio: ["ignore", "pipe", "pipe"], cwd: ROOT },
  );
  let out = "";
  proc.stdout?.on("data", (b: Buffer) => {
    out += b.toString();
  });
  proc.stderr?.on("data", (b: Buffer) => {
    out += b.toString();
  });
  replicas.push(proc);
  return { proc, log: () => out };
}

const eventually = eventuallyWith({ timeoutMs: 60_000, everyMs: 200 });

/** Sample lines of a /metrics text, by metric name. */
async function scrape(port: number): Promise<Map<string, string[]>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
  const out = new Map<string, string[]>();
  if (!res?.ok) return out;
  for (const line of (await res.text()).split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0] ?? "";
    out.set(name, [...(out.get(name) ?? []), line]);
  }
  return out;
}

const writes0 = (es: { verb: string }[]) =>
  es.filter((e) => ["create", "update", "patch"].includes(e.verb)).length;

interface ManagedField {
  manager: string;
  operation: string;
  subresource?: string;
}
const managedFields = (args: string[]): { name: string; fields: ManagedField[] }[] => {
  const r = kube.kubectl(["get", ...args, "-o", "json", "--show-managed-fields"]);
  const o = JSON.parse(r.stdout) as {
    items?: { metadata: { name: string; managedFields?: ManagedField[] } }[];
    metadata?: { name: string; managedFields?: ManagedField[] };
  };
  const items = o.items ?? [o as { metadata: { name: string; managedFields?: ManagedField[] } }];
  return items.map((i) => ({ name: i.metadata.name, fields: i.metadata.managedFields ?? [] }));
};

const leaseHolder = () => {
  const r = kube.kubectl(
    ["get", "lease", "virtwarden-leader", "-n", "virtwarden-system", "-o", "jsonpath={.spec.holderIdentity}"],
    { allowFail: true },
  );
  return r.status === 0 ? r.stdout.trim() : "";
};

beforeAll(async () => {
  kube = await startKubeApiServer();
  kube.kubectl(["apply", "-k", join(ROOT, "crds")]);
  kube.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
  kube.kubectl(["apply", "-f", join(ROOT, "manifests", "namespace.yaml")]);
  kube.kubectl(["apply", "-f", "-"], {
    input: ["h0", "h1"]
      .map(
        (h) =>
          `apiVersion: virtwarden.io/v1alpha1\nkind: Host\nmetadata: {name: ${h}}\nspec: {uri: "sim://${h}"}\n`,
      )
      .join("---\n"),
  });
}, 900_000);

afterAll(async () => {
  for (const p of replicas) if (p.exitCode === null) p.kill("SIGKILL");
  await kube?.stop();
}, 60_000);

describe("the controller's identity at the API server, and leadership in /metrics", () => {
  it("writes as field manager virtwarden with its own User-Agent; only the leader exports fleet gauges", async () => {
    const a = startReplica(18281);
    await eventually(() => leaseHolder() === `${hostname()}_${a.proc.pid}`, "replica a holds the lease");
    const b = startReplica(18282);
    kube.kubectl(["apply", "-f", "-"], {
      input: `apiVersion: virtwarden.io/v1alpha1
kind: VirtualMachine
metadata: {name: app, namespace: default}
spec:
  resources: {cpu: 1, memory: 512Mi}
  disks: [{name: root, size: 4Gi, source: {image: {name: debian-12.qcow2}}}]
`,
    });
    await eventually(
      () => {
        const r = kube.kubectl(["get", "vm", "app", "-o", "json"], { allowFail: true });
        if (r.status !== 0) return false;
        const v = JSON.parse(r.stdout) as {
          metadata: { finalizers?: string[] };
          status?: { phase?: string };
        };
        return v.status?.phase === "Running" && (v.metadata.finalizers ?? []).length > 0;
      },
      `VM Running with its finalizer\n${a.log().slice(-2000)}`,
    );

    // Leadership in /metrics: the leader's fleet view, the standby's none (not zeros).
    const leader = await eventually(async () => {
      const m = await scrape(18281);
      return m.get("virtwarden_leader")?.[0] === "virtwarden_leader 1" &&
        m.has("virtwarden_availability_ratio")
        ? m
        : undefined;
    }, "the leader's availability");
    expect(Number(leader.get("virtwarden_availability_ratio")?.[0]?.split(" ")[1])).toBeGreaterThan(0);
    const standby = await eventually(async () => {
      const m = await scrape(18282);
      return m.size > 0 ? m : undefined;
    }, "the standby's /metrics");
    expect(standby.get("virtwarden_leader")).toEqual(["virtwarden_leader 0"]);
    for (const n of [
      "virtwarden_availability_ratio",
      "virtwarden_failover_capacity_sufficient",
      "virtwarden_failover_stranded_vms",
      "virtwarden_vms",
      "virtwarden_hosts",
      "virtwarden_out_of_sync_resources",
    ])
      expect(standby.get(n), `standby exports ${n}`).toBeUndefined();
    expect(standby.has("process_cpu_seconds_total")).toBe(true);

    // managedFields: the user's apply is kubectl's; everything else the controller's.
    const seen: string[] = [];
    const controllerWrote = (objects: { name: string; fields: ManagedField[] }[], kind: string) => {
      for (const o of objects)
        for (const f of o.fields) {
          seen.push(
            `${kind}/${o.name}: ${f.manager} ${f.operation}${f.subresource ? ` ${f.subresource}` : ""}`,
          );
          expect(f.manager, `${kind}/${o.name}`).not.toBe("node-fetch");
          if (!f.manager.startsWith("kubectl")) expect(f.manager, `${kind}/${o.name}`).toBe("virtwarden");
        }
    };
    const vm = managedFields(["vm", "app", "-n", "default"]);
    controllerWrote(vm, "VirtualMachine");
    const vmManagers = vm[0]?.fields.filter((f) => f.manager === "virtwarden") ?? [];
    expect(vmManagers.some((f) => f.subresource === "status")).toBe(true); // status
    expect(vmManagers.some((f) => !f.subresource)).toBe(true); // finalizer (metadata patch)
    const hosts = managedFields(["hosts"]);
    controllerWrote(hosts, "Host");
    for (const h of hosts)
      expect(h.fields.some((f) => f.manager === "virtwarden" && f.subresource === "status")).toBe(true);
    const lease = managedFields(["lease", "virtwarden-leader", "-n", "virtwarden-system"]);
    expect(lease[0]?.fields.map((f) => f.manager)).toEqual(["virtwarden"]);
    controllerWrote(lease, "Lease");
    const events = managedFields(["events.events.k8s.io", "-A"]);
    expect(events.length).toBeGreaterThan(0);
    for (const e of events)
      expect(
        e.fields.map((f) => f.manager),
        `Event ${e.name}`,
      ).toEqual(["virtwarden"]);
    if (process.env.VW_SHOW_MANAGED) console.log([...new Set(seen)].join("\n"));

    // The audit log: the controller's requests, by User-Agent.
    const audit = readFileSync(kube.auditLog, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { verb: string; requestURI: string; userAgent?: string; stage: string })
      .filter((e) => e.stage === "ResponseComplete" || e.stage === "ResponseStarted");
    expect(audit.filter((e) => /node-fetch/.test(e.userAgent ?? "")).map((e) => e.requestURI)).toEqual([]);
    const ours = audit.filter((e) => (e.userAgent ?? "").startsWith("virtwarden/"));
    expect(ours[0]?.userAgent).toMatch(/^virtwarden\/\d+\.\d+\.\d+ \(linux\/\w+\) node\/\d+\.\d+\.\d+$/);
    if (process.env.VW_SHOW_MANAGED)
      console.log(`${ours.length} requests as ${ours[0]?.userAgent}, ${writes0(ours)} writes`);
    expect(new Set(ours.map((e) => e.verb))).toEqual(
      new Set(["get", "list", "watch", "create", "update", "patch"]),
    );
    const writes = ours.filter((e) => ["create", "update", "patch"].includes(e.verb));
    expect(
      writes.filter((e) => !e.requestURI.includes("fieldManager=virtwarden")).map((e) => e.requestURI),
    ).toEqual([]);
    // Nothing else reached the server: the harness's curl, kubectl, the API server itself, us.
    const others = audit.filter(
      (e) => !/^(virtwarden|kubectl|kube-apiserver|curl)[/-]/.test(e.userAgent ?? ""),
    );
    expect(new Set(others.map((e) => e.userAgent))).toEqual(new Set());

    // The leader stops (releasing the Lease): the standby leads and exports the fleet gauges.
    a.proc.kill("SIGTERM");
    await eventually(() => leaseHolder() === `${hostname()}_${b.proc.pid}`, "replica b holds the lease");
    await eventually(
      async () => {
        const m = await scrape(18282);
        return (
          m.get("virtwarden_leader")?.[0] === "virtwarden_leader 1" && m.has("virtwarden_availability_ratio")
        );
      },
      `the new leader's availability\n${b.log().slice(-2000)}`,
    );
  }, 300_000);
});
