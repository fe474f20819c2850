/**
 * Simulated host sizes in the URI (`sim://h1?cpus=4&memory=8Gi`, issue 17 point 9): what the host
 * reports is what the URI asked; a bad parameter is a clear error naming the URI, not a host of
 * the default size.
 */
import { describe, expect, it } from "vitest";
import { Simulator, simHostSize, simulatorFactory } from "../../../src/providers/sim/index.js";

const GiB = 1024 ** 3;

describe("simulated host sizes from the URI", () => {
  it("a host made from sim://h1?cpus=4&memory=8Gi reports 4 CPUs and 8 GiB", async () => {
    const sim = new Simulator({ seed: 1, latency: "none", autoCreateHosts: true });
    const p = simulatorFactory(sim)("sim://h1?cpus=4&memory=8Gi");
    await p.connect();
    const info = await p.hostInfo();
    expect({ cpus: info.cpus, memoryBytes: info.memoryBytes }).toEqual({ cpus: 4, memoryBytes: 8 * GiB });
    // Without parameters: the simulator's default size.
    const q = simulatorFactory(sim)("sim://h2");
    await q.connect();
    expect((await q.hostInfo()).cpus).toBe(32);
  });

  it("refuses what is not a size, naming the URI and the parameter", () => {
    const sim = new Simulator({ seed: 1, latency: "none", autoCreateHosts: true });
    const make = (uri: string) => () => simulatorFactory(sim)(uri);
    expect(make("sim://h1?cpus=four")).toThrow(/sim:\/\/h1\?cpus=four: cpus=four is not a whole number/);
    expect(make("sim://h1?cpus=0")).toThrow(/between 1 and 4096/);
    expect(make("sim://h1?memory=8Gx")).toThrow(/memory=8Gx is not a quantity such as 8Gi/);
    expect(make("sim://h1?memory=1Mi")).toThrow(/less than 64Mi/);
    expect(make("sim://h1?disk=1Ti")).toThrow(/unknown parameter disk/);
    // Nothing was made of the refused URIs.
    expect(sim.hosts().map((h) => h.name)).toEqual([]);
    expect(simHostSize("sim://h1")).toBeUndefined();
  });
});
