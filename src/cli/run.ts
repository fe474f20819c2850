/**
 * `virtwarden run`: the controller. Standalone mode watches a directory of manifests and keeps
 * status in a crash-safe state directory; `--kubernetes` uses the API server (with a Lease so
 * that only one replica acts). `--simulate` runs every Host on the in-process simulator (the
 * embedded default of `npm start`); otherwise sim:// hosts are simulated and libvirt URIs go to
 * the libvirt provider. `--git URL` takes standalone mode's manifests from a Git branch instead of
 * a directory (src/gitops/sync.ts).
 */
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { Command, InvalidArgumentError } from "commander";
import { collectDefaultMetrics, Registry } from "prom-client";
import type { Host, VMDisk } from "../api/types.js";
import { AlwaysLeader, type LeaderElector } from "../controller/leader.js";
import { createLogger, type Logger } from "../controller/log.js";
import type { GitSync } from "../gitops/sync.js";
import { createFenceAgentFactory, type FenceAgentFactory } from "../providers/fence/index.js";
import { createPowerAgentFactory, type PowerAgentFactory } from "../providers/power/index.js";
import { Simulator, simHostName, simulatorFactory } from "../providers/sim/index.js";
import type { ProviderFactory } from "../providers/types.js";
import { DEFAULT_HEARTBEAT_INTERVAL_MS } from "../reconcilers/host/heartbeat.js";
import type { FileStore } from "../store/files/index.js";
import { DEFAULT_KUBE_RATE_LIMIT } from "../store/kube/rate-limit.js";
import type { ResourceStore } from "../store/types.js";
import { removeControlFile, type SimControl, startSimControl } from "./sim-control.js";
import { VERSION } from "./version.js";

export interface RunOptions {
  kubernetes: boolean;
  kubeconfig?: string;
  kubeApiQps: string;
  kubeApiBurst: string;
  namespace: string;
  leaderElect: boolean;
  leaseName: string;
  stateDir: string;
  deleteSettle: string;
  secretsDir?: string;
  simulate: boolean;
  simSeed: string;
  simControlPort: string;
  metricsAddr: string;
  workers: string;
  concurrentStarts: string;
  placementWait: string;
  concurrentMigrations: string;
  unsafeMigration: boolean;
  consolidateInterval: string;
  minActiveHosts: string;
  perVmMetrics: boolean;
  logLevel: string;
  logFormat: string;
  heartbeatInterval: string;
  git?: string;
  branch: string;
  path: string;
  interval: string;
  gitTokenFile?: string;
  gitUsername?: string;
  gitSshKey?: string;
  gitKnownHosts?: string;
  webhookPath: string;
  webhookSecretFile?: string;
}

/** "30s", "5m", "1h", "250ms" or a number of seconds, in milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`"${text}": expected a duration like 30s, 5m, 1h or 500ms`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "s") as "ms" | "s" | "m" | "h"];
  return Math.round(Number(m[1]) * unit);
}

/**
 * A usage error found inside the action: commander prints the errors of its own parsing, not
 * those thrown later, so this one is printed here (and exits 2 like them).
 */
function usageError(message: string): InvalidArgumentError {
  process.stderr.write(`error: ${message}\n`);
  return new InvalidArgumentError(message);
}

const duration = (v: string) => {
  parseDuration(v);
  return v;
};

const positiveInt = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return v;
};

const nonNegativeNumber = (name: string) => (v: string) => {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n < 0)
    throw new InvalidArgumentError(`${name} must be a number, 0 or more`);
  return v;
};

const nonNegativeInt = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0)
    throw new InvalidArgumentError(`${name} must be a whole number of milliseconds`);
  return v;
};

/** The host part of a libvirt URI (qemu+tcp://kvm-01/system -> kvm-01), for --simulate. */
export function uriHost(uri: string): string {
  const m = /^[a-z0-9+]+:\/\/(?:[^@/]*@)?([^/:?]*)/i.exec(uri);
  return m?.[1] || "localhost";
}

/** The simulated host a --simulate run puts a Host's URI on (sim:// stays, others by host part). */
export function simUri(uri: string): string {
  return uri.startsWith("sim://") ? uri : `sim://${uriHost(uri)}`;
}

/**
 * Providers by URI scheme. --simulate maps every URI onto a simulated host named after it, with
 * every base image the manifests reference preloaded and one shared storage pool.
 */
async function providerFactory(
  opts: RunOptions,
  store: ResourceStore,
  logger: Logger,
): Promise<{
  providers: ProviderFactory;
  fenceAgents: FenceAgentFactory;
  powerAgents: PowerAgentFactory;
  sim: Simulator;
}> {
  const sim = new Simulator({
    seed: Number(opts.simSeed),
    autoCreateHosts: true,
    defaultHost: { cpus: 32, memoryBytes: 128 * 1024 ** 3 },
  });
  // A preloaded image repository: every base image a VM references is on every simulated host.
  const preload = (disks: VMDisk[] | undefined) => {
    for (const d of disks ?? []) {
      const img = d.source?.image;
      if (img)
        sim.preloadImage({ pool: img.pool ?? "default", name: img.name, capacityBytes: 10 * 1024 ** 3 });
    }
  };
  store.watch("VirtualMachine", (e) => preload(e.object.spec.disks));
  // A class's default disks are its VMs' disks too.
  store.watch("VirtualMachineClass", (e) => preload(e.object.spec.disks));
  const sims = simulatorFactory(sim, simUri);
  const agentOpts = {
    readSecret: (ref: { name: string; namespace?: string }) => store.readSecret(ref),
    simPower: sim,
    simHostName: (h: { spec: { uri: string } }) => uriHost(h.spec.uri),
  };
  const fenceAgents = createFenceAgentFactory(agentOpts);
  const powerAgents = createPowerAgentFactory(agentOpts);
  if (opts.simulate) {
    // Simulated hosts have simulated BMCs and PDUs: every agent is the simulator's power switch
    // (an operator's confirmation stays an operator's), never a real ipmitool or command.
    const asSim = (h: Host): Host => ({
      ...h,
      spec: {
        ...h.spec,
        ...(h.spec.fencing && h.spec.fencing.agent !== "manual"
          ? { fencing: { ...h.spec.fencing, agent: "sim" as const } }
          : {}),
        ...(h.spec.power ? { power: { ...h.spec.power, agent: "sim" as const } } : {}),
      },
    });
    return {
      providers: sims,
      fenceAgents: (h) => fenceAgents(asSim(h)),
      powerAgents: (h) => powerAgents(asSim(h)),
      sim,
    };
  }
  const { createLibvirtProviderFactory } = await import("../providers/libvirt/index.js");
  const libvirt = createLibvirtProviderFactory({ log: logger.child({ component: "libvirt" }) });
  return {
    providers: (uri, options) => (uri.startsWith("sim://") ? sims(uri) : libvirt(uri, options)),
    fenceAgents,
    powerAgents,
    sim,
  };
}

async function makeStore(
  dirs: string[],
  opts: RunOptions,
  logger: ReturnType<typeof createLogger>,
  gitSync?: GitSync,
): Promise<{ store: ResourceStore; elector: LeaderElector; stateHealth?: FileStore }> {
  if (!opts.kubernetes) {
    const { FileStore } = await import("../store/files/index.js");
    // The state dir is locked by the store for the life of the process: a second controller on
    // it stops here with "state dir X is locked by pid N". A full or read-only state dir pauses
    // every reconcile (stateHealth) until writes succeed again.
    const store = new FileStore({
      // --git: no directory; whole validated commits are handed in (GitSync.start).
      ...(gitSync ? { tree: gitSync } : { manifestDir: dirs }),
      stateDir: opts.stateDir,
      secretsDir: opts.secretsDir,
      deleteSettleMs: Number(opts.deleteSettle),
      logger,
    });
    return { store, elector: new AlwaysLeader(), stateHealth: store };
  }
  const { KubeConfig } = await import("@kubernetes/client-node");
  const { KubeStore, LeaseLeaderElector } = await import("../store/kube/index.js");
  const kubeConfig = new KubeConfig();
  if (opts.kubeconfig) kubeConfig.loadFromFile(opts.kubeconfig);
  else kubeConfig.loadFromDefault();
  const store = new KubeStore({
    kubeConfig,
    namespace: opts.namespace,
    logger,
    rateLimit: { qps: Number(opts.kubeApiQps), burst: Number(opts.kubeApiBurst) },
  });
  const elector = opts.leaderElect
    ? new LeaseLeaderElector({
        kubeConfig,
        namespace: opts.namespace,
        name: opts.leaseName,
        identity: `${hostname()}_${process.pid}`,
        logger,
      })
    : new AlwaysLeader();
  return { store, elector };
}

export function runCommand(): Command {
  return new Command("run")
    .description("run the controller: on a directory of manifests, or with --kubernetes on the API server")
    .argument("[dir...]", "standalone mode: directories or files of manifests to watch", ["."])
    .option(
      "--kubernetes",
      "Kubernetes mode: resources from the API server, status in status subresources",
      false,
    )
    .option("--kubeconfig <path>", "kubeconfig (default: in-cluster, then $KUBECONFIG or ~/.kube/config)")
    .option(
      "--namespace <ns>",
      "Kubernetes mode: namespace of the leader Lease and credential Secrets",
      "virtwarden-system",
    )
    .option("--no-leader-elect", "Kubernetes mode: act without a Lease (one replica only)")
    .option("--lease-name <name>", "Kubernetes mode: name of the leader Lease", "virtwarden-leader")
    .option(
      "--kube-api-qps <n>",
      "Kubernetes mode: requests per second to the API server, sustained (as client-go's QPS; the leader Lease is not counted); 0: no limit",
      nonNegativeNumber("--kube-api-qps"),
      String(DEFAULT_KUBE_RATE_LIMIT.qps),
    )
    .option(
      "--kube-api-burst <n>",
      "Kubernetes mode: requests that may go at once above --kube-api-qps (as client-go's Burst)",
      positiveInt("--kube-api-burst"),
      String(DEFAULT_KUBE_RATE_LIMIT.burst),
    )
    .option("--state-dir <dir>", "standalone mode: crash-safe status store", ".virtwarden/state")
    .option(
      "--delete-settle <ms>",
      "standalone mode: a resource whose manifest disappears is deleted only once the directory saw no change for this long and no file defines it (a rename, an editor's save or a git checkout is not a deletion)",
      nonNegativeInt("--delete-settle"),
      "2000",
    )
    .option("--secrets-dir <dir>", "standalone mode: fence/power agent credentials")
    .option(
      "--simulate",
      "run every Host on the in-process simulator (break it while it runs: virtwarden sim --help)",
      false,
    )
    .option("--sim-seed <n>", "seed of the simulator's randomness", "1")
    .option(
      "--sim-control-port <port>",
      "--simulate, standalone: port on 127.0.0.1 (only) of the fault endpoint `virtwarden sim` drives (0: any free port; its address and token go to STATE-DIR/sim-control.json, mode 0600)",
      nonNegativeInt("--sim-control-port"),
      "0",
    )
    .option("--metrics-addr <addr>", "serve /metrics, /healthz, /readyz here", "127.0.0.1:8080")
    .option("--workers <n>", "VirtualMachine workers", positiveInt("--workers"), "64")
    .option(
      "--heartbeat-interval <ms>",
      "default host heartbeat interval (a host silent for 3 beats, and at the network level, is fenced)",
      positiveInt("--heartbeat-interval"),
      String(DEFAULT_HEARTBEAT_INTERVAL_MS),
    )
    .option(
      "--concurrent-starts <n>",
      "domain starts at once per host (QEMU starts are CPU-heavy)",
      positiveInt("--concurrent-starts"),
      "4",
    )
    .option(
      "--placement-wait <ms>",
      "how long placement waits for a declared host not seen yet (so a starting controller does not put every VM on the first host that answers); 0: never",
      "15000",
    )
    .option(
      "--concurrent-migrations <n>",
      "live migrations at once out of one host (drains of hosts in maintenance)",
      positiveInt("--concurrent-migrations"),
      "2",
    )
    .option(
      "--unsafe-migration",
      "let libvirt migrate disks it calls unsafe (files on a local filesystem it cannot know is shared: test beds only)",
      false,
    )
    .option(
      "--consolidate-interval <ms>",
      "every so often, empty and power off one idle host that allows it (spec.allowPowerOff), or power one on when capacity is wanted; 0: never",
      "60000",
    )
    .option(
      "--min-active-hosts <n>",
      "consolidation never leaves fewer hosts powered on",
      positiveInt("--min-active-hosts"),
      "1",
    )
    .option(
      "--per-vm-metrics",
      "export each VM's availability as its own series (one series per VM: mind the cardinality)",
      false,
    )
    .option(
      "--git <url>",
      "standalone mode: take the manifests from this Git remote (file://, https://, ssh://) instead of directories",
    )
    .option("--branch <branch>", "--git: the branch to follow", "main")
    .option("--path <dir>", "--git: the directory of manifests inside the repository", ".")
    .option(
      "--interval <duration>",
      "--git: how often the branch is fetched (30s, 5m; 0: only on the webhook)",
      duration,
      "30s",
    )
    .option(
      "--git-token-file <file>",
      "--git: a file holding an access token for https:// remotes (never logged)",
    )
    .option("--git-username <name>", "--git: the user name sent with the token", "x-access-token")
    .option("--git-ssh-key <file>", "--git: a private key file for ssh:// remotes")
    .option(
      "--git-known-hosts <file>",
      "--git: known_hosts for ssh:// remotes (default: a host key is accepted the first time and pinned in the state dir)",
    )
    .option("--webhook-path <path>", "--git: POST here on the metrics server to fetch at once", "/hooks/git")
    .option(
      "--webhook-secret-file <file>",
      "--git: the webhook's secret: requests must carry its GitHub, Gitea or GitLab signature",
    )
    .option("--log-level <level>", "trace | debug | info | warn | error", "info")
    .option("--log-format <format>", "json | pretty", process.stdout.isTTY ? "pretty" : "json")
    .action(async (dirs: string[], opts: RunOptions) => {
      const { Runtime } = await import("./runtime.js");
      const { startHttpServer } = await import("./http.js");
      const logger = createLogger({ level: opts.logLevel, pretty: opts.logFormat === "pretty" });
      const registry = new Registry();
      collectDefaultMetrics({ register: registry });
      // prom-client's totals of active handles, requests and resources are gauges named like
      // counters (`_total`): promtool rejects them. Their by-type gauges (nodejs_active_handles
      // etc.) stay; sum() over the type gives the same total.
      for (const name of [
        "nodejs_active_handles_total",
        "nodejs_active_requests_total",
        "nodejs_active_resources_total",
      ])
        registry.removeSingleMetric(name);
      let gitSync: GitSync | undefined;
      let webhookSecret: string | undefined;
      if (opts.git) {
        if (opts.kubernetes) throw usageError("--git is for standalone mode, not --kubernetes");
        if (dirs.length !== 1 || dirs[0] !== ".")
          throw usageError("--git takes the manifests from the repository: no directories with it");
        if (
          !opts.webhookPath.startsWith("/") ||
          ["/metrics", "/healthz", "/readyz"].includes(opts.webhookPath)
        )
          throw usageError(`--webhook-path ${opts.webhookPath}: a path of its own, starting with /`);
        if (opts.webhookSecretFile)
          webhookSecret = (await readFile(opts.webhookSecretFile, "utf8")).replace(/\r?\n$/, "");
        const { GitSync } = await import("../gitops/sync.js");
        gitSync = new GitSync({
          url: opts.git,
          branch: opts.branch,
          path: opts.path,
          intervalMs: parseDuration(opts.interval),
          stateDir: opts.stateDir,
          credentials: {
            ...(opts.gitTokenFile ? { tokenFile: opts.gitTokenFile } : {}),
            ...(opts.gitUsername ? { username: opts.gitUsername } : {}),
            ...(opts.gitSshKey ? { sshKeyFile: opts.gitSshKey } : {}),
            ...(opts.gitKnownHosts ? { knownHostsFile: opts.gitKnownHosts } : {}),
          },
          logger: logger.child({ component: "gitops" }),
          registry,
        });
      }
      const { store, elector, stateHealth } = await makeStore(dirs, opts, logger, gitSync);
      const { providers, fenceAgents, powerAgents, sim } = await providerFactory(opts, store, logger);
      const simControlPort = Number(opts.simControlPort);
      if (simControlPort > 65_535) throw usageError("--sim-control-port must be a port number (0-65535)");
      const consolidateEvery = Number(opts.consolidateInterval);
      if (!Number.isInteger(consolidateEvery) || consolidateEvery < 0)
        throw usageError("--consolidate-interval must be a whole number of milliseconds");
      const placementWaitMs = Number(opts.placementWait);
      if (!Number.isInteger(placementWaitMs) || placementWaitMs < 0)
        throw usageError("--placement-wait must be a whole number of milliseconds");
      const runtime = new Runtime({
        store,
        providerFactory: providers,
        fenceAgents,
        powerAgents,
        consolidation:
          consolidateEvery > 0
            ? { intervalMs: consolidateEvery, minActiveHosts: Number(opts.minActiveHosts) }
            : false,
        registry,
        logger,
        vmWorkers: Number(opts.workers),
        concurrentStartsPerHost: Number(opts.concurrentStarts),
        placementWaitMs,
        concurrentMigrationsPerHost: Number(opts.concurrentMigrations),
        unsafeMigration: opts.unsafeMigration,
        perVMMetrics: opts.perVmMetrics,
        heartbeatIntervalMs: Number(opts.heartbeatInterval),
        // Simulated hosts have no network endpoint, whatever their URIs say: probing kvm-01:16509
        // of qemu+tcp://kvm-01/system would find nothing (or a real machine of that name), and a
        // host whose silence cannot be confirmed is never fenced.
        ...(opts.simulate ? { probeTarget: () => undefined } : {}),
        ...(stateHealth ? { stateHealth } : {}),
      });
      let leading = false;
      // A standby is healthy and ready (it is waiting for the lease); the leader once started.
      const server = await startHttpServer({
        address: opts.metricsAddr,
        registry,
        ready: () => !leading || (runtime.isReady() && (stateHealth?.writable() ?? true)),
        ...(gitSync
          ? {
              routes: new Map([
                [
                  opts.webhookPath,
                  (await import("../gitops/webhook.js")).webhookHandler({
                    branch: opts.branch,
                    secret: () => webhookSecret,
                    trigger: (why) => gitSync?.trigger(why),
                  }),
                ],
              ]),
            }
          : {}),
      });
      logger.info(
        {
          version: VERSION,
          mode: opts.kubernetes ? "kubernetes" : "standalone",
          ...(gitSync ? { git: gitSync.syncStatus() } : { dirs }),
          simulate: opts.simulate,
          metrics: opts.metricsAddr,
        },
        "virtwarden starting",
      );
      const shutdown = new AbortController();
      let stopping: Promise<void> | undefined;
      let simControl: SimControl | undefined;
      // A leader that lost the lease must stop acting before the lease can expire for a standby:
      // the margin is leaseDuration - renewDeadline (10 s - 7 s = 3 s by default). So in-flight
      // reconciles are aborted at once (no grace) and the process exits at most LOST_EXIT_MS after
      // the loss even if something does not settle, as client-go's leaders do.
      const LOST_EXIT_MS = 1_000;
      const stop = (why: string, graceMs = 10_000): Promise<void> => {
        stopping ??= (async () => {
          logger.info({ why }, "stopping: finishing in-flight work and persisting status");
          shutdown.abort();
          await simControl?.close().catch(() => undefined);
          await gitSync?.stop();
          if (leading)
            await runtime
              .stop(graceMs)
              .catch((e: unknown) => logger.error({ err: String(e) }, "error while stopping"));
          await new Promise<void>((r) => server.close(() => r()));
        })();
        return stopping;
      };
      process.once("SIGTERM", () => void stop("SIGTERM"));
      process.once("SIGINT", () => void stop("SIGINT"));
      await elector.run(
        shutdown.signal,
        (leaderSignal) => {
          leading = true;
          leaderSignal.addEventListener("abort", () => {
            // Lost the lease (or shutting down): stop acting at once; a restart rejoins as standby.
            if (shutdown.signal.aborted) return void stop("leadership ended");
            process.exitCode = 1;
            logger.error(
              { exitWithinMs: LOST_EXIT_MS },
              "leadership lost: aborting in-flight work and exiting",
            );
            setTimeout(() => process.exit(1), LOST_EXIT_MS).unref();
            void stop("leadership lost", 0);
          });
          runtime
            .start(leaderSignal)
            .then(async () => {
              if (gitSync && stateHealth) gitSync.start(stateHealth);
              // Standalone only, once the state dir is locked (a second `run` on it never gets
              // here): the fault endpoint of `virtwarden sim`, or no control file at all.
              if (opts.kubernetes) return;
              if (!opts.simulate) return void (await removeControlFile(opts.stateDir));
              simControl = await startSimControl({
                sim,
                store,
                stateDir: opts.stateDir,
                port: simControlPort,
                simHostOf: (h) => simHostName(simUri(h.spec.uri)),
                logger,
              });
              if (shutdown.signal.aborted) await simControl.close();
            })
            .catch((e: unknown) => {
              logger.error({ err: String(e) }, "cannot start");
              process.exitCode = 1;
              void stop("start failed");
            });
        },
        () => undefined,
      );
      await stop("elector finished");
      logger.info("stopped");
    });
}
