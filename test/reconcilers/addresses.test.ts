/**
 * Fixed IP/MAC claims: the second claimant of an address on a network is refused with a clear
 * reason (pure rule), and in the Runtime it stays Pending until the first one goes.
 */
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { findAddressConflicts } from "../../src/api/address-claims.js";
import type { VirtualNetwork } from "../../src/api/types.js";
import { Runtime } from "../../src/cli/runtime.js";
import { silentLogger } from "../../src/controller/log.js";
import { Simulator, simulatorFactory } from "../../src/providers/sim/index.js";
import { eventuallyWith } from "../support/eventually.js";
import { hostResource, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";
import { simRuntime } from "../support/sim-runtime.js";

const eventually = eventuallyWith({ timeoutMs: 10_000 });

const net = (leases: { mac: string; ip: string }[] = []): VirtualNetwork => ({
  apiVersion: "virtwarden.io/v1alpha1",
  kind: "VirtualNetwork",
  metadata: { name: "backend", namespace: "default" },
  spec: { mode: "nat", subnet: "10.10.0.0/24", ...(leases.length ? { dhcp: { leases } } : {}) },
});

const claimant = (name: string, at: string, n: { ip?: string; mac?: string }) => {
  const v = vm(name)
    .spec({ networks: [{ network: "backend", ...n }] })
    .build();
  v.metadata.creationTimestamp = `2026-06-01T${at}Z`;
  return v;
};

describe("findAddressConflicts", () => {
  it("refuses an IP or a MAC to the later claimant on the same network", () => {
    const c = findAddressConflicts(
      [
        claimant("b", "10:00:01", { ip: "10.10.0.5" }),
        claimant("a", "10:00:00", { ip: "10.10.0.5", mac: "52:54:00:00:00:01" }),
        claimant("c", "10:00:02", { mac: "52:54:00:00:00:01" }),
        claimant("d", "10:00:03", { ip: "10.10.0.6" }),
      ],
      [net()],
    );
    expect(c.get("default/a")).toBeUndefined();
    expect(c.get("default/b")).toBe("IP 10.10.0.5 on network backend is claimed by default/a");
    expect(c.get("default/c")).toBe("MAC 52:54:00:00:00:01 on network backend is claimed by default/a");
    expect(c.get("default/d")).toBeUndefined();
  });

  it("refuses a claim the network's leases contradict, accepts the one they grant", () => {
    const leases = [{ mac: "52:54:00:10:00:10", ip: "10.10.0.10" }];
    const c = findAddressConflicts(
      [
        claimant("db", "10:00:00", { ip: "10.10.0.10", mac: "52:54:00:10:00:10" }),
        claimant("thief", "09:00:00", { ip: "10.10.0.10", mac: "52:54:00:99:99:99" }),
      ],
      [net(leases)],
    );
    expect(c.get("default/thief")).toBe(
      "network backend leases IP 10.10.0.10 to MAC 52:54:00:10:00:10, not 52:54:00:99:99:99",
    );
    expect(c.get("default/db")).toBeUndefined();
  });

  it("does not mix networks or namespaces", () => {
    const other = claimant("x", "10:00:01", { ip: "10.10.0.5" });
    other.metadata.namespace = "team-b";
    const c = findAddressConflicts([claimant("a", "10:00:00", { ip: "10.10.0.5" }), other], [net()]);
    expect(c.size).toBe(0);
  });
});

describe("fixed addresses in the Runtime", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  it("keeps the second claimant Pending with the reason, and places it once the first is gone", async () => {
    const sim = new Simulator({
      seed: 2,
      latency: "none",
      baseImages: [{ pool: "default", name: "debian-12.qcow2", capacityBytes: 2 * 1024 ** 3 }],
    });
    sim.addHost("h0", { cpus: 8, memoryBytes: 16 * 1024 ** 3 });
    const store = new MemoryStore();
    store.apply(hostResource("h0"));
    store.apply(net());
    await simRuntime(sim, store, {
      cleanups,
    });
    const phase = (n: string) => store.get("VirtualMachine", `default/${n}`)?.status?.phase;
    await eventually(() => store.get("VirtualNetwork", "default/backend")?.status !== undefined, "network");
    store.apply(claimant("first", "10:00:00", { ip: "10.10.0.5" }));
    await eventually(() => phase("first") === "Running", "first running");
    store.apply(claimant("second", "10:00:01", { ip: "10.10.0.5" }));
    await eventually(() => phase("second") === "Pending", "second pending");
    const ready = store
      .get("VirtualMachine", "default/second")
      ?.status?.conditions?.find((c) => c.type === "Ready");
    expect(ready).toMatchObject({ status: "False", reason: "AddressConflict" });
    expect(ready?.message).toBe("IP 10.10.0.5 on network backend is claimed by default/first");
    expect(store.get("VirtualMachine", "default/second")?.status?.host).toBeUndefined();
    store.remove("VirtualMachine", "default/first");
    await eventually(() => phase("second") === "Running", "second placed once the first is gone");
  });
});

describe("fixed IPs as DHCP host entries, and leased addresses in status", () => {
  it("serves a VM's fixed IP from its network, reports every VM's lease, and drops the entry with the VM", async () => {
    const sim = new Simulator({ seed: 3, latency: "none" });
    sim.addHost("h0", { cpus: 8, memoryBytes: 16 * 1024 ** 3 });
    const store = new MemoryStore();
    store.apply(hostResource("h0"));
    const vnet = net();
    vnet.spec.dhcp = { range: { start: "10.10.0.100", end: "10.10.0.120" } };
    store.apply(vnet);
    const rt = new Runtime({
      store,
      providerFactory: simulatorFactory(sim),
      registry: new Registry(),
      logger: silentLogger,
      heartbeatIntervalMs: 100,
    });
    try {
      await rt.start();
      const status = (n: string) => store.get("VirtualMachine", `default/${n}`)?.status;
      store.apply(claimant("fixed", "10:00:00", { ip: "10.10.0.7" }));
      store.apply(claimant("dynamic", "10:00:01", {}));
      await eventually(
        () => !!status("fixed")?.interfaces?.[0]?.ip && !!status("dynamic")?.interfaces?.[0]?.ip,
        "both leased",
      );
      const mac = status("fixed")?.interfaces?.[0]?.mac as string;
      expect(mac).toMatch(/^52:54:00:/);
      expect(status("fixed")?.interfaces).toEqual([{ network: "backend", mac, ip: "10.10.0.7" }]);
      expect(status("dynamic")?.interfaces?.[0]?.ip).toBe("10.10.0.100");
      const hostNet = () => rt.fleet.connection("h0")?.provider.getNetwork("default_backend");
      expect((await hostNet())?.spec.leases).toEqual([{ mac, ip: "10.10.0.7", hostname: "fixed" }]);
      store.remove("VirtualMachine", "default/fixed");
      await eventually(async () => (await hostNet())?.spec.leases === undefined, "entry removed");
      // The update went in as an update, never reported as drift.
      expect(store.listEvents().some((e) => e.reason === "DriftCorrected")).toBe(false);
      expect(store.listEvents().some((e) => e.reason === "NetworkUpdated")).toBe(true);
    } finally {
      await rt.stop(100);
    }
  });
});
