/**
 * A Host's measured use (status.usage, what loadAware placement ranks by) shown where an operator
 * looks: the Prometheus gauges virtwarden_host_{cpu,memory}_usage_ratio and the CPU% / MEM%
 * columns of `get host -o wide`. The load is set on the simulator; the figures are read back from
 * the registry's text output and the printed table. A deleted Host's series go with it.
 */
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { tableFor } from "../../../src/cli/inspect.js";
import { Simulator } from "../../../src/providers/sim/index.js";
import { eventuallyWith } from "../../support/eventually.js";
import { hostResource } from "../../support/fixtures.js";
import { MemoryStore } from "../../support/memory-store.js";
import { simRuntime } from "../../support/sim-runtime.js";

const GiB = 1024 ** 3;
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
const eventually = eventuallyWith({ timeoutMs: 20_000, everyMs: 20 });

/** The sample of `metric` for `host` in the registry's text output, if there is one. */
function sample(text: string, metric: string, host: string): number | undefined {
  const m = new RegExp(`^${metric}\\{host="${host}"\\} (\\S+)$`, "m").exec(text);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

/** The printed table as one record per row, keyed by the header's words. */
function rows(table: string): Record<string, string>[] {
  const [header = "", ...lines] = table.split("\n");
  const names = header.split(/\s{3,}/);
  return lines.map((l) => Object.fromEntries(l.split(/\s{3,}/).map((v, i) => [names[i] ?? `${i}`, v])));
}

describe("a Host's measured use, exported and printed", () => {
  it("the gauges and the -o wide columns show the load set on the simulator; a deleted host's series go", async () => {
    const sim = new Simulator({ seed: 3, latency: "none" });
    const store = new MemoryStore();
    for (const name of ["loaded", "idle"]) {
      sim.addHost(name, { cpus: 8, memoryBytes: 16 * GiB });
      store.apply(hostResource(name));
    }
    const registry = new Registry();
    await simRuntime(sim, store, { cleanups, registry, hostWarmupTimeoutMs: 50, inventoryIntervalMs: 100 });
    // 6 of 8 CPUs busy and half the memory resident, with no guest at all.
    sim.setHostLoad("loaded", { cpus: 6, memoryBytes: 8 * GiB });
    // Usage is a delta of two samples: wait for one whose pair both follow the change.
    const since = Date.now() + 250;
    await eventually(
      () =>
        ["loaded", "idle"].every((h) => {
          const u = store.get("Host", h)?.status?.usage;
          return u && Date.parse(u.sampledAt) > since;
        }),
      "both hosts sampled after the load was set",
    );
    expect(store.get("Host", "loaded")?.status?.usage).toMatchObject({ cpuPercent: 75, memoryPercent: 50 });

    const text = await registry.metrics();
    expect(sample(text, "virtwarden_host_cpu_usage_ratio", "loaded")).toBeCloseTo(0.75, 4);
    expect(sample(text, "virtwarden_host_memory_usage_ratio", "loaded")).toBeCloseTo(0.5, 4);
    // The idle host: its daemons' 0.05 of a CPU, nothing resident.
    expect(sample(text, "virtwarden_host_cpu_usage_ratio", "idle")).toBeCloseTo(0.05 / 8, 4);
    expect(sample(text, "virtwarden_host_memory_usage_ratio", "idle")).toBe(0);

    const wide = rows(tableFor("Host", store.list("Host"), new Date(), true));
    const idle = store.get("Host", "idle")?.status?.usage;
    expect(wide.map((r) => [r.NAME, r["CPU%"], r["MEM%"]])).toEqual([
      ["idle", String(idle?.cpuPercent), "0"],
      ["loaded", "75", "50"],
    ]);
    expect(idle?.cpuPercent).toBeCloseTo((100 * 0.05) / 8, 1);
    // The narrow table keeps its columns.
    expect(tableFor("Host", store.list("Host"), new Date()).split("\n")[0]).not.toContain("CPU%");

    await store.delete("Host", "idle");
    await eventually(() => store.get("Host", "idle") === undefined, "the idle Host gone");
    const after = await registry.metrics();
    expect(sample(after, "virtwarden_host_cpu_usage_ratio", "idle")).toBeUndefined();
    expect(sample(after, "virtwarden_host_memory_usage_ratio", "idle")).toBeUndefined();
    expect(sample(after, "virtwarden_host_cpu_usage_ratio", "loaded")).toBeCloseTo(0.75, 4);
  }, 40_000);
});
