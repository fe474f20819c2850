/**
 * Host reliability on the simulator, standalone mode (FileStore): a host powered off and on
 * twice, with a controller restart in between, ends with the failures, up and down time, MTBF,
 * MTTR and availability worked out here from the times the test sets on the controller's clock;
 * the restart keeps the figures and credits nothing to the time no controller ran. A short
 * session drop (beats missed, then answered: what a libvirtd restart looks like) is no failure.
 *
 * The controller's clock (`now`) is the test's and stands still between the test's steps; the
 * heartbeat's own timing is monotonic, so detection runs at its normal pace.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import type { Host } from "../../../src/api/types.js";
import { Runtime } from "../../../src/cli/runtime.js";
import { silentLogger } from "../../../src/controller/log.js";
import { createFenceAgentFactory } from "../../../src/providers/fence/index.js";
import { Simulator, simulatorFactory } from "../../../src/providers/sim/index.js";
import { FileStore } from "../../../src/store/files/index.js";
import { eventually } from "../../support/eventually.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const GiB = 1024 ** 3;
const hostYaml = (name: string, missedBeats = 3) =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: Host\nmetadata: {name: ${name}}\nspec:\n  uri: "sim://${name}"\n  fencing: {agent: sim}\n  heartbeat: {missedBeats: ${missedBeats}}\n`;

function bed(missedBeats = 3) {
  const root = mkdtempSync(join(tmpdir(), "vw-reliability-"));
  cleanups.push(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, "manifests");
  mkdirSync(dir);
  writeFileSync(join(dir, "hosts.yaml"), hostYaml("h0", missedBeats));
  const sim = new Simulator({ latency: "none" });
  sim.addHost("h0", { cpus: 8, memoryBytes: 16 * GiB });
  const B = Date.parse("2026-03-01T00:00:00Z");
  const clock = { t: B };
  const start = async () => {
    const store = new FileStore({ manifestDir: dir, stateDir: join(root, "state"), viewIntervalMs: 50 });
    const registry = new Registry();
    const rt = new Runtime({
      store,
      providerFactory: simulatorFactory(sim),
      fenceAgents: createFenceAgentFactory({
        readSecret: (ref) => store.readSecret(ref),
        simPower: sim,
        simHostName: (h) => h.spec.uri.replace("sim://", ""),
      }),
      registry,
      logger: silentLogger,
      heartbeatIntervalMs: 100,
      now: () => new Date(clock.t),
    });
    await rt.start();
    let stopped = false;
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      await rt.stop(100);
    };
    cleanups.push(stop);
    const host = () => store.get("Host", "h0") as Host | undefined;
    /** Moves the clock and waits for a beat the host answered at the new time. */
    const answeredAt = async (t: number) => {
      clock.t = t;
      await eventually(
        () => rt.fleet.connection("h0")?.lastHeartbeat?.getTime() === t,
        `a beat at +${(t - B) / 1000} s`,
      );
    };
    return { store, registry, rt, host, stop, answeredAt };
  };
  return { sim, clock, B, start };
}

describe("host reliability on the simulator", () => {
  it("counts power-offs as failures with MTBF and MTTR from status, kept across a controller restart", async () => {
    const { sim, clock, B, start } = bed();
    const at = (s: number) => B + s * 1000;
    const iso = (s: number) => new Date(at(s)).toISOString();
    let c = await start();
    await eventually(() => c.host()?.status?.phase === "Ready", "h0 Ready");
    expect(c.host()?.status?.reliability).toMatchObject({ failures: 0, since: iso(0) });

    // Up 1000 s, then powered off: judged dead and fenced; back 100 s later.
    await c.answeredAt(at(1000));
    sim.powerOff("h0");
    await eventually(() => c.host()?.status?.phase === "Fenced", "h0 fenced");
    clock.t = at(1100);
    sim.powerOn("h0");
    await eventually(() => c.host()?.status?.phase === "Ready", "h0 back");
    expect(c.host()?.status?.reliability).toEqual({
      failures: 1,
      observedSeconds: 1100,
      upSeconds: 1000,
      downSeconds: 100,
      mtbfSeconds: 1000,
      mttrSeconds: 100,
      availability: Math.round((1000 / 1100) * 1e6) / 1e6,
      since: iso(0),
      lastFailureTime: iso(1000),
    });

    // The controller stops; 3900 s pass with nobody watching; another one starts on the journal.
    await c.stop();
    clock.t = at(5000);
    c = await start();
    await c.answeredAt(at(5000));
    await eventually(() => c.host()?.status?.phase === "Ready", "h0 Ready after the restart");
    expect(c.host()?.status?.reliability).toMatchObject({ failures: 1, upSeconds: 1000, downSeconds: 100 });

    // Up 1000 s more (counted from the restart, not from the last figure), off for 300 s.
    await c.answeredAt(at(6000));
    sim.powerOff("h0");
    await eventually(() => c.host()?.status?.phase === "Fenced", "h0 fenced again");
    clock.t = at(6300);
    sim.powerOn("h0");
    await eventually(() => c.host()?.status?.phase === "Ready", "h0 back again");
    // up 1000 + 1000, down 100 + 300, 2 failures.
    expect(c.host()?.status?.reliability).toEqual({
      failures: 2,
      observedSeconds: 2400,
      upSeconds: 2000,
      downSeconds: 400,
      mtbfSeconds: 1000,
      mttrSeconds: 200,
      availability: Math.round((2000 / 2400) * 1e6) / 1e6,
      since: iso(0),
      lastFailureTime: iso(6000),
    });
    const text = await c.registry.metrics();
    expect(text).toContain('virtwarden_host_failures_total{host="h0"} 2');
    expect(text).toContain('virtwarden_host_mtbf_seconds{host="h0"} 1000');
    expect(text).toContain('virtwarden_host_mttr_seconds{host="h0"} 200');
    expect(text).toContain(
      `virtwarden_host_availability{host="h0"} ${Math.round((2000 / 2400) * 1e6) / 1e6}`,
    );
  });

  it("a short session drop (beats missed, then answered, as a libvirtd restart) is up time, not a failure", async () => {
    // missedBeats 20: two seconds before a verdict, ample for the test to heal the drop first.
    const { sim, clock, B, start } = bed(20);
    const at = (s: number) => B + s * 1000;
    const c = await start();
    await eventually(() => c.host()?.status?.phase === "Ready", "h0 Ready");
    await c.answeredAt(at(100));
    sim.partitionHost("h0");
    const reachable = () => c.host()?.status?.conditions?.find((x) => x.type === "Reachable")?.status;
    await eventually(() => reachable() === "False", "a missed beat recorded");
    clock.t = at(160); // a minute of silence on the controller's clock
    sim.healPartition("h0");
    await eventually(() => reachable() === "True", "answering again");
    await c.answeredAt(at(200)); // a persisted heartbeat: the span is folded
    await eventually(() => c.host()?.status?.reliability?.upSeconds === 200, "figures folded");
    expect(c.host()?.status?.phase).toBe("Ready");
    expect(c.host()?.status?.reliability).toMatchObject({
      failures: 0,
      upSeconds: 200,
      downSeconds: 0,
      availability: 1,
    });
    expect(c.host()?.status?.reliability).not.toHaveProperty("mtbfSeconds");
  });
});
