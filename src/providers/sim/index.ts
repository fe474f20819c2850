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

export function simulatorFactory(sim: Simulator): ProviderFactory {
  return (uri: string) => {
    simHostName(uri);
    return new SimProvider(sim, uri);
  };
}
