/**
 * The Runtime-on-the-simulator rig of the reconciler scenario tests, in one place: every
 * controller of the product, the simulator as every host's provider, and the caller's store and
 * simulator (what the test asserts on). Defaults: a fresh metrics registry, the silent logger,
 * heartbeats every 100 ms; any RuntimeOptions given override them.
 *
 * `fence` / `power` wire the simulator's power switch as the Hosts' fence / power agents (a Host
 * whose spec names the `sim` agent), a host named by its `sim://NAME` URI, as `run --simulate`
 * does. The Runtime is returned started; with `cleanups`, its stop (100 ms grace) is registered
 * there before the start, so a test that fails in its start still stops it.
 */
import { Registry } from "prom-client";
import type { Host } from "../../src/api/types.js";
import { Runtime, type RuntimeOptions } from "../../src/cli/runtime.js";
import { silentLogger } from "../../src/controller/log.js";
import { createFenceAgentFactory } from "../../src/providers/fence/index.js";
import { createPowerAgentFactory } from "../../src/providers/power/index.js";
import { type Simulator, simulatorFactory } from "../../src/providers/sim/index.js";
import type { ResourceStore } from "../../src/store/types.js";

export interface SimRuntimeOptions extends Partial<Omit<RuntimeOptions, "store" | "providerFactory">> {
  /** Fence agent `sim`: the simulator's power switch. */
  fence?: boolean;
  /** Power agent `sim`: the simulator's power switch (consolidation). */
  power?: boolean;
  /** Where the runtime's stop is registered (a test file's afterEach list). */
  cleanups?: { push(stop: () => Promise<void>): unknown };
}

const simHostName = (h: Pick<Host, "spec">) => h.spec.uri.replace("sim://", "");

export async function simRuntime(
  sim: Simulator,
  store: ResourceStore,
  opts: SimRuntimeOptions = {},
): Promise<Runtime> {
  const { fence, power, cleanups, ...overrides } = opts;
  const agents = {
    readSecret: (ref: { name: string; namespace?: string }) => store.readSecret(ref),
    simPower: sim,
    simHostName,
  };
  const rt = new Runtime({
    store,
    providerFactory: simulatorFactory(sim),
    registry: new Registry(),
    logger: silentLogger,
    heartbeatIntervalMs: 100,
    ...(fence ? { fenceAgents: createFenceAgentFactory(agents) } : {}),
    ...(power ? { powerAgents: createPowerAgentFactory(agents) } : {}),
    ...overrides,
  });
  cleanups?.push(() => rt.stop(100));
  await rt.start();
  return rt;
}
