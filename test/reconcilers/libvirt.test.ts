/**
 * The unchanged Runtime and reconcilers on real libvirt hosts (two network-namespace hosts of
 * the test bed, QEMU guests): VMs from linked clones start, a domain destroyed behind our back
 * is corrected and reported as drift, and a guest killed with kill -9 is restarted.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Runtime } from "../../src/cli/runtime.js";
import { createLogger } from "../../src/controller/log.js";
import { createLibvirtProviderFactory } from "../../src/providers/libvirt/index.js";
import { eventuallyWith } from "../support/eventually.js";
import { testbedHost, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";
import { startTestbed, type Testbed } from "../support/testbed/index.js";

let tb: Testbed;
let rt: Runtime;
const store = new MemoryStore();

const eventually = eventuallyWith({ timeoutMs: 60_000, everyMs: 50 });

const guestPid = (hostIndex: number, domain: string) =>
  tb.hosts[hostIndex]
    ?.qemuPids()
    .find((p) =>
      readFileSync(`/proc/${p}/cmdline`, "utf8").replaceAll("\0", " ").includes(`guest=${domain},`),
    );

beforeAll(async () => {
  tb = await startTestbed({ hosts: 2, name: "rec" });
  for (const h of tb.hosts) {
    const r = testbedHost(h);
    // Twenty-odd idle test guests on this machine's two CPUs.
    r.spec.overcommit = { cpu: 16 };
    store.apply(r);
  }
  for (let i = 0; i < 3; i++) {
    store.apply(
      vm(`app-${i}`)
        .noFinalizer()
        .labels({ app: "demo" })
        .spec({
          resources: { cpu: 1, memory: "64Mi" },
          disks: [{ name: "root", size: "64Mi", source: { image: { name: "base.qcow2" } } }],
          placement: { antiAffinity: i < 2 ? [{ selector: { matchLabels: { app: "demo" } } }] : [] },
        })
        .build(),
    );
  }
  rt = new Runtime({
    store,
    providerFactory: createLibvirtProviderFactory(),
    registry: new Registry(),
    // VW_TEST_LOG=debug shows what the controllers did when a run goes wrong.
    logger: createLogger({ level: process.env.VW_TEST_LOG ?? "silent" }),
    heartbeatIntervalMs: 500,
  });
  await rt.start();
}, 180_000);

afterAll(async () => {
  await rt?.stop(2000);
  await tb?.teardown();
}, 60_000);

describe("reconcilers on real libvirt hosts", () => {
  it("starts every VM once, from linked clones, on the hosts the scheduler chose", async () => {
    await eventually(
      () => store.list("VirtualMachine").every((v) => v.status?.phase === "Running"),
      "all Running",
    );
    const hostsUsed = new Set(store.list("VirtualMachine").map((v) => v.status?.host));
    expect(hostsUsed.size).toBe(2);
    for (const v of store.list("VirtualMachine")) {
      const h = tb.hosts.findIndex((x) => x.name === v.status?.host);
      expect(guestPid(h, `default_${v.metadata.name}`)).toBeGreaterThan(0);
      // Of the domain type its Host asks for (spec.domainType: what works on this machine).
      const xml = execFileSync(
        "virsh",
        ["-c", tb.hosts[h]?.unixUri as string, "dumpxml", `default_${v.metadata.name}`],
        {
          encoding: "utf8",
        },
      );
      expect(xml).toMatch(new RegExp(`<domain type='${tb.hosts[h]?.domainType}'`));
    }
    // The disk is a linked clone of the base image (asked of libvirt with virsh, not our client).
    const volXml = execFileSync(
      "virsh",
      ["-c", tb.hosts[0]?.unixUri as string, "vol-dumpxml", "--pool", "default", "default_app-0-root.qcow2"],
      { encoding: "utf8" },
    );
    expect(volXml).toMatch(/<backingStore>\s*<path>[^<]*base\.qcow2<\/path>/);
  });

  it("corrects a domain destroyed behind its back and reports the drift", async () => {
    const v = store.get("VirtualMachine", "default/app-1");
    const hi = tb.hosts.findIndex((x) => x.name === v?.status?.host);
    const h = tb.hosts[hi];
    if (!h) throw new Error("no host");
    const pid = guestPid(hi, "default_app-1");
    if (!pid) throw new Error("no QEMU for app-1");
    // Behind its back, with libvirt's own tool; "running again" is a new QEMU process in /proc,
    // not what our libvirt client (the code under test) reports.
    const t0 = Date.now();
    execFileSync("virsh", ["-c", h.unixUri, "destroy", "default_app-1"], { encoding: "utf8" });
    await eventually(() => {
      const again = guestPid(hi, "default_app-1");
      return again !== undefined && again !== pid;
    }, "running again");
    console.log(`destroyed domain running again after ${Date.now() - t0} ms`);
    await eventually(
      () => store.get("VirtualMachine", "default/app-1")?.status?.lastDrift?.fields?.[0] === "state",
      "drift recorded",
    );
  });

  it("restarts a guest killed with kill -9", async () => {
    const v = store.get("VirtualMachine", "default/app-2");
    const hi = tb.hosts.findIndex((x) => x.name === v?.status?.host);
    const pid = guestPid(hi, "default_app-2");
    if (!pid) throw new Error("no QEMU for app-2");
    process.kill(pid, "SIGKILL");
    await eventually(
      () => (store.get("VirtualMachine", "default/app-2")?.status?.restartCount ?? 0) >= 1,
      "restart counted",
    );
    await eventually(() => {
      const p = guestPid(hi, "default_app-2");
      return p !== undefined && p !== pid;
    }, "a new QEMU");
    expect(store.get("VirtualMachine", "default/app-2")?.status?.lastRecovery).toMatchObject({
      reason: "Crash",
      result: "Succeeded",
    });
  });

  it("keeps a disk whose deletionPolicy is Retain, and a VM declared again boots from it", async () => {
    const keeper = () =>
      vm("keeper")
        .spec({
          resources: { cpu: 1, memory: "64Mi" },
          disks: [
            {
              name: "root",
              size: "64Mi",
              source: { image: { name: "base.qcow2" } },
              deletionPolicy: "Retain",
            },
          ],
        })
        .build();
    const phase = () => store.get("VirtualMachine", "default/keeper")?.status?.phase;
    const path = join(tb.poolPath, "default_keeper-root.qcow2");
    const snapshots = () => execFileSync("qemu-img", ["snapshot", "-U", "-l", path], { encoding: "utf8" });
    store.apply(keeper());
    await eventually(() => phase() === "Running", "keeper Running", 120_000);
    store.remove("VirtualMachine", "default/keeper");
    await eventually(() => !store.get("VirtualMachine", "default/keeper"), "keeper deleted", 60_000);
    try {
      for (let i = 0; i < tb.hosts.length; i++) expect(guestPid(i, "default_keeper")).toBeUndefined();
      // Still there, still the overlay on the base image; marked so its return can be told apart
      // from a fresh clone (an internal snapshot, written while no guest holds the file).
      expect(existsSync(path)).toBe(true);
      execFileSync("qemu-img", ["snapshot", "-c", "kept-mark", path]);
      store.apply(keeper());
      await eventually(() => phase() === "Running", "keeper Running again", 120_000);
      expect(snapshots()).toContain("kept-mark");
    } finally {
      // The test's own leftovers: the VM, then the volume it retained.
      store.remove("VirtualMachine", "default/keeper");
      await eventually(() => !store.get("VirtualMachine", "default/keeper"), "keeper deleted", 60_000);
      // The pool is shared: refresh it first (the volume may have been made through the other host).
      const uri = tb.hosts[0]?.unixUri as string;
      execFileSync("virsh", ["-c", uri, "pool-refresh", "default"], { stdio: "ignore" });
      if (existsSync(path))
        execFileSync("virsh", ["-c", uri, "vol-delete", "--pool", "default", "default_keeper-root.qcow2"]);
    }
    expect(existsSync(path)).toBe(false);
  }, 300_000);

  it("makes 20 VMs from one base image linked clones, and deletes only their overlays", async () => {
    const names = Array.from({ length: 20 }, (_, i) => `clone-${i}`);
    for (const n of names)
      store.apply(
        vm(n)
          .labels({ app: "clones" })
          .spec({
            resources: { cpu: 1, memory: "64Mi" },
            disks: [
              { name: "root", size: "64Mi", source: { image: { name: "base.qcow2", clone: "linked" } } },
            ],
          })
          .build(),
      );
    await eventually(
      () => names.every((n) => store.get("VirtualMachine", `default/${n}`)?.status?.phase === "Running"),
      "20 clones Running",
      180_000,
    );
    // What is on the shared pool's disk, read with qemu-img (not our libvirt client).
    const image = (file: string) =>
      JSON.parse(
        execFileSync("qemu-img", ["info", "-U", "--output=json", join(tb.poolPath, file)], {
          encoding: "utf8",
        }),
      ) as { "backing-filename"?: string; "actual-size": number };
    const base = image("base.qcow2");
    let total = 0;
    for (const n of names) {
      const vol = image(`default_${n}-root.qcow2`);
      // A qcow2 overlay on the base image, not a copy of its 8 MiB of data.
      expect(vol["backing-filename"]).toBe(join(tb.poolPath, "base.qcow2"));
      expect(vol["actual-size"]).toBeLessThan(base["actual-size"] / 10);
      total += vol["actual-size"];
    }
    console.log(
      `20 linked clones: ${Math.round(total / names.length)} bytes on disk per VM, base image ${base["actual-size"]} bytes`,
    );
    // Deleting the VMs deletes their overlays, never the base image they share.
    for (const n of names) store.remove("VirtualMachine", `default/${n}`);
    await eventually(
      () => names.every((n) => !store.get("VirtualMachine", `default/${n}`)),
      "20 clones deleted",
      120_000,
    );
    const left = readdirSync(tb.poolPath);
    expect(left.filter((v) => v.startsWith("default_clone-"))).toEqual([]);
    expect(left).toContain("base.qcow2");
  }, 300_000);
});
