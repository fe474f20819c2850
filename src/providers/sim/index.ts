/**
 * The simulator: an in-process HypervisorProvider world (the embedded default and the scale-test
 * engine). `simulatorFactory(sim)` gives the ProviderFactory for sim://NAME URIs.
 */
import type { ProviderFactory } from "../types.js";
import { SimProvider, simHostName } from "./provider.js";
import type { Simulator } from "./world.js";

export { SimProvider, simHostName } from "./provider.js";
export {
  NO_LATENCY,
  prng,
  REALISTIC_LATENCY,
  type SimBaseImage,
  type SimHostOptions,
  type SimLatency,
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
    simHostName(own);
    return new SimProvider(sim, own, mapUri);
  };
}
