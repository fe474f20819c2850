import { simUri } from "../../../src/cli/run.js";
import { Simulator, simulatorFactory } from "../../../src/providers/sim/index.js";
import { providerContract } from "../contract.js";

/**
 * The simulator, addressed by sim:// URIs, and as --simulate addresses it: by the Hosts' libvirt
 * URIs mapped onto simulated hosts, migration targets included (a drain names the target Host's
 * URI as written: before the mapping reached migrateDomain, every drain failed with "not a
 * simulator URI").
 */
for (const [label, uriOf, mapUri] of [
  ["simulator", (h: string) => `sim://${h}`, undefined],
  ["simulator under --simulate", (h: string) => `qemu+tcp://${h}/system`, simUri],
] as const)
  providerContract(label, async () => {
    const sim = new Simulator({
      seed: 7,
      latency: "none",
      baseImages: [{ pool: "default", name: "base.qcow2", capacityBytes: 64 * 1024 ** 2 }],
    });
    sim.addHost("a");
    sim.addHost("b");
    // The simulated base holds data, like the real test bed's (8 MiB written).
    const base = sim.hosts()[0]?.pools.get("default")?.volumes.get("base.qcow2");
    if (base) base.allocationBytes = 8 * 1024 ** 2;
    const factory = simulatorFactory(sim, mapUri);
    return {
      a: factory(uriOf("a")),
      b: factory(uriOf("b")),
      bUriFromA: uriOf("b"),
      pool: "default",
      baseVolume: "base.qcow2",
      checkpointDir: "/shared/checkpoints",
      migrationUnsafe: false,
      crashDomain: async (host, name) => sim.crashDomain(host, name),
      teardown: async () => {},
    };
  });
