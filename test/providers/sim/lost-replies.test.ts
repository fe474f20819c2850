/**
 * The simulator's lost-reply fault: the host carries the call out, the caller hears nothing until
 * its timeout. The chaos suites use it to play "the start was sent, the connection dropped before
 * the answer": a controller that took the timeout for "not started" would start a second copy.
 */
import { describe, expect, it } from "vitest";
import { Simulator, simulatorFactory } from "../../../src/providers/sim/index.js";
import { isProviderError } from "../../../src/providers/types.js";

describe("simulator: lost replies", () => {
  it("a start whose reply is lost times out, and the domain runs", async () => {
    const sim = new Simulator({ seed: 1, latency: "none", callTimeoutMs: 100 });
    sim.addHost("a", { cpus: 4, memoryBytes: 4 * 1024 ** 3 });
    const p = simulatorFactory(sim)("sim://a");
    await p.connect();
    await p.defineDomain({ name: "d", vcpus: 1, memoryBytes: 256 * 1024 ** 2, disks: [], interfaces: [] });
    sim.loseReplies({ host: "a", op: "startDomain", probability: 1 });
    const err = await p.startDomain("d").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isProviderError(err, "Timeout")).toBe(true);
    // Done on the host all the same (read from the simulator's own table, not through the provider).
    expect(sim.lookupHost("a")?.domains.get("d")?.state.state).toBe("running");
    // Other calls still answer; once cleared, starts answer again.
    expect((await p.getDomainState("d"))?.state).toBe("running");
    sim.clearFaults();
    await p.destroyDomain("d");
    await p.startDomain("d");
    expect(sim.lookupHost("a")?.domains.get("d")?.state.state).toBe("running");
  });

  it("an aborted caller is told so at once, and the call was carried out", async () => {
    const sim = new Simulator({ seed: 1, latency: "none", callTimeoutMs: 60_000 });
    sim.addHost("a", { cpus: 4, memoryBytes: 4 * 1024 ** 3 });
    const p = simulatorFactory(sim)("sim://a");
    await p.connect();
    await p.defineDomain({ name: "d", vcpus: 1, memoryBytes: 256 * 1024 ** 2, disks: [], interfaces: [] });
    sim.loseReplies({ host: "a", probability: 1 });
    const ac = new AbortController();
    const pending = p.startDomain("d", ac.signal).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 20));
    ac.abort();
    expect(isProviderError(await pending, "Aborted")).toBe(true);
    expect(sim.lookupHost("a")?.domains.get("d")?.state.state).toBe("running");
  });
});
