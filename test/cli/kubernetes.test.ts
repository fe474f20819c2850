/**
 * End to end in Kubernetes mode: a real kube-apiserver, two real libvirt hosts (namespace test
 * bed), and two `virtwarden run --kubernetes` replicas as separate processes. kubectl does what a
 * user does; the domains on the hosts are what we check. Includes a host failure: the VM's host
 * is powered off, fenced by the exec agent, and the VM comes back on the other host, all seen
 * through the API server.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { hostname } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LibvirtProvider } from "../../src/providers/libvirt/index.js";
import { eventuallyWith } from "../support/eventually.js";
import { type KubeApiServer, startKubeApiServer } from "../support/kube/apiserver.js";
import { startTestbed, type Testbed } from "../support/testbed/index.js";

const ROOT = join(import.meta.dirname, "..", "..");
let kube: KubeApiServer;
let tb: Testbed;
const replicas: { proc: ChildProcess; log: () => string }[] = [];

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
      "500",
      "--log-level",
      process.env.VW_TEST_LOG ?? "info",
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
  const r = { proc, log: () => out };
  replicas.push(r);
  return r;
}

const eventually = eventuallyWith({ timeoutMs: 60_000, everyMs: 100 });

const vm = (cpu: number) => `apiVersion: virtwarden.io/v1alpha1
kind: VirtualMachine
metadata: {name: app, namespace: default}
spec:
  resources: {cpu: ${cpu}, maxCpu: 2, memory: 64Mi}
  disks: [{name: root, size: 64Mi, source: {image: {name: base.qcow2}}}]
`;

const getVM = () => {
  const r = kube.kubectl(["get", "vm", "app", "-o", "json"], { allowFail: true });
  return r.status === 0
    ? (JSON.parse(r.stdout) as {
        metadata: { generation: number };
        status?: {
          phase?: string;
          host?: string;
          observedGeneration?: number;
          lastRecovery?: { reason: string; fromHost?: string; toHost?: string; result?: string };
        };
      })
    : undefined;
};

const leaseHolder = () => {
  const r = kube.kubectl(
    ["get", "lease", "virtwarden-leader", "-n", "virtwarden-system", "-o", "jsonpath={.spec.holderIdentity}"],
    { allowFail: true },
  );
  return r.status === 0 ? r.stdout.trim() : "";
};

beforeAll(async () => {
  [kube, tb] = await Promise.all([startKubeApiServer(), startTestbed({ hosts: 2, name: "k8s" })]);
  kube.kubectl(["apply", "-k", join(ROOT, "crds")]);
  kube.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
  kube.kubectl(["apply", "-f", join(ROOT, "manifests", "namespace.yaml")]);
  const hosts = tb.hosts
    .map(
      (h) =>
        `apiVersion: virtwarden.io/v1alpha1\nkind: Host\nmetadata: {name: ${h.name}}\nspec: {uri: "${h.uri}", domainType: ${h.domainType}}\n`,
    )
    .join("---\n");
  kube.kubectl(["apply", "-f", "-"], { input: hosts });
}, 900_000);

afterAll(async () => {
  for (const r of replicas) if (r.proc.exitCode === null) r.proc.kill("SIGKILL");
  await tb?.teardown();
  await kube?.stop();
}, 120_000);

describe("virtwarden in Kubernetes mode", () => {
  it("rejects an invalid VirtualMachine at the API server with the rule's message", () => {
    const r = kube.kubectl(
      ["apply", "-f", join(ROOT, "test/fixtures/invalid/vm-resources-and-instancetype.yaml")],
      { allowFail: true },
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("exactly one of resources or instanceType must be set");
  });

  it("runs as two replicas of which only the leader acts, and brings an applied VM to Running", async () => {
    const a = startReplica(18181);
    await eventually(() => leaseHolder() === `${hostname()}_${a.proc.pid}`, "replica a holds the lease");
    const b = startReplica(18182);
    kube.kubectl(["apply", "-f", "-"], { input: vm(1) });
    const running = await eventually(() => {
      const v = getVM();
      return v?.status?.phase === "Running" ? v : undefined;
    }, "VM Running");
    expect(tb.hosts.map((h) => h.name)).toContain(running.status?.host);
    const table = kube.kubectl(["get", "vm", "app"]).stdout;
    expect(table).toMatch(/NAME\s+PHASE\s+HOST\s+READY\s+RESTARTS\s+AGE/);
    expect(table).toMatch(new RegExp(`app\\s+Running\\s+${running.status?.host}\\s+True`));
    expect(a.log()).toContain("controllers started");
    expect(b.log()).not.toContain("controllers started");
  });

  it("applies a cpu edit within maxCpu to the running guest: same QEMU, one more vCPU online", async () => {
    const before = getVM();
    const host = tb.hosts.find((h) => h.name === before?.status?.host);
    if (!host) throw new Error("VM not on a test-bed host");
    const pid = () => host.qemuPids()[0];
    const first = pid();
    expect(first).toBeGreaterThan(0);
    kube.kubectl(["apply", "-f", "-"], { input: vm(2) });
    await eventually(() => {
      const x = getVM();
      return x?.status?.observedGeneration === 2 && x.status.phase === "Running" ? x : undefined;
    }, "generation 2 observed");
    // libvirt's own tool, not our client: 2 vCPUs online in the running guest and in its
    // persistent definition, and the QEMU process is the one from before the edit.
    const vcpus = (...flags: string[]) =>
      execFileSync("virsh", ["-c", host.unixUri, "vcpucount", "default_app", ...flags], {
        encoding: "utf8",
      }).trim();
    await eventually(() => vcpus("--live", "--current") === "2" || undefined, "2 vCPUs online");
    expect(vcpus("--config", "--current")).toBe("2");
    expect(pid()).toBe(first);
  });

  it("recovers the VM on the other host when its host is powered off and fenced", async () => {
    const from = getVM()?.status?.host as string;
    const victim = tb.hosts.find((h) => h.name === from);
    if (!victim) throw new Error("VM not on a test-bed host");
    const hosts = tb.hosts
      .map(
        (h) => `apiVersion: virtwarden.io/v1alpha1
kind: Host
metadata: {name: ${h.name}}
spec:
  uri: "${h.uri}"
  domainType: ${h.domainType}
  fencing: {agent: exec, timeoutSeconds: 10, command: ${JSON.stringify(h.fenceCommand)}}
`,
      )
      .join("---\n");
    kube.kubectl(["apply", "-f", "-"], { input: hosts });
    await new Promise((r) => setTimeout(r, 1500)); // the fencing config reaches the leader's cache
    victim.powerOff();
    const v = await eventually(
      () => {
        const x = getVM();
        return x?.status?.lastRecovery?.result === "Succeeded" && x.status.phase === "Running"
          ? x
          : undefined;
      },
      "VM recovered",
      120_000,
    ).catch((e) => {
      console.log(kube.kubectl(["get", "vm", "app", "-o", "yaml"]).stdout);
      throw e;
    });
    expect(v.status?.host).not.toBe(from);
    expect(v.status?.lastRecovery).toMatchObject({
      reason: "HostFailure",
      fromHost: from,
      toHost: v.status?.host,
    });
    const phase = kube.kubectl(["get", "host", from, "-o", "jsonpath={.status.phase}"]).stdout;
    expect(phase).toBe("Fenced");
    const p = new LibvirtProvider(tb.hosts.find((h) => h.name === v.status?.host)?.uri as string);
    await p.connect();
    expect((await p.getDomainState("default_app"))?.state).toBe("running");
    await p.close();
    const events = (
      JSON.parse(kube.kubectl(["get", "events", "-n", "default", "-o", "json"]).stdout) as {
        items: { reason: string; involvedObject: { kind: string; name: string } }[];
      }
    ).items.map((e) => `${e.involvedObject.kind}/${e.involvedObject.name} ${e.reason}`);
    expect(events).toContain("VirtualMachine/app Recovered");
    // The Host's own events: cluster-scoped, so they live in "default".
    expect(events).toContain(`Host/${from} HostFenced`);
  }, 180_000);

  it("hands over to the standby within 15 s when the leader dies, which then deletes the VM's domain", async () => {
    const [a, b] = replicas;
    if (!a || !b) throw new Error("replicas missing");
    const t0 = Date.now();
    a.proc.kill("SIGKILL");
    await eventually(
      () => leaseHolder() === `${hostname()}_${b.proc.pid}`,
      "standby holds the lease",
      30_000,
    );
    const took = Date.now() - t0;
    console.log(`leader killed; standby leading after ${took} ms`);
    expect(took).toBeLessThan(15_000);
    const host = tb.hosts.find((h) => h.name === getVM()?.status?.host);
    kube.kubectl(["delete", "vm", "app", "--wait=false"]);
    await eventually(() => getVM() === undefined, "VM gone (finalizer released)");
    const p = new LibvirtProvider(host?.uri as string);
    await p.connect();
    expect(await p.getDomainState("default_app")).toBeUndefined();
    expect(await p.getVolume("default", "default_app-root.qcow2")).toBeUndefined();
    await p.close();
  });
});
