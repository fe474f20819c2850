/**
 * Spec changes on a running VM, on a real libvirt host with a real guest (TCG; the test guest
 * loads virtio_balloon): a memory/vCPU change within the maxima is made on the running domain
 * (no restart), one beyond waits with RestartRequired (no restart), and the restart annotation
 * restarts it once, applying it.
 *
 * The oracles are libvirt and the kernel, never our client: `virsh domid`, `virsh dumpxml` (the
 * live XML's <currentMemory>, which libvirt updates from QEMU's balloon-change events, i.e. once
 * the guest has actually given or taken the memory), `virsh vcpucount --live`, and the QEMU
 * process in /proc. "Not restarted" means the same domain ID and the same QEMU pid.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VirtualMachine, VirtualNetwork } from "../../src/api/types.js";
import { Runtime } from "../../src/cli/runtime.js";
import { createLogger } from "../../src/controller/log.js";
import { createLibvirtProviderFactory } from "../../src/providers/libvirt/index.js";
import { eventuallyWith } from "../support/eventually.js";
import { testbedHost, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";
import { testGuest } from "../support/testbed/guest.js";
import { startTestbed, type Testbed } from "../support/testbed/index.js";

let tb: Testbed;
let rt: Runtime;
const store = new MemoryStore();
const DOMAIN = "default_resizable";
const KEY = "default/resizable";

const eventually = eventuallyWith({ timeoutMs: 90_000, everyMs: 100 });

const virsh = (...args: string[]) =>
  execFileSync("virsh", ["-c", tb.hosts[0]?.unixUri as string, ...args], { encoding: "utf8" }).trim();
const domid = () => virsh("domid", DOMAIN);
/** KiB of <tag> in the live XML, as libvirt reports it. */
const liveKiB = (tag: "memory" | "currentMemory") => {
  const m = new RegExp(`<${tag} unit='KiB'>(\\d+)</${tag}>`).exec(virsh("dumpxml", DOMAIN));
  return m ? Number(m[1]) : undefined;
};
const liveVcpus = () => Number(virsh("vcpucount", DOMAIN, "--live", "--current"));
const qemuPid = () =>
  tb.hosts[0]
    ?.qemuPids()
    .find((p) =>
      readFileSync(`/proc/${p}/cmdline`, "utf8").replaceAll("\0", " ").includes(`guest=${DOMAIN},`),
    );
const current = () => store.get("VirtualMachine", KEY) as VirtualMachine;
const restartRequired = () => current()?.status?.conditions?.find((c) => c.type === "RestartRequired");

const resizable = (resources: NonNullable<VirtualMachine["spec"]["resources"]>) =>
  vm("resizable").noFinalizer().spec({ resources, boot: testGuest() }).build();

/** A user's patch: the stored object with new resources (annotations kept). */
function patch(resources: NonNullable<VirtualMachine["spec"]["resources"]>): void {
  const v = current();
  store.apply({
    ...resizable(resources),
    metadata: { ...resizable(resources).metadata, ...pickAnnotations(v) },
  });
}
const pickAnnotations = (v: VirtualMachine) =>
  v.metadata.annotations ? { annotations: v.metadata.annotations } : {};

const octet = (process.pid % 200) + 20;
/** An isolated network for a NIC plugged in later (no DHCP: only libvirt's side is checked). */
const side: VirtualNetwork = {
  apiVersion: "virtwarden.io/v1alpha1",
  kind: "VirtualNetwork",
  metadata: { name: "side", namespace: "default" },
  spec: { mode: "isolated", subnet: `10.${octet}.9.0/24` },
};
/** The MACs of the running domain's NICs (virsh domiflist: the live definition). */
const liveMacs = () =>
  virsh("domiflist", DOMAIN)
    .split("\n")
    .slice(2)
    .map((l) => l.trim().split(/\s+/)[4])
    .filter((m): m is string => !!m);
const configMacs = () =>
  [...virsh("dumpxml", "--inactive", DOMAIN).matchAll(/<mac address='([^']+)'/g)].map((m) => m[1]);

beforeAll(async () => {
  tb = await startTestbed({ hosts: 1, name: "live" });
  const h = testbedHost(tb.hosts[0] as Testbed["hosts"][number]);
  // The guest must run code (its balloon driver does the memory change): TCG (TESTBED.md).
  h.spec.domainType = "qemu";
  store.apply(h);
  store.apply(side);
  store.apply(resizable({ cpu: 1, maxCpu: 2, memory: "128Mi", maxMemory: "192Mi" }));
  rt = new Runtime({
    store,
    providerFactory: createLibvirtProviderFactory(),
    registry: new Registry(),
    logger: createLogger({ level: process.env.VW_TEST_LOG ?? "silent" }),
    heartbeatIntervalMs: 500,
  });
  await rt.start();
}, 180_000);

afterAll(async () => {
  await rt?.stop(2000);
  await tb?.teardown();
}, 60_000);

describe("spec changes on a running VM, real libvirt", () => {
  let id: string;
  let pid: number | undefined;

  it("boots with its maxima defined: 192 MiB of which the balloon leaves 128 MiB, 1 of 2 vCPUs", async () => {
    await eventually(() => current()?.status?.phase === "Running" && qemuPid() !== undefined, "running");
    expect(liveKiB("memory")).toBe(192 * 1024);
    // The guest's balloon driver inflates to the target: libvirt's live figure follows it.
    await eventually(() => liveKiB("currentMemory") === 128 * 1024, "balloon at 128 MiB");
    expect(liveVcpus()).toBe(1);
    expect(virsh("vcpucount", DOMAIN, "--live", "--maximum")).toBe("2");
    id = domid();
    pid = qemuPid();
  }, 120_000);

  it("memory and a vCPU added within the maxima: changed on the running domain, not restarted", async () => {
    patch({ cpu: 2, maxCpu: 2, memory: "160Mi", maxMemory: "192Mi" });
    await eventually(() => liveKiB("currentMemory") === 160 * 1024, "live memory 160 MiB");
    await eventually(() => liveVcpus() === 2, "2 vCPUs online");
    await eventually(() => current()?.status?.observedGeneration === 2, "generation 2 observed");
    expect(domid()).toBe(id);
    expect(qemuPid()).toBe(pid);
    // The persistent definition took it too: the next boot keeps it.
    const inactive = virsh("dumpxml", "--inactive", DOMAIN);
    expect(inactive).toContain("<currentMemory unit='KiB'>163840</currentMemory>");
    expect(restartRequired()).toBeUndefined();
    expect(
      store
        .listEvents({ kind: "VirtualMachine", namespace: "default", name: "resizable" })
        .map((e) => e.reason),
    ).not.toContain("Restarted");
  }, 120_000);

  it("memory beyond maxMemory: RestartRequired, and the domain is not restarted", async () => {
    patch({ cpu: 2, maxCpu: 2, memory: "256Mi", maxMemory: "256Mi" });
    await eventually(() => restartRequired()?.status === "True", "RestartRequired");
    expect(restartRequired()?.message).toMatch(/spec\.resources\.memory.*spec\.resources\.maxMemory/);
    // Reconciled (generation 3 observed) and still the same guest, with its old size.
    await eventually(() => current()?.status?.observedGeneration === 3, "generation 3 observed");
    expect(domid()).toBe(id);
    expect(qemuPid()).toBe(pid);
    expect(liveKiB("memory")).toBe(192 * 1024);
    expect(current()?.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("True");
  }, 120_000);

  it("the restart annotation restarts it once, with the new size; RestartRequired clears", async () => {
    const v = current();
    store.apply({
      ...v,
      metadata: { ...v.metadata, annotations: { "virtwarden.io/restartedAt": new Date().toISOString() } },
    });
    await eventually(() => qemuPid() !== undefined && qemuPid() !== pid, "a new QEMU");
    await eventually(() => restartRequired() === undefined, "RestartRequired cleared");
    expect(domid()).not.toBe(id);
    expect(liveKiB("memory")).toBe(256 * 1024);
    expect(current()?.status?.restartedAt).toBeDefined();
    const after = { id: domid(), pid: qemuPid() };
    // Honoured once: a later reconcile (a live change, with the annotation still set) does not
    // restart it again, and live changes work on the new domain.
    patch({ cpu: 2, maxCpu: 2, memory: "200Mi", maxMemory: "256Mi" });
    await eventually(() => liveKiB("currentMemory") === 200 * 1024, "live memory 200 MiB");
    await eventually(() => current()?.status?.observedGeneration === 4, "generation 4 observed");
    expect({ id: domid(), pid: qemuPid() }).toEqual(after);
    const restarts = store
      .listEvents({ kind: "VirtualMachine", namespace: "default", name: "resizable" })
      .filter((e) => e.reason === "Restarted");
    expect(restarts.map((e) => e.count)).toEqual([1]);
  }, 180_000);

  it("a NIC added is plugged into the running guest, and unplugged when removed: same QEMU", async () => {
    const before = { id: domid(), pid: qemuPid() };
    const withNic = () => {
      const v = current();
      return { ...v, spec: { ...v.spec, networks: [{ network: "side", mac: "52:54:00:5e:00:01" }] } };
    };
    await eventually(
      async () =>
        !!(await rt.fleet.connection(tb.hosts[0]?.name as string)?.provider.getNetwork("default_side"))
          ?.active,
      "network side active",
    );
    store.apply(withNic());
    await eventually(() => liveMacs().includes("52:54:00:5e:00:01"), "NIC in the running domain");
    await eventually(() => configMacs().includes("52:54:00:5e:00:01"), "NIC in the persistent definition");
    expect({ id: domid(), pid: qemuPid() }).toEqual(before);
    expect(restartRequired()).toBeUndefined();
    const v = current();
    store.apply({ ...v, spec: { ...v.spec, networks: [] } });
    await eventually(
      () => !configMacs().includes("52:54:00:5e:00:01"),
      "NIC gone from the persistent definition",
    );
    // The guest releases it (ACPI hot-unplug), then libvirt drops it from the live definition.
    await eventually(() => !liveMacs().includes("52:54:00:5e:00:01"), "NIC gone from the running domain");
    expect({ id: domid(), pid: qemuPid() }).toEqual(before);
  }, 180_000);

  it("a disk added is provisioned and plugged into the running guest, and unplugged when removed", async () => {
    const before = { id: domid(), pid: qemuPid() };
    const liveDisks = () =>
      virsh("domblklist", DOMAIN)
        .split("\n")
        .slice(2)
        .map((l) => l.trim().split(/\s+/)[0])
        .filter((t): t is string => !!t);
    const v = current();
    store.apply({ ...v, spec: { ...v.spec, disks: [{ name: "data", size: "16Mi" }] } });
    await eventually(() => liveDisks().includes("vda"), "disk vda in the running domain");
    expect(virsh("dumpxml", "--inactive", DOMAIN)).toContain("default_resizable-data.qcow2");
    expect(virsh("vol-list", "default")).toContain("default_resizable-data.qcow2");
    expect({ id: domid(), pid: qemuPid() }).toEqual(before);
    const w = current();
    store.apply({ ...w, spec: { ...w.spec, disks: [] } });
    await eventually(
      () => !virsh("dumpxml", "--inactive", DOMAIN).includes("default_resizable-data"),
      "disk gone from the persistent definition",
    );
    await eventually(() => !liveDisks().includes("vda"), "disk gone from the running domain");
    expect({ id: domid(), pid: qemuPid() }).toEqual(before);
    expect(restartRequired()).toBeUndefined();
  }, 180_000);
});
