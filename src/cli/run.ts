/**
 * `virtwarden run`: the controller. Standalone mode watches a directory of manifests and keeps
 * status in a crash-safe state directory; `--kubernetes` uses the API server instead.
 * `--simulate` runs every Host on the in-process simulator (the embedded default of `npm start`).
 */
import { Command, InvalidArgumentError } from "commander";
import { collectDefaultMetrics, Registry } from "prom-client";
import { createLogger } from "../controller/log.js";
import { Simulator, simulatorFactory } from "../providers/sim/index.js";
import { ProviderError, type ProviderFactory } from "../providers/types.js";
import type { ResourceStore } from "../store/types.js";
import { VERSION } from "./version.js";

export interface RunOptions {
  stateDir: string;
  secretsDir?: string;
  simulate: boolean;
  simSeed: string;
  metricsAddr: string;
  workers: string;
  logLevel: string;
  logFormat: string;
  heartbeatInterval: string;
}

const positiveInt = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return v;
};

/** The host part of a libvirt URI (qemu+tcp://kvm-01/system -> kvm-01), for --simulate. */
export function uriHost(uri: string): string {
  const m = /^[a-z0-9+]+:\/\/(?:[^@/]*@)?([^/:?]*)/i.exec(uri);
  return m?.[1] || "localhost";
}

/**
 * Providers by URI scheme. --simulate maps every URI onto a simulated host named after it, with
 * every base image the manifests reference preloaded and one shared storage pool.
 */
async function providerFactory(opts: RunOptions, store: ResourceStore): Promise<ProviderFactory> {
  const sim = new Simulator({
    seed: Number(opts.simSeed),
    autoCreateHosts: true,
    defaultHost: { cpus: 32, memoryBytes: 128 * 1024 ** 3 },
  });
  // A preloaded image repository: every base image a VM references is on every simulated host.
  store.watch("VirtualMachine", (e) => {
    for (const d of e.object.spec.disks ?? []) {
      const img = d.source?.image;
      if (img)
        sim.preloadImage({ pool: img.pool ?? "default", name: img.name, capacityBytes: 10 * 1024 ** 3 });
    }
  });
  const sims = simulatorFactory(sim);
  if (opts.simulate) return (uri) => sims(uri.startsWith("sim://") ? uri : `sim://${uriHost(uri)}`);
  return (uri) => {
    if (uri.startsWith("sim://")) return sims(uri);
    // The libvirt remote-protocol provider is not part of this build yet: such a Host reports
    // this error in its Reachable condition instead of being silently simulated.
    throw new ProviderError(
      "Unsupported",
      uriHost(uri),
      "connect",
      `no provider for ${uri} in this build: use sim:// hosts or --simulate`,
    );
  };
}

export function runCommand(): Command {
  return new Command("run")
    .description("run the controller on a directory of manifests (standalone mode)")
    .argument("[dir...]", "directories or files of manifests to watch", ["."])
    .option("--state-dir <dir>", "crash-safe status store", ".virtwarden/state")
    .option("--secrets-dir <dir>", "fence/power agent credentials (standalone Secrets)")
    .option("--simulate", "run every Host on the in-process simulator", false)
    .option("--sim-seed <n>", "seed of the simulator's randomness", "1")
    .option("--metrics-addr <addr>", "serve /metrics, /healthz, /readyz here", "127.0.0.1:8080")
    .option("--workers <n>", "VirtualMachine workers", positiveInt("--workers"), "16")
    .option(
      "--heartbeat-interval <ms>",
      "default host heartbeat interval",
      positiveInt("--heartbeat-interval"),
      "1000",
    )
    .option("--log-level <level>", "trace | debug | info | warn | error", "info")
    .option("--log-format <format>", "json | pretty", process.stdout.isTTY ? "pretty" : "json")
    .action(async (dirs: string[], opts: RunOptions) => {
      const { FileStore } = await import("../store/files/index.js");
      const { Runtime } = await import("./runtime.js");
      const { startHttpServer } = await import("./http.js");
      const logger = createLogger({ level: opts.logLevel, pretty: opts.logFormat === "pretty" });
      const registry = new Registry();
      collectDefaultMetrics({ register: registry, prefix: "virtwarden_process_" });
      const store = new FileStore({
        manifestDir: dirs,
        stateDir: opts.stateDir,
        secretsDir: opts.secretsDir,
        logger,
      });
      const runtime = new Runtime({
        store,
        providerFactory: await providerFactory(opts, store),
        registry,
        logger,
        vmWorkers: Number(opts.workers),
        heartbeatIntervalMs: Number(opts.heartbeatInterval),
      });
      const server = await startHttpServer({
        address: opts.metricsAddr,
        registry,
        ready: () => runtime.isReady(),
      });
      logger.info(
        {
          version: VERSION,
          dirs,
          stateDir: opts.stateDir,
          simulate: opts.simulate,
          metrics: opts.metricsAddr,
        },
        "virtwarden starting",
      );
      const stopped = new Promise<void>((resolve) => {
        let stopping = false;
        const stop = (signal: string) => {
          if (stopping) return;
          stopping = true;
          logger.info({ signal }, "stopping: finishing in-flight work and persisting status");
          runtime
            .stop(10_000)
            .catch((e: unknown) => logger.error({ err: String(e) }, "error while stopping"))
            .finally(() => server.close(() => resolve()));
        };
        process.once("SIGTERM", () => stop("SIGTERM"));
        process.once("SIGINT", () => stop("SIGINT"));
      });
      await runtime.start();
      await stopped;
      logger.info("stopped");
    });
}
