/**
 * A simulated BMC that stops answering (what `virtwarden sim fail-fence` injects): the sim fence
 * and power agents fail with their own error types, naming the host, and leave the host as it
 * was; once the BMC answers again they work. The host's power flag is read from the world
 * directly, not through the agents under test.
 */
import { describe, expect, it } from "vitest";
import { FenceError, SimFenceAgent } from "../../../src/providers/fence/index.js";
import { PowerError, SimPowerAgent } from "../../../src/providers/power/index.js";
import { Simulator } from "../../../src/providers/sim/index.js";

const powered = (sim: Simulator, name: string) => sim.hosts().find((h) => h.name === name)?.powered;

describe("simulated BMC failure", () => {
  it("fencing and power control fail while the BMC is broken, and work once it answers", async () => {
    const sim = new Simulator({ seed: 1, latency: "none" });
    sim.addHost("h1");
    const fence = new SimFenceAgent(sim, "h1");
    const power = new SimPowerAgent(sim, "h1");

    sim.breakBmc("h1");
    const fenced = fence.fence("host-1").then(
      () => undefined,
      (e: unknown) => e,
    );
    const err = await fenced;
    expect(err).toBeInstanceOf(FenceError);
    expect(String(err)).toContain("host-1");
    expect(String(err)).toContain("BMC of h1 does not answer");
    expect(powered(sim, "h1")).toBe(true);
    await expect(power.powerOff("host-1")).rejects.toBeInstanceOf(PowerError);
    expect(powered(sim, "h1")).toBe(true);
    // The host itself is untouched by its BMC's failure: it still loses power when it does.
    sim.crashHost("h1");
    expect(powered(sim, "h1")).toBe(false);
    await expect(power.powerOn("host-1")).rejects.toThrow(/does not answer/);
    expect(powered(sim, "h1")).toBe(false);

    sim.breakBmc("h1", false);
    await power.powerOn("host-1");
    expect(powered(sim, "h1")).toBe(true);
    await fence.fence("host-1");
    expect(powered(sim, "h1")).toBe(false);
  });
});
