/**
 * bench:kube-scale — Kubernetes mode at scale, on the test harness's real etcd + kube-apiserver,
 * with `virtwarden run --kubernetes --simulate` as its own process (simulated hosts: the figure is
 * the controller's and the API server's cost, not a hypervisor's).
 *
 * (a) cold start: VMS VMs on HOSTS hosts already in the API server, then the controller started:
 *     time until every VM reads Ready=True from the API server (a list, not the controller's cache);
 * (b) steady apply: BATCHES batches of BATCH more VMs created into the running controller: time
 *     from the last create to all Ready.
 * Also: the API server's own request counts (apiserver_request_total) for VirtualMachines by verb,
 * as writes per VM; 409 conflicts; the controller's peak RSS (VmHWM); the API server's CPU time.
 *
 * Targets on the 2-core machine (issue 18): cold start of 10,000 VMs <= 60 s, controller <= 500 MB.
 * Usage: npm run bench:kube-scale [-- --vms N --hosts N --batches N --batch N]
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CustomObjectsApi, KubeConfig, type KubernetesObject, makeInformer } from "@kubernetes/client-node";
import pLimit from "p-limit";
import { type KubeApiServer, startKubeApiServer } from "../test/support/kube/apiserver.js";
import { arg, type Metrics, printResult, writeResult } from "./env.js";

const VMS = arg("vms", 10_000);
const HOSTS = arg("hosts", 500);
const BATCHES = arg("batches", 4);
const BATCH = arg("batch", 250);
/** The controller's --kube-api-qps / --kube-api-burst (-1: its defaults). */
const QPS = arg("qps", -1);
const BURST = arg("burst", -1);
const ROOT = join(import.meta.dirname, "..");
const GROUP = "virtwarden.io";
const VERSION = "v1alpha1";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function vm(name: string, i: number) {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: "VirtualMachine",
    metadata: { name, namespace: "default", labels: { app: `app-${i % 100}` } },
    spec: {
      resources: { cpu: 1, memory: i % 3 === 0 ? "2Gi" : "1Gi" },
      placement: { strategy: i % 2 ? "spread" : "pack" },
    },
  };
}

/** Creates through the API, 32 at a time. */
async function createAll(api: CustomObjectsApi, objs: Record<string, unknown>[], cluster: boolean) {
  const limit = pLimit(32);
  await Promise.all(
    objs.map((body) =>
      limit(() =>
        cluster
          ? api.createClusterCustomObject({ group: GROUP, version: VERSION, plural: "hosts", body })
          : api.createNamespacedCustomObject({
              group: GROUP,
              version: VERSION,
              namespace: "default",
              plural: "virtualmachines",
              body,
            }),
      ),
    ),
  );
}

type VMObject = KubernetesObject & { status?: { conditions?: { type: string; status: string }[] } };
const isReady = (o: VMObject) => o.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True");

/** VMs whose Ready condition is True, from one list of the API server. */
async function readyCount(api: CustomObjectsApi): Promise<number> {
  const out = (await api.listClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: "virtualmachines",
  })) as {
    items: VMObject[];
  };
  return out.items.filter(isReady).length;
}

/**
 * The bench's own view of readiness: a watch (one list, then the API server's events), not a
 * list every second — listing thousands of VMs each second cost the API server more CPU than the
 * controller's writes did, and the figure would have measured the rig. The count is confirmed by
 * one list of the API server once the watch sees every VM Ready.
 */
async function readiness(kc: KubeConfig, api: CustomObjectsApi) {
  const informer = makeInformer<VMObject>(
    kc,
    `/apis/${GROUP}/${VERSION}/virtualmachines`,
    () => api.listClusterCustomObject({ group: GROUP, version: VERSION, plural: "virtualmachines" }) as never,
  );
  const ready = new Set<string>();
  const key = (o: VMObject) => `${o.metadata?.namespace}/${o.metadata?.name}`;
  const seen = (o: VMObject) => (isReady(o) ? ready.add(key(o)) : ready.delete(key(o)));
  informer.on("add", seen);
  informer.on("update", seen);
  informer.on("delete", (o) => ready.delete(key(o)));
  let stopped = false;
  informer.on("error", () => {
    if (!stopped) setTimeout(() => void informer.start().catch(() => undefined), 1_000);
  });
  await informer.start();
  return {
    count: () => ready.size,
    stop: async () => {
      stopped = true;
      await informer.stop();
    },
  };
}

async function untilReady(
  api: CustomObjectsApi,
  watched: { count: () => number },
  want: number,
  controller: ChildProcess,
  limitS: number,
) {
  const t0 = performance.now();
  while ((performance.now() - t0) / 1000 < limitS) {
    if (controller.exitCode !== null) throw new Error(`the controller exited (${controller.exitCode})`);
    if (watched.count() >= want) {
      const s = (performance.now() - t0) / 1000;
      const listed = await readyCount(api);
      if (listed >= want) return s;
    }
    await sleep(100);
  }
  throw new Error(`${watched.count()}/${want} VMs Ready after ${limitS} s`);
}

/** apiserver_request_total for virtualmachines: by "VERB[/subresource]", and 409s. */
function requestCounts(kube: KubeApiServer): { byVerb: Record<string, number>; conflicts: number } {
  const text = kube.kubectl(["get", "--raw", "/metrics"]).stdout;
  const byVerb: Record<string, number> = {};
  let conflicts = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith("apiserver_request_total{") || !line.includes('resource="virtualmachines"'))
      continue;
    const verb = /verb="([A-Z]+)"/.exec(line)?.[1] ?? "?";
    const sub = /subresource="([a-z]*)"/.exec(line)?.[1] ?? "";
    const n = Number(line.slice(line.lastIndexOf(" ") + 1));
    const k = sub ? `${verb}/${sub}` : verb;
    byVerb[k] = (byVerb[k] ?? 0) + n;
    if (/code="409"/.test(line)) conflicts += n;
  }
  return { byVerb, conflicts };
}

const diff = (a: Record<string, number>, b: Record<string, number>): Record<string, number> =>
  Object.fromEntries(
    Object.keys(b)
      .map((k) => [k, (b[k] ?? 0) - (a[k] ?? 0)])
      .filter(([, v]) => v !== 0),
  );

/** user+system CPU seconds of a process. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = f.slice(f.lastIndexOf(")") + 2).split(" ");
  return (Number(rest[11]) + Number(rest[12])) / 100;
}

function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Math.round(Number(m[1]) / 1024) : Number.NaN;
}

async function main(): Promise<void> {
  console.log(`bench:kube-scale: ${VMS} VMs on ${HOSTS} simulated hosts, then ${BATCHES} x ${BATCH} applied`);
  const kube = await startKubeApiServer();
  let controller: ChildProcess | undefined;
  try {
    kube.kubectl(["apply", "-k", join(ROOT, "crds")]);
    kube.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
    kube.kubectl(["create", "namespace", "virtwarden-system"]);
    const kc = new KubeConfig();
    kc.loadFromFile(kube.kubeconfig);
    const api = kc.makeApiClient(CustomObjectsApi);
    const t0 = performance.now();
    await createAll(
      api,
      Array.from({ length: HOSTS }, (_, i) => ({
        apiVersion: `${GROUP}/${VERSION}`,
        kind: "Host",
        metadata: { name: `h${i}`, labels: { rack: `r${i % 20}` } },
        spec: { uri: `sim://h${i}?cpus=64&memory=256Gi`, failureDomain: `rack-${i % 20}` },
      })),
      true,
    );
    await createAll(
      api,
      Array.from({ length: VMS }, (_, i) => vm(`vm-${i}`, i)),
      false,
    );
    console.log(`created ${HOSTS} hosts and ${VMS} VMs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const before = requestCounts(kube);
    const apiCpu0 = cpuSeconds(kube.pids().apiServer);
    controller = spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        join(ROOT, "src/cli/main.ts"),
        "run",
        "--kubernetes",
        "--simulate",
        "--kubeconfig",
        kube.kubeconfig,
        "--no-leader-elect",
        "--metrics-addr",
        "127.0.0.1:0",
        "--log-level",
        "warn",
        "--log-format",
        "json",
        ...(QPS >= 0 ? ["--kube-api-qps", String(QPS)] : []),
        ...(BURST > 0 ? ["--kube-api-burst", String(BURST)] : []),
      ],
      { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] },
    );
    const pid = controller.pid as number;
    const watched = await readiness(kc, api);
    const cold = await untilReady(api, watched, VMS, controller, 900);
    const afterCold = requestCounts(kube);
    const apiCpuCold = cpuSeconds(kube.pids().apiServer) - apiCpu0;
    const rssCold = peakRssMb(pid);
    const coldReq = diff(before.byVerb, afterCold.byVerb);
    const writes = Object.entries(coldReq)
      .filter(([k]) => /^(PUT|PATCH|POST|DELETE)/.test(k))
      .reduce((a, [, v]) => a + v, 0);
    console.log(`cold start: all ${VMS} Ready in ${cold.toFixed(1)} s; requests ${JSON.stringify(coldReq)}`);

    let lastApply = 0;
    for (let b = 0; b < BATCHES; b++) {
      await createAll(
        api,
        Array.from({ length: BATCH }, (_, i) => vm(`new-${b}-${i}`, VMS + b * BATCH + i)),
        false,
      );
      lastApply = performance.now();
    }
    const total = VMS + BATCHES * BATCH;
    const t1 = performance.now();
    await untilReady(api, watched, total, controller, 600);
    await watched.stop();
    const afterLast = (performance.now() - lastApply) / 1000;
    const end = requestCounts(kube);
    const rss = peakRssMb(pid);
    console.log(
      `steady apply: ${BATCHES} x ${BATCH} created, all ${total} Ready ${afterLast.toFixed(1)} s after the last create (${((performance.now() - t1) / 1000).toFixed(1)} s after the batches)`,
    );

    const metrics: Metrics = {
      vms: { value: VMS, unit: "count" },
      ...(QPS >= 0 ? { kube_api_qps: { value: QPS, unit: "count" } } : {}),
      hosts: { value: HOSTS, unit: "count" },
      converge_s: { value: Number(cold.toFixed(1)), unit: "s" },
      after_last_apply_s: { value: Number(afterLast.toFixed(1)), unit: "s" },
      applied_after_start: { value: BATCHES * BATCH, unit: "count" },
      writes_per_vm: { value: Number((writes / VMS).toFixed(2)), unit: "count" },
      status_puts_per_vm: { value: Number(((coldReq["PUT/status"] ?? 0) / VMS).toFixed(2)), unit: "count" },
      conflicts: { value: end.conflicts - before.conflicts, unit: "count" },
      peak_rss_mb: { value: rss, unit: "MB" },
      peak_rss_cold_mb: { value: rssCold, unit: "MB" },
      apiserver_cpu_cold_s: { value: Number(apiCpuCold.toFixed(1)), unit: "s" },
    };
    printResult("bench:kube-scale", metrics);
    console.log(
      `wrote ${writeResult("kube-scale", metrics, { coldStartRequests: coldReq, targets: { converge_s: 60, peak_rss_mb: 500 } })}`,
    );
  } finally {
    if (controller && controller.exitCode === null) {
      const gone = new Promise((r) => controller?.once("exit", r));
      controller.kill("SIGTERM");
      await Promise.race([gone, sleep(10_000)]);
      if (controller.exitCode === null) controller.kill("SIGKILL");
    }
    await kube.stop();
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
