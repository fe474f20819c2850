import { Simulator, simulatorFactory } from "../../../src/providers/sim/index.js";
import { providerContract } from "../contract.js";

providerContract("simulator", async () => {
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
  const factory = simulatorFactory(sim);
  return {
    a: factory("sim://a"),
    b: factory("sim://b"),
    bUriFromA: "sim://b",
    pool: "default",
    baseVolume: "base.qcow2",
    checkpointDir: "/shared/checkpoints",
    migrationUnsafe: false,
    crashDomain: async (host, name) => sim.crashDomain(host, name),
    teardown: async () => {},
  };
});
