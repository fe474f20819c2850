/**
 * The Host reconciler in the real Runtime on the simulator, with the controller's own troubles:
 * its wall clock stepped by an hour (forwards and back), and its event loop blocked by long
 * synchronous jobs while every host is fine. Nothing may be fenced. The oracle is the simulated
 * hosts' power state (what the sim fence agent switches off), not the Host status.
 * A host really switched off during the same troubles is still fenced.
 * These are guards (the simulator answers in-process, so a blocked loop hides no reply from it,
 * and the previous heartbeat passed them too); the stall that did fence a healthy host, replies
 * landing in a socket while the controller is stopped, is libvirt-heartbeat.test.ts (a2).
 */
import { afterEach, describe, expect, it } from "vitest";
import { Simulator } from "../../../src/providers/sim/index.js";
import { hostResource } from "../../support/fixtures.js";
import { MemoryStore } from "../../support/memory-store.js";
import { simRuntime } from "../../support/sim-runtime.js";

const GiB = 1024 ** 3;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function blockLoop(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    /* a long synchronous job */
  }
}

async function cluster(hosts: number) {
  const sim = new Simulator({ seed: 3, latency: "none", baseImages: [] });
  const store = new MemoryStore();
  for (let i = 0; i < hosts; i++) {
    sim.addHost(`h${i}`, { cpus: 8, memoryBytes: 16 * GiB });
    const h = hostResource(`h${i}`);
    h.spec.fencing = { agent: "sim" };
    store.apply(h);
  }
  let offsetMs = 0;
  await simRuntime(sim, store, {
    fence: true,
    inventoryIntervalMs: 500,
    now: () => new Date(Date.now() + offsetMs),
    cleanups,
  });
  const deadline = Date.now() + 15_000;
  while (!store.list("Host").every((h) => h.status?.phase === "Ready")) {
    if (Date.now() > deadline) throw new Error("hosts not Ready");
    await sleep(10);
  }
  const powered = () =>
    sim
      .hosts()
      .filter((h) => h.powered)
      .map((h) => h.name);
  return { sim, store, powered, step: (ms: number) => (offsetMs += ms) };
}

describe("the controller's own clock and stalls", () => {
  it("wall-clock steps of an hour, forwards and back, fence nothing", async () => {
    const c = await cluster(3);
    for (const step of [3_600_000, -7_200_000, 3_600_000, 86_400_000]) {
      c.step(step);
      await sleep(500); // five beats
      expect(c.powered(), `after a step of ${step} ms`).toEqual(["h0", "h1", "h2"]);
    }
    expect(c.store.list("Host").map((h) => h.status?.phase)).toEqual(["Ready", "Ready", "Ready"]);
  });

  it("event-loop blocks of 0.5 to 3 s (thirty beats) while every host answers fence nothing", async () => {
    const c = await cluster(3);
    for (const ms of [500, 1_000, 3_000, 700, 2_000]) {
      blockLoop(ms);
      await sleep(300);
      blockLoop(ms);
      await sleep(600);
      expect(c.powered(), `after blocks of ${ms} ms`).toEqual(["h0", "h1", "h2"]);
    }
  });

  it("a host switched off between stalls is still fenced", async () => {
    const c = await cluster(3);
    blockLoop(2_000);
    c.sim.powerOff("h1");
    const deadline = Date.now() + 15_000;
    while (c.store.get("Host", "h1")?.status?.phase !== "Fenced") {
      if (Date.now() > deadline) throw new Error("h1 not fenced");
      await sleep(10);
    }
    // The sim agent confirmed it off; the others untouched.
    expect(c.powered()).toEqual(["h0", "h2"]);
  });
});
