/**
 * loadAware on two real libvirt hosts: a guest on host A spins (its kernel's init is a busy
 * loop), host B runs more allocated but idle; a loadAware VM must go to B, and a spread VM, which
 * sees allocation only, to A. The bed's hosts share one kernel, so each gets its own /proc/stat
 * (testbed ownCpuStats, cpu-view.ts): the CPU time of its own libvirtd and QEMUs, real CPU
 * burnt by the guests, read by libvirt through virNodeGetCPUStats like any host's.
 *
 * Oracles: where the domains run is asked of libvirt (virsh on each host), never of
 * virtwarden's status; the hosts' measured load is read from virsh nodecpustats too.
 * Guests run under TCG (they must run code: TESTBED.md).
 */
import { execFileSync } from "node:child_process";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VirtualMachine } from "../../src/api/types.js";
import { Runtime } from "../../src/cli/runtime.js";
import { createLogger } from "../../src/controller/log.js";
import { createLibvirtProviderFactory } from "../../src/providers/libvirt/index.js";
import { eventuallyWith } from "../support/eventually.js";
import { testbedHost, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";
import { testGuest } from "../support/testbed/guest.js";
import { startTestbed, type Testbed, type TestHost } from "../support/testbed/index.js";

let tb: Testbed;
let rt: Runtime;
let hostA: TestHost;
let hostB: TestHost;
const store = new MemoryStore();
const eventually = eventuallyWith({ timeoutMs: 120_000, everyMs: 200 });

const virsh = (h: TestHost, ...args: string[]) =>
  execFileSync("virsh", ["-q", "-c", h.unixUri, ...args], { encoding: "utf8" }).trim();
/** The bed hosts on which libvirt says the VM's domain is running. */
const runningOn = (name: string) =>
  [hostA, hostB].filter((h) =>
    virsh(h, "list", "--state-running", "--name").split("\n").includes(`default_${name}`),
  );

/** Busy share of the host's CPUs over `ms`, from libvirt's own node CPU statistics (virsh nodecpustats). */
async function busyShare(h: TestHost, ms: number): Promise<number> {
  const read = () => {
    const f = Object.fromEntries(
      virsh(h, "nodecpustats")
        .split("\n")
        .map((l) => l.split(":").map((x) => x.trim()))
        .map(([k, v]) => [k, Number(v)]),
    ) as Record<string, number>;
    return {
      busy: (f.user ?? 0) + (f.system ?? 0),
      all: (f.user ?? 0) + (f.system ?? 0) + (f.idle ?? 0) + (f.iowait ?? 0),
    };
  };
  const a = read();
  await new Promise((r) => setTimeout(r, ms));
  const b = read();
  return (b.busy - a.busy) / (b.all - a.all);
}

const guest = (
  name: string,
  cpu: number,
  memory: string,
  placement: Record<string, unknown>,
  cmdline?: string,
) =>
  vm(name)
    .noFinalizer()
    .spec({
      resources: { cpu, memory },
      placement,
      boot: { ...testGuest(), ...(cmdline ? { cmdline } : {}) },
    })
    .build() as VirtualMachine;

beforeAll(async () => {
  tb = await startTestbed({ hosts: 2, name: "load", ownCpuStats: true });
  [hostA, hostB] = tb.hosts as [TestHost, TestHost];
  for (const [h, role] of [
    [hostA, "a"],
    [hostB, "b"],
  ] as const) {
    const r = testbedHost(h, { role });
    r.spec.domainType = "qemu";
    store.apply(r);
  }
  rt = new Runtime({
    store,
    providerFactory: createLibvirtProviderFactory(),
    registry: new Registry(),
    logger: createLogger({ level: process.env.VW_TEST_LOG ?? "silent" }),
    heartbeatIntervalMs: 500,
    // Node statistics are sampled with the inventory: every second here, 30 s by default.
    inventoryIntervalMs: 1000,
  });
  await rt.start();
}, 180_000);

afterAll(async () => {
  await rt?.stop(2000);
  await tb?.teardown();
}, 60_000);

describe("loadAware placement, real libvirt", () => {
  it("a VM goes to the host with more allocated but idle guests, not to the one whose guest spins", async () => {
    const t0 = Date.now();
    // A: one 1-vCPU guest whose init spins forever. B: one 2-vCPU guest with twice the memory
    // that boots and idles (the test guest's ticking init).
    store.apply(
      guest(
        "spinner",
        1,
        "128Mi",
        { hostSelector: { role: "a" } },
        'console=ttyS0 quiet panic=-1 rdinit=/bin/busybox -- sh -c "while :; do :; done"',
      ),
    );
    store.apply(guest("idler", 2, "256Mi", { hostSelector: { role: "b" } }));
    await eventually(
      () => runningOn("spinner")[0] === hostA && runningOn("idler")[0] === hostB,
      "spinner running on A, idler on B (virsh)",
    );
    // B has more allocated than A, on CPU and memory alike.
    await eventually(
      () => store.get("Host", hostB.name)?.status?.allocated?.cpu === 2,
      "B's allocation counted",
    );
    expect(store.get("Host", hostA.name)?.status?.allocated?.cpu).toBe(1);
    // libvirt itself says A is the busier: the spinner burns what CPU it gets (a whole one on an
    // idle machine; the bed's machine is shared, so the margin asked is only 10 points of the
    // machine's CPUs) in A's QEMU, while B's guest, once booted, idles.
    let shares = { a: 0, b: 0 };
    await eventually(
      async () => {
        const [a, b] = await Promise.all([busyShare(hostA, 1500), busyShare(hostB, 1500)]);
        shares = { a, b };
        // B under a fifth of a CPU: its guest has booted (a TCG boot burns a CPU for seconds).
        return b < 0.1 && a > b + 0.1;
      },
      "A busier than B by libvirt's node statistics",
      { detail: () => JSON.stringify(shares) },
    );
    // virtwarden measured it too, from samples taken since.
    const settled = new Date().toISOString();
    await eventually(
      () => {
        const a = store.get("Host", hostA.name)?.status?.usage;
        const b = store.get("Host", hostB.name)?.status?.usage;
        return (
          !!a && !!b && a.sampledAt > settled && b.sampledAt > settled && a.cpuPercent > b.cpuPercent + 10
        );
      },
      "status.usage: A busier than B",
      {
        detail: () => JSON.stringify([hostA, hostB].map((h) => store.get("Host", h.name)?.status?.usage)),
      },
    );

    store.apply(guest("by-load", 1, "128Mi", { strategy: "loadAware" }));
    await eventually(() => runningOn("by-load").length > 0, "by-load running (virsh)");
    expect(runningOn("by-load")).toEqual([hostB]);

    // The same request by allocation goes to A: the measurement, not allocation, chose B.
    store.apply(guest("by-allocation", 1, "128Mi", { strategy: "spread" }));
    await eventually(() => runningOn("by-allocation").length > 0, "by-allocation running (virsh)");
    expect(runningOn("by-allocation")).toEqual([hostA]);
    console.log(
      `loadAware real-bed scenario: ${Date.now() - t0} ms (libvirt: A ${Math.round(shares.a * 100)} % busy, B ${Math.round(shares.b * 100)} %)`,
    );
  }, 300_000);
});
