/**
 * In-use protection (issue 17 point 6): a VirtualNetwork deleted while a VM names it stays on its
 * hosts, with an InUse condition naming the users, until no VM uses it; then it goes. The
 * simulator's own host state is the oracle for "stays on its hosts".
 */
import { afterEach, describe, expect, it } from "vitest";
import type { VirtualNetwork } from "../../../src/api/types.js";
import { Simulator } from "../../../src/providers/sim/index.js";
import { libvirtNetworkName } from "../../../src/reconcilers/virtualmachine/render.js";
import { eventually } from "../../support/eventually.js";
import { hostResource, vm } from "../../support/fixtures.js";
import { MemoryStore } from "../../support/memory-store.js";
import { simRuntime } from "../../support/sim-runtime.js";

const GiB = 1024 ** 3;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const storage: VirtualNetwork = {
  apiVersion: "virtwarden.io/v1alpha1",
  kind: "VirtualNetwork",
  metadata: { name: "storage", namespace: "default" },
  spec: { mode: "nat", subnet: "10.30.0.0/24" },
};

describe("a VirtualNetwork in use", () => {
  it("waits for its VMs before it is deleted, says who holds it, and leaves the guests running", async () => {
    const sim = new Simulator({ seed: 3, latency: "none" });
    sim.addHost("h0", { cpus: 16, memoryBytes: 32 * GiB });
    const store = new MemoryStore();
    store.apply(hostResource("h0"));
    await simRuntime(sim, store, {
      cleanups,
    });
    store.apply(storage);
    for (const name of ["db", "web"])
      store.apply(
        vm(name)
          .spec({ networks: [{ network: "storage" }] })
          .build(),
      );
    const onHost = () =>
      sim.lookupHost("h0")?.networks.has(libvirtNetworkName("default", "storage")) === true;
    const running = (name: string) =>
      sim.lookupHost("h0")?.domains.get(`default_${name}`)?.state.state === "running";
    await eventually(() => onHost() && running("db") && running("web"), "network on h0 and both VMs running");

    store.remove("VirtualNetwork", "default/storage");
    await eventually(
      () =>
        store
          .get("VirtualNetwork", "default/storage")
          ?.status?.conditions?.some((c) => c.type === "InUse" && c.status === "True") === true,
      "InUse condition",
    );
    const held = store.get("VirtualNetwork", "default/storage");
    expect(held?.status?.conditions?.find((c) => c.type === "InUse")?.message).toBe(
      "deletion waits: used by VMs default/db, default/web",
    );
    // Held, not half-deleted: still on the host, the guests still running.
    await new Promise((r) => setTimeout(r, 500));
    expect(store.get("VirtualNetwork", "default/storage")).toBeDefined();
    expect(onHost()).toBe(true);
    expect(running("db") && running("web")).toBe(true);

    store.remove("VirtualMachine", "default/web");
    await eventually(
      () =>
        store.get("VirtualNetwork", "default/storage")?.status?.conditions?.find((c) => c.type === "InUse")
          ?.message === "deletion waits: used by VM default/db",
      "one user left",
    );
    expect(onHost()).toBe(true);

    store.remove("VirtualMachine", "default/db");
    await eventually(() => store.get("VirtualNetwork", "default/storage") === undefined, "network deleted");
    await eventually(() => !onHost(), "network removed from h0");
  }, 60_000);
});
