/**
 * A call on its way to a host when the host loses power is lost with the daemon that received
 * it, even if the host is back by the time the call would have landed: a rebooted host never
 * starts a domain it was asked to start before the power loss (the chaos suites rely on the
 * simulator being at least this physical).
 */
import { describe, expect, it } from "vitest";
import { Simulator, simulatorFactory } from "../../../src/providers/sim/index.js";

const GiB = 1024 ** 3;

describe("simulated power loss during a call", () => {
  it("a start in flight across a power cycle fails and starts nothing; one on a new session works", async () => {
    const sim = new Simulator({
      seed: 1,
      latency: { callMs: 0, startMs: 200, jitter: 0 },
      baseImages: [{ pool: "default", name: "base.qcow2", capacityBytes: GiB }],
    });
    sim.addHost("h1", { cpus: 4, memoryBytes: 8 * GiB });
    const p = simulatorFactory(sim)("sim://h1");
    await p.connect();
    await p.defineDomain({
      name: "d",
      uuid: "00000000-0000-4000-8000-000000000001",
      vcpus: 1,
      memoryBytes: 64 * 1024 ** 2,
      disks: [],
      interfaces: [],
    } as unknown as Parameters<typeof p.defineDomain>[0]);
    const start = p.startDomain("d");
    // The power goes and comes back while the start is on its way (a cycle shorter than the call).
    await new Promise((r) => setTimeout(r, 20));
    sim.crashHost("h1");
    sim.restoreHost("h1");
    await expect(start).rejects.toMatchObject({ code: "Unreachable" });
    await expect(start).rejects.toThrow(/lost power during the call|host rebooted/);
    expect(sim.runningCopies("d")).toEqual([]);
    expect(sim.lookupHost("h1")?.domains.get("d")?.state.state).toBe("shutoff");
    // The session died with the daemon: calls on it fail until the client connects again, as a
    // real libvirt client's do (this is what makes a power cycle between two heartbeats seen).
    expect(p.health()).toMatchObject({ connected: false });
    await expect(p.ping()).rejects.toThrow(/connection reset: the host rebooted/);
    expect(sim.runningCopies("d")).toEqual([]);
    // A call sent on a new session after the reboot is served.
    await p.connect();
    await p.startDomain("d");
    expect(sim.runningCopies("d")).toEqual(["h1"]);
  });
});
