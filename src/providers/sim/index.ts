/**
 * The simulator: an in-process HypervisorProvider world (the embedded default and the scale-test
 * engine). `simulatorFactory(sim)` gives the ProviderFactory for sim://NAME URIs.
 */

import { parseQuantity } from "../../api/quantity.js";
import type { ProviderFactory } from "../types.js";
import { SimProvider, simHostName } from "./provider.js";
import type { SimHostOptions, Simulator } from "./world.js";

export { SimProvider, simHostName } from "./provider.js";
export {
  gamma,
  hostSeed,
  type Outage,
  outageSchedule,
  type VolatileClock,
  type VolatileHostSpec,
  VolatileHosts,
  weibull,
} from "./volatile.js";
export {
  guestLoad,
  isActive,
  NO_LATENCY,
  prng,
  REALISTIC_LATENCY,
  type SimBaseImage,
  type SimHostOptions,
  type SimLatency,
  type SimLoad,
  Simulator,
  type SimulatorOptions,
} from "./world.js";

/**
 * `mapUri` puts other URIs on simulated hosts (--simulate maps a Host's libvirt URI onto the
 * simulated host named after it); it applies to a provider's own URI and to migration targets
 * alike, which name the target Host's URI as written.
 */
export function simulatorFactory(
  sim: Simulator,
  mapUri: (uri: string) => string = (u) => u,
): ProviderFactory {
  return (uri: string) => {
    const own = mapUri(uri);
    const name = simHostName(own);
    const size = simHostSize(own);
    if (size) sim.addHost(name, size);
    return new SimProvider(sim, own, mapUri);
  };
}

/**
 * The size a sim:// URI asks for its host (`sim://h1?cpus=4&memory=8Gi`), undefined when it asks
 * none. Applies when the host is first made (a host the simulator already has keeps its size).
 */
export function simHostSize(uri: string): SimHostOptions | undefined {
  const q = uri.indexOf("?");
  if (q < 0) return undefined;
  const params = new URLSearchParams(uri.slice(q + 1).split("#")[0]);
  const out: SimHostOptions = {};
  for (const [key, value] of params) {
    if (key === "cpus") {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1 || n > 4096)
        throw new Error(`${uri}: cpus=${value} is not a whole number of CPUs between 1 and 4096`);
      out.cpus = n;
    } else if (key === "memory") {
      let bytes: number;
      try {
        bytes = parseQuantity(value);
      } catch {
        throw new Error(`${uri}: memory=${value} is not a quantity such as 8Gi`);
      }
      if (!(bytes >= 64 * 1024 ** 2)) throw new Error(`${uri}: memory=${value} is less than 64Mi`);
      out.memoryBytes = bytes;
    } else {
      throw new Error(`${uri}: unknown parameter ${key} (a simulated host takes cpus and memory)`);
    }
  }
  return out;
}
