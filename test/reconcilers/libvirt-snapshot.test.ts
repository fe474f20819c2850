/**
 * Snapshots on the real test bed, proven by data: a pattern written to a VM's disk before the
 * snapshot and overwritten after it is back after the restore (read with qemu-io); a running
 * guest's memory snapshot resumes on another host; a group of 4 running VMs is snapshotted with
 * its pause window reported.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { VirtualMachineRestore, VirtualMachineSnapshot } from "../../src/api/types.js";
import { Runtime } from "../../src/cli/runtime.js";
import { createLogger } from "../../src/controller/log.js";
import { createLibvirtProviderFactory } from "../../src/providers/libvirt/index.js";
import { eventuallyWith } from "../support/eventually.js";
import { testbedHost, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";
import { startTestbed, type Testbed } from "../support/testbed/index.js";

let tb: Testbed;
let store: MemoryStore;
let rt: Runtime;

const eventually = eventuallyWith({ timeoutMs: 90_000, everyMs: 25 });

beforeAll(async () => {
  tb = await startTestbed({ hosts: 2, name: "sn" });
  store = new MemoryStore();
  for (const h of tb.hosts) {
    const r = testbedHost(h);
    r.spec.overcommit = { cpu: 16 };
    store.apply(r);
  }
  rt = new Runtime({
    store,
    providerFactory: createLibvirtProviderFactory(),
    registry: new Registry(),
    logger: createLogger({ level: process.env.VW_TEST_LOG ?? "silent" }),
    heartbeatIntervalMs: 500,
  });
  await rt.start();
}, 300_000);

afterAll(async () => {
  await rt?.stop(2000);
  await tb?.teardown();
}, 120_000);

const guest = (name: string, opts: { runStrategy?: "Manual"; group?: string; host?: string } = {}) =>
  vm(name)
    .spec({
      resources: { cpu: 1, memory: "64Mi" },
      disks: [{ name: "root", size: "64Mi", source: { image: { name: "base.qcow2" } } }],
      ...(opts.runStrategy ? { runStrategy: opts.runStrategy } : {}),
      ...(opts.group ? { group: opts.group } : {}),
      ...(opts.host ? { placement: { hostSelector: { "kubernetes.io/hostname": opts.host } } } : {}),
    })
    .build();

const snapshot = (
  name: string,
  target: { vmName?: string; group?: string },
  type: "disk" | "disk+memory",
): VirtualMachineSnapshot => ({
  apiVersion: "virtwarden.io/v1alpha1",
  kind: "VirtualMachineSnapshot",
  metadata: { name, namespace: "default" },
  spec: { ...target, type },
});

const restore = (name: string, snapshotName: string, targetHost?: string): VirtualMachineRestore => ({
  apiVersion: "virtwarden.io/v1alpha1",
  kind: "VirtualMachineRestore",
  metadata: { name, namespace: "default" },
  spec: { snapshotName, ...(targetHost ? { targetHost } : {}) },
});

const phaseOf = (kind: "VirtualMachineSnapshot" | "VirtualMachineRestore", name: string) =>
  store.get(kind, `default/${name}`)?.status?.phase;

async function finished(
  kind: "VirtualMachineSnapshot" | "VirtualMachineRestore",
  name: string,
): Promise<void> {
  await eventually(
    () => ["Succeeded", "Failed"].includes(phaseOf(kind, name) ?? ""),
    `${kind} ${name} finished`,
  );
  const st = store.get(kind, `default/${name}`)?.status;
  expect(st?.phase, JSON.stringify(st)).toBe("Succeeded");
}

/** qemu-io on a disk image that no QEMU holds; returns its output. */
const qemuIo = (image: string, command: string) =>
  execFileSync("qemu-io", ["-f", "qcow2", "-c", command, image], { encoding: "utf8" });

describe("snapshots on real libvirt hosts", () => {
  it("restores a disk's content: the pattern written before the snapshot is back", async () => {
    store.apply(guest("data", { runStrategy: "Manual" }));
    await eventually(
      () => store.get("VirtualMachine", "default/data")?.status?.phase === "Stopped",
      "defined",
    );
    const image = join(tb.poolPath, "default_data-root.qcow2");
    expect(qemuIo(image, "write -P 0xaa 0 1M")).toMatch(/wrote 1048576\/1048576 bytes/);
    store.apply(snapshot("before", { vmName: "data" }, "disk"));
    await finished("VirtualMachineSnapshot", "before");
    const snap = store.get("VirtualMachineSnapshot", "default/before")?.status;
    expect(snap?.members?.[0]).toMatchObject({ state: "shutoff", snapshotName: "before" });
    console.log(`disk snapshot of a stopped VM: ${snap?.sizeBytes} bytes added to its image`);

    qemuIo(image, "write -P 0xbb 0 1M");
    expect(qemuIo(image, "read -P 0xbb 0 1M")).toMatch(/read 1048576\/1048576 bytes/);
    store.apply(restore("back", "before"));
    await finished("VirtualMachineRestore", "back");
    // The restore put back 0xaa; runStrategy Manual and a stopped snapshot: it stays stopped.
    const read = qemuIo(image, "read -P 0xaa 0 1M");
    expect(read).toMatch(/read 1048576\/1048576 bytes/);
    expect(read).not.toMatch(/Pattern verification failed/);
    expect(store.get("VirtualMachineRestore", "default/back")?.status?.seconds).toBeGreaterThan(0);
    await eventually(
      () => store.get("VirtualMachine", "default/data")?.status?.phase === "Stopped",
      "stopped",
    );
  }, 180_000);

  it("resumes a running guest from its memory snapshot on another host", async () => {
    const a = tb.hosts[0]?.name as string;
    const b = tb.hosts[1]?.name as string;
    store.apply(guest("live"));
    await eventually(
      () => store.get("VirtualMachine", "default/live")?.status?.phase === "Running",
      "running",
    );
    const from = store.get("VirtualMachine", "default/live")?.status?.host as string;
    const to = from === a ? b : a;
    store.apply(snapshot("ckpt", { vmName: "live" }, "disk+memory"));
    await finished("VirtualMachineSnapshot", "ckpt");
    expect(store.get("VirtualMachineSnapshot", "default/ckpt")?.status?.members?.[0]?.state).toBe("running");

    store.apply(restore("move", "ckpt", to));
    await finished("VirtualMachineRestore", "move");
    console.log(
      `memory snapshot restored on the other host in ${store.get("VirtualMachineRestore", "default/move")?.status?.seconds?.toFixed(2)} s`,
    );
    await eventually(
      () =>
        store.get("VirtualMachine", "default/live")?.status?.host === to &&
        store.get("VirtualMachine", "default/live")?.status?.phase === "Running",
      "running on the other host",
    );
    // Resumed from the reverted memory (reason unpaused), not booted; and only there.
    const state = await rt.fleet.connection(to)?.provider.getDomainState("default_live");
    expect(state).toEqual({ state: "running", reason: "unpaused" });
    expect(await rt.fleet.connection(from)?.provider.getDomainState("default_live")).toBeUndefined();
    const fromHost = tb.hosts.find((h) => h.name === from);
    const toHost = tb.hosts.find((h) => h.name === to);
    const guestOn = (h: typeof fromHost) =>
      (h?.qemuPids() ?? []).filter((p) => {
        try {
          return execFileSync("cat", [`/proc/${p}/cmdline`], { encoding: "utf8" }).includes(
            "guest=default_live",
          );
        } catch {
          return false;
        }
      }).length;
    expect(guestOn(fromHost)).toBe(0);
    expect(guestOn(toHost)).toBe(1);
  }, 180_000);

  it("restores the latest healthy snapshot of a VM that crash-loops (kill -9 of its QEMU)", async () => {
    const v = guest("flaky");
    v.spec.availability = {
      onCrashLoop: "RestoreLatestSnapshot",
      crashLoopThreshold: 2,
      restartBackoff: { initialSeconds: 0, maxSeconds: 0 },
    };
    store.apply(v);
    const phase = () => store.get("VirtualMachine", "default/flaky")?.status?.phase;
    await eventually(() => phase() === "Running", "running");
    store.apply(snapshot("flaky-good", { vmName: "flaky" }, "disk"));
    await finished("VirtualMachineSnapshot", "flaky-good");
    const qemuOf = () => {
      const host = tb.hosts.find(
        (h) => h.name === store.get("VirtualMachine", "default/flaky")?.status?.host,
      );
      return (host?.qemuPids() ?? []).find((p) => {
        try {
          return execFileSync("cat", [`/proc/${p}/cmdline`], { encoding: "utf8" }).includes(
            "guest=default_flaky",
          );
        } catch {
          return false;
        }
      });
    };
    for (let i = 0; i < 2; i++) {
      // Each crash only once the previous restart finished (status Running is written then; a
      // QEMU killed while it starts is a failed start, not a crash).
      await eventually(
        () =>
          phase() === "Running" &&
          (store.get("VirtualMachine", "default/flaky")?.status?.restartCount ?? 0) === i &&
          qemuOf() !== undefined,
        `running before crash ${i + 1}`,
      );
      process.kill(qemuOf() as number, "SIGKILL");
      await eventually(() => qemuOf() === undefined, `crash ${i + 1} seen`);
    }
    await eventually(
      () =>
        store
          .list("VirtualMachineRestore")
          .some((r) => r.metadata.labels?.["virtwarden.io/crashloop-of"] === "flaky"),
      "a crash-loop restore",
    ).catch((e) => {
      throw new Error(
        `${e}; VM status: ${JSON.stringify(store.get("VirtualMachine", "default/flaky")?.status)}`,
      );
    });
    const r = store
      .list("VirtualMachineRestore")
      .find((x) => x.metadata.labels?.["virtwarden.io/crashloop-of"] === "flaky");
    expect(r?.spec.snapshotName).toBe("flaky-good");
    await finished("VirtualMachineRestore", r?.metadata.name as string);
    await eventually(
      () => phase() === "Running" && qemuOf() !== undefined,
      "running again from the snapshot",
    );
    expect(store.get("VirtualMachine", "default/flaky")?.status?.lastRecovery).toMatchObject({
      reason: "CrashLoopRestore",
      result: "Succeeded",
    });
  }, 180_000);

  it("snapshots a group of 4 running VMs with one pause window, and they run on", async () => {
    const names = ["shop-0", "shop-1", "shop-2", "shop-3"];
    for (const n of names) store.apply(guest(n, { group: "shop" }));
    const allRunning = () =>
      names.every((n) => store.get("VirtualMachine", `default/${n}`)?.status?.phase === "Running");
    await eventually(allRunning, "group running");
    store.apply(snapshot("shop-1", { group: "shop" }, "disk"));
    await finished("VirtualMachineSnapshot", "shop-1");
    const st = store.get("VirtualMachineSnapshot", "default/shop-1")?.status;
    expect(st?.members?.map((m) => m.vmName)).toEqual(names);
    expect(st?.members?.every((m) => m.state === "paused")).toBe(true);
    expect(st?.pauseWindowSeconds).toBeGreaterThan(0);
    console.log(`group of 4: paused together for ${st?.pauseWindowSeconds?.toFixed(2)} s`);
    for (const n of names) {
      const host = store.get("VirtualMachine", `default/${n}`)?.status?.host as string;
      expect(await rt.fleet.connection(host)?.provider.getDomainState(`default_${n}`)).toMatchObject({
        state: "running",
      });
    }
    // Deleting the snapshot removes it from every member's image.
    store.remove("VirtualMachineSnapshot", "default/shop-1");
    await eventually(() => !store.get("VirtualMachineSnapshot", "default/shop-1"), "deleted", 60_000);
    for (const n of names) {
      const host = store.get("VirtualMachine", `default/${n}`)?.status?.host as string;
      expect(await rt.fleet.connection(host)?.provider.listSnapshots(`default_${n}`)).toEqual([]);
    }
  }, 240_000);
});
