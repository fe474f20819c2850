/**
 * A standby must not export fleet gauges that read as real zeros, and `virtwarden_leader` says
 * which replica leads. The Runtime as `virtwarden run` builds it on a standby (constructed, never
 * started), once leading (started), and after leadership ended (stopped). The expectations are
 * the text format itself, parsed here, not the registry's objects.
 */
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { Runtime } from "../../src/cli/runtime.js";
import { silentLogger } from "../../src/controller/log.js";
import { Simulator, simulatorFactory } from "../../src/providers/sim/index.js";
import { eventuallyWith } from "../support/eventually.js";
import { hostResource, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";

const FLEET = [
  "virtwarden_availability_ratio",
  "virtwarden_vm_availability_ratio",
  "virtwarden_failover_capacity_sufficient",
  "virtwarden_failover_stranded_vms",
  "virtwarden_vms",
  "virtwarden_hosts",
  "virtwarden_host_phase",
  "virtwarden_out_of_sync_resources",
  "virtwarden_active_hosts",
  "virtwarden_active_hosts_lower_bound",
  "virtwarden_migrations_in_progress",
];

/** Sample lines by metric name (HELP/TYPE comments are not samples). */
function samples(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0] ?? "";
    out.set(name, [...(out.get(name) ?? []), line]);
  }
  return out;
}

const eventually = eventuallyWith({ timeoutMs: 20_000, everyMs: 20 });

describe("virtwarden_leader and the fleet gauges of a standby", () => {
  it("a standby exports leader 0 and no fleet sample; the leader 1 and real values; stopped, none again", async () => {
    const sim = new Simulator({
      seed: 3,
      latency: "none",
      baseImages: [{ pool: "default", name: "debian-12.qcow2", capacityBytes: 2 * 1024 ** 3 }],
    });
    const store = new MemoryStore();
    for (const h of ["h0", "h1"]) {
      sim.addHost(h, { cpus: 8, memoryBytes: 8 * 1024 ** 3 });
      store.apply(hostResource(h));
    }
    store.apply(
      vm("app")
        .spec({
          resources: { cpu: 1, memory: "1Gi" },
          disks: [{ name: "root", size: "4Gi", source: { image: { name: "debian-12.qcow2" } } }],
        })
        .build(),
    );
    const registry = new Registry();
    const rt = new Runtime({
      store,
      providerFactory: simulatorFactory(sim),
      registry,
      logger: silentLogger,
      heartbeatIntervalMs: 100,
      failoverCheckIntervalMs: 50,
      perVMMetrics: true,
      consolidation: { intervalMs: 50 },
    });

    // Standby: the Runtime exists (its metrics are registered) but does not lead.
    let s = samples(await registry.metrics());
    expect(s.get("virtwarden_leader")).toEqual(["virtwarden_leader 0"]);
    for (const name of FLEET) expect(s.get(name), name).toBeUndefined();
    // Its counters are real zeros (it reconciled nothing) and stay exported.
    expect(s.get("virtwarden_recoveries_total")?.length).toBeGreaterThan(0);

    await rt.start();
    try {
      await eventually(
        () => store.get("VirtualMachine", "default/app")?.status?.phase === "Running",
        "Running",
      );
      await eventually(async () => {
        const m = samples(await registry.metrics());
        return FLEET.every((n) => m.has(n));
      }, "every fleet gauge exported by the leader");
      s = samples(await registry.metrics());
      expect(s.get("virtwarden_leader")).toEqual(["virtwarden_leader 1"]);
      // Two hosts with room for the one VM on either: N-1 holds.
      expect(s.get("virtwarden_failover_capacity_sufficient")).toEqual([
        "virtwarden_failover_capacity_sufficient 1",
      ]);
      const ratio = Number(s.get("virtwarden_availability_ratio")?.[0]?.split(" ")[1]);
      expect(ratio).toBeGreaterThan(0);
      expect(ratio).toBeLessThanOrEqual(1);
    } finally {
      await rt.stop(100);
    }

    // Leadership ended: no stale fleet value is left behind.
    s = samples(await registry.metrics());
    expect(s.get("virtwarden_leader")).toEqual(["virtwarden_leader 0"]);
    for (const name of FLEET) expect(s.get(name), name).toBeUndefined();
  }, 60_000);
});
