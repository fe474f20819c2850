/**
 * The HypervisorProvider contract: one suite, run against the simulator
 * (test/providers/sim/contract.test.ts) and real libvirt hosts
 * (test/providers/libvirt/contract.test.ts), so the simulator stays faithful to what the
 * reconcilers meet in production. Waits are event- or poll-driven with generous bounds.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type DomainEvent,
  type DomainSpec,
  type HypervisorProvider,
  isProviderError,
} from "../../src/providers/types.js";
import { eventuallyWith } from "../support/eventually.js";

export interface ContractFixture {
  /** Two connected-to-be providers on two hosts sharing storage. */
  a: HypervisorProvider;
  b: HypervisorProvider;
  /** How host a reaches host b for a peer-to-peer migration. */
  bUriFromA: string;
  pool: string;
  /** A base image in `pool`, with some data in it. */
  baseVolume: string;
  /** A directory on shared storage for checkpoint files. */
  checkpointDir: string;
  /** Kill the guest the way a crash does (sim: inject; libvirt: kill -9 its QEMU). */
  crashDomain(host: "a" | "b", name: string): Promise<void>;
  migrationUnsafe: boolean;
  teardown(): Promise<void>;
}

const MiB = 1024 ** 2;

const eventually = eventuallyWith({ timeoutMs: 20_000, everyMs: 25 });

export function providerContract(name: string, setup: () => Promise<ContractFixture>): void {
  describe(`HypervisorProvider contract: ${name}`, () => {
    let f: ContractFixture;
    const events: DomainEvent[] = [];
    let n = 0;
    const uniq = (p: string) => `${p}-${process.pid}-${n++}`;

    const spec = (domain: string, volume: string): DomainSpec => ({
      name: domain,
      vcpus: 1,
      memoryBytes: 64 * MiB,
      disks: [{ target: "vda", bus: "virtio", pool: f.pool, volume, format: "qcow2" }],
      interfaces: [],
      ownership: {
        uid: `uid-${domain}`,
        kind: "VirtualMachine",
        namespace: "contract",
        name: domain,
        generation: 3,
        specHash: "abc123",
      },
    });

    async function overlay(name: string): Promise<string> {
      const vol = `${name}.qcow2`;
      await f.a.createVolume(f.pool, {
        name: vol,
        capacityBytes: 64 * MiB,
        format: "qcow2",
        backing: { pool: f.pool, volume: f.baseVolume },
      });
      return vol;
    }

    beforeAll(async () => {
      f = await setup();
      await f.a.connect();
      await f.b.connect();
      f.a.onDomainEvent((e) => events.push(e));
      f.b.onDomainEvent((e) => events.push(e));
    }, 120_000);

    afterAll(async () => {
      await f?.a.close();
      await f?.b.close();
      await f?.teardown();
    }, 120_000);

    it("reports host info and health", async () => {
      const info = await f.a.hostInfo();
      expect(info.cpus).toBeGreaterThan(0);
      expect(info.memoryBytes).toBeGreaterThan(0);
      expect(info.hostname.length).toBeGreaterThan(0);
      expect(f.a.health().connected).toBe(true);
      await f.a.ping();
    });

    it("defines, starts, reads back, stops and undefines a domain, with lifecycle events", async () => {
      const name = uniq("life");
      const vol = await overlay(name);
      const s = spec(name, vol);
      await f.a.defineDomain(s);
      expect(await f.a.getDomainState(name)).toMatchObject({ state: "shutoff" });
      const back = await f.a.getDomainSpec(name);
      expect(back).toMatchObject({ name, vcpus: 1, memoryBytes: 64 * MiB, ownership: s.ownership });
      expect(back?.disks).toEqual(s.disks);
      expect(back?.interfaces).toEqual([]);
      await f.a.startDomain(name);
      expect(await f.a.getDomainState(name)).toEqual({ state: "running", reason: "booted" });
      await eventually(() => events.find((e) => e.domain === name && e.type === "started"), "started event");
      const listed = (await f.a.listDomains()).find((d) => d.name === name);
      expect(listed).toMatchObject({ state: { state: "running" }, ownership: s.ownership, persistent: true });
      await f.a.destroyDomain(name);
      expect(await f.a.getDomainState(name)).toEqual({ state: "shutoff", reason: "destroyed" });
      await eventually(
        () => events.find((e) => e.domain === name && e.type === "stopped" && e.detail === "destroyed"),
        "stopped/destroyed event",
      );
      await f.a.undefineDomain(name);
      expect(await f.a.getDomainState(name)).toBeUndefined();
      expect(await f.a.getDomainSpec(name)).toBeUndefined();
      await f.a.deleteVolume(f.pool, vol);
    });

    it("resizes a running domain live within its maxima (live and persistent), refuses beyond them", async () => {
      const name = uniq("resize");
      const vol = await overlay(name);
      const s: DomainSpec = { ...spec(name, vol), vcpus: 1, maxVcpus: 3, maxMemoryBytes: 128 * MiB };
      await f.a.defineDomain(s);
      expect(await f.a.getDomainSpec(name)).toMatchObject({
        vcpus: 1,
        maxVcpus: 3,
        memoryBytes: 64 * MiB,
        maxMemoryBytes: 128 * MiB,
      });
      // Not running: nothing to change live.
      await expect(f.a.resizeDomain(name, { vcpus: 2 })).rejects.toSatisfy((e: unknown) =>
        isProviderError(e, "InvalidState"),
      );
      await f.a.startDomain(name);
      await f.a.resizeDomain(name, { vcpus: 2, memoryBytes: 96 * MiB });
      // The persistent definition took it too (the next boot keeps it), maxima unchanged.
      expect(await f.a.getDomainSpec(name)).toMatchObject({
        vcpus: 2,
        maxVcpus: 3,
        memoryBytes: 96 * MiB,
        maxMemoryBytes: 128 * MiB,
      });
      expect(await f.a.getDomainState(name)).toMatchObject({ state: "running" });
      // Beyond a maximum: refused, nothing changed.
      await expect(f.a.resizeDomain(name, { vcpus: 4 })).rejects.toSatisfy((e: unknown) =>
        isProviderError(e),
      );
      await expect(f.a.resizeDomain(name, { memoryBytes: 256 * MiB })).rejects.toSatisfy((e: unknown) =>
        isProviderError(e),
      );
      expect(await f.a.getDomainSpec(name)).toMatchObject({ vcpus: 2, memoryBytes: 96 * MiB });
      await f.a.destroyDomain(name);
      await f.a.undefineDomain(name);
      // No balloon (no maxMemory): memory cannot change live.
      await f.a.defineDomain(spec(name, vol));
      await f.a.startDomain(name);
      await expect(f.a.resizeDomain(name, { memoryBytes: 32 * MiB })).rejects.toSatisfy((e: unknown) =>
        isProviderError(e, "InvalidState"),
      );
      await f.a.destroyDomain(name);
      await f.a.undefineDomain(name);
      await f.a.deleteVolume(f.pool, vol);
    });

    it("plugs a NIC into a running domain and unplugs it (live and persistent)", async () => {
      const net = `vwn${process.pid % 10000}${n++}`;
      await f.a.ensureNetwork({
        name: net,
        mode: "isolated",
        bridge: `vwn${process.pid % 1000}b${n}`,
        address: "192.168.252.1/24",
      });
      const name = uniq("nic");
      const vol = await overlay(name);
      const nic = { network: net, mac: "52:54:00:ab:cd:01", model: "virtio" as const };
      await f.a.defineDomain(spec(name, vol));
      await expect(f.a.attachInterface(name, nic)).rejects.toSatisfy((e: unknown) =>
        isProviderError(e, "InvalidState"),
      );
      await f.a.startDomain(name);
      await f.a.attachInterface(name, nic);
      expect((await f.a.getDomainSpec(name))?.interfaces).toEqual([nic]);
      // A network the host does not have: refused.
      await expect(
        f.a.attachInterface(name, { ...nic, network: `${net}-none`, mac: "52:54:00:ab:cd:02" }),
      ).rejects.toSatisfy((e: unknown) => isProviderError(e));
      await f.a.detachInterface(name, nic);
      expect((await f.a.getDomainSpec(name))?.interfaces).toEqual([]);
      expect(await f.a.getDomainState(name)).toMatchObject({ state: "running" });
      await f.a.destroyDomain(name);
      await f.a.undefineDomain(name);
      await f.a.deleteVolume(f.pool, vol);
      await f.a.removeNetwork(net);
    }, 60_000);

    it("plugs a virtio disk into a running domain and unplugs it (live and persistent), volume kept", async () => {
      const name = uniq("disk");
      const vol = await overlay(name);
      const extra = `${name}-data.qcow2`;
      await f.a.createVolume(f.pool, { name: extra, capacityBytes: 16 * MiB, format: "qcow2" });
      const data = {
        target: "vdb",
        bus: "virtio" as const,
        pool: f.pool,
        volume: extra,
        format: "qcow2" as const,
      };
      await f.a.defineDomain(spec(name, vol));
      await f.a.startDomain(name);
      // No volume: refused.
      await expect(
        f.a.attachDisk(name, { ...data, target: "vdc", volume: `${name}-none.qcow2` }),
      ).rejects.toSatisfy((e: unknown) => isProviderError(e));
      await f.a.attachDisk(name, data);
      expect((await f.a.getDomainSpec(name))?.disks.map((d) => d.target)).toEqual(["vda", "vdb"]);
      await f.a.detachDisk(name, data);
      expect((await f.a.getDomainSpec(name))?.disks.map((d) => d.target)).toEqual(["vda"]);
      expect(await f.a.getVolume(f.pool, extra)).toBeDefined();
      await f.a.destroyDomain(name);
      await f.a.undefineDomain(name);
      await f.a.deleteVolume(f.pool, extra);
      await f.a.deleteVolume(f.pool, vol);
    }, 60_000);

    it("says NotFound / InvalidState in its own words", async () => {
      await expect(f.a.startDomain(uniq("missing"))).rejects.toSatisfy((e: unknown) =>
        isProviderError(e, "NotFound"),
      );
      const name = uniq("inv");
      const vol = await overlay(name);
      await f.a.defineDomain(spec(name, vol));
      await expect(f.a.destroyDomain(name)).rejects.toSatisfy((e: unknown) =>
        isProviderError(e, "InvalidState"),
      );
      await f.a.undefineDomain(name);
      await f.a.deleteVolume(f.pool, vol);
    });

    it("reports a killed guest as shut off (crashed) through a stopped event", async () => {
      const name = uniq("crash");
      const vol = await overlay(name);
      await f.a.defineDomain(spec(name, vol));
      await f.a.startDomain(name);
      const t0 = Date.now();
      await f.crashDomain("a", name);
      const e = await eventually(
        () =>
          events.find(
            (x) =>
              x.domain === name && x.type === "stopped" && (x.detail === "failed" || x.detail === "crashed"),
          ),
        `crash event (got: ${JSON.stringify(events.filter((x) => x.domain === name).map((x) => `${x.type}/${x.detail}`))})`,
      );
      console.log(`${name}: crash event after ${e.at.getTime() - t0} ms`);
      expect(await f.a.getDomainState(name)).toEqual({ state: "shutoff", reason: "crashed" });
      await f.a.undefineDomain(name);
      await f.a.deleteVolume(f.pool, vol);
    });

    it("makes linked clones much smaller than full copies, and refuses to delete a base in use", async () => {
      const linked = await f.a.createVolume(f.pool, {
        name: `${uniq("lc")}.qcow2`,
        capacityBytes: 64 * MiB,
        format: "qcow2",
        backing: { pool: f.pool, volume: f.baseVolume },
      });
      const full = await f.a.createVolume(f.pool, {
        name: `${uniq("fc")}.qcow2`,
        capacityBytes: 64 * MiB,
        format: "qcow2",
        copyFrom: { pool: f.pool, volume: f.baseVolume },
      });
      expect(linked.backingPath).toContain(f.baseVolume);
      expect(full.backingPath).toBeUndefined();
      expect(linked.allocationBytes * 4).toBeLessThan(full.allocationBytes);
      await expect(f.a.deleteVolume(f.pool, f.baseVolume)).rejects.toSatisfy((e: unknown) =>
        isProviderError(e, "InvalidState"),
      );
      await f.a.deleteVolume(f.pool, linked.name);
      await f.a.deleteVolume(f.pool, full.name);
      expect(await f.a.getVolume(f.pool, linked.name)).toBeUndefined();
    });

    it("takes, lists, reverts and deletes a snapshot", async () => {
      const name = uniq("snap");
      const vol = await overlay(name);
      await f.a.defineDomain(spec(name, vol));
      const snap = await f.a.createSnapshot(name, { name: "s1", memory: false, description: "before" });
      expect(snap).toMatchObject({ name: "s1", domain: name, current: true });
      await f.a.defineDomain({ ...spec(name, vol), vcpus: 2 });
      expect((await f.a.getDomainSpec(name))?.vcpus).toBe(2);
      await f.a.revertSnapshot(name, "s1");
      expect((await f.a.getDomainSpec(name))?.vcpus).toBe(1);
      expect((await f.a.listSnapshots(name)).map((s) => s.name)).toEqual(["s1"]);
      await f.a.deleteSnapshot(name, "s1");
      expect(await f.a.listSnapshots(name)).toEqual([]);
      await f.a.undefineDomain(name);
      await f.a.deleteVolume(f.pool, vol);
    });

    it("reverts a running domain's snapshot on another host, running or paused", async () => {
      const name = uniq("xsnap");
      const vol = await overlay(name);
      await f.a.defineDomain(spec(name, vol));
      await f.a.startDomain(name);
      const snap = await f.a.createSnapshot(name, { name: "s1", memory: true });
      expect(snap).toMatchObject({ state: "running", memory: true });
      // Host a goes away with its metadata; the data is in the disk image on shared storage.
      await f.a.destroyDomain(name);
      await f.a.undefineDomain(name);
      await f.b.defineDomain(spec(name, vol));
      await f.b.importSnapshot(name, snap);
      expect((await f.b.listSnapshots(name)).map((s) => s.name)).toEqual(["s1"]);
      await f.b.revertSnapshot(name, "s1", { paused: true });
      expect((await f.b.getDomainState(name))?.state).toBe("paused");
      await f.b.destroyDomain(name);
      await f.b.revertSnapshot(name, "s1");
      expect(await f.b.getDomainState(name)).toEqual({ state: "running", reason: "from-snapshot" });
      await f.b.destroyDomain(name);
      await f.b.deleteSnapshot(name, "s1");
      await f.b.undefineDomain(name);
      await f.a.deleteVolume(f.pool, vol);
    }, 60_000);

    it("reports the host's measured CPU time counters and memory (node statistics)", async () => {
      const info = await f.a.hostInfo();
      const first = await f.a.nodeStats();
      const busy = (c: typeof first.cpu) => c.userNs + c.kernelNs;
      const all = (c: typeof first.cpu) => busy(c) + c.idleNs + c.iowaitNs;
      expect(first.cpu.idleNs).toBeGreaterThan(0);
      expect(busy(first.cpu)).toBeGreaterThan(0);
      // libvirt's node info and node memory statistics read the same total.
      expect(first.memory.totalBytes).toBe(info.memoryBytes);
      expect(first.memory.freeBytes).toBeGreaterThan(0);
      expect(first.memory.freeBytes).toBeLessThanOrEqual(first.memory.totalBytes);
      // Counters since boot: they only grow, by about the wall time times the CPUs between readings.
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, 300));
      const second = await f.a.nodeStats();
      const wallNs = (performance.now() - t0) * 1e6;
      expect(second.cpu.idleNs).toBeGreaterThanOrEqual(first.cpu.idleNs);
      expect(busy(second.cpu)).toBeGreaterThanOrEqual(busy(first.cpu));
      const grew = all(second.cpu) - all(first.cpu);
      expect(grew).toBeGreaterThan(0);
      expect(grew).toBeLessThan(wallNs * info.cpus * 1.5 + 50e6 * info.cpus);
    });

    it("reports a running domain's CPU, memory, block and network counters", async () => {
      const name = uniq("stats");
      const vol = await overlay(name);
      await f.a.defineDomain(spec(name, vol));
      await f.a.startDomain(name);
      // A starting guest reads its boot disk (the firmware reads sector 0 at least): wait for
      // that read to show in the counters rather than accept a zero.
      const statsOf = async () => (await f.a.domainStats()).find((s) => s.name === name);
      const stats = await eventually(
        async () => {
          const s = await statsOf();
          return (s?.block.readBytes ?? 0) > 0 && s;
        },
        "the boot disk's first read in the counters",
        { timeoutMs: 40_000, everyMs: 100 },
      ).catch(async () => statsOf()); // the expectations below then say which counter is wrong
      expect(stats?.cpuTimeNs).toBeGreaterThan(0);
      expect(stats?.memoryBytes).toBe(64 * MiB);
      expect(stats?.block.readBytes).toBeGreaterThan(0);
      // Counters only grow while the guest runs.
      const later = await statsOf();
      expect(later?.block.readBytes).toBeGreaterThanOrEqual(stats?.block.readBytes ?? 0);
      expect(later?.cpuTimeNs).toBeGreaterThanOrEqual(stats?.cpuTimeNs ?? 0);
      expect(stats?.net).toEqual({ rxBytes: expect.any(Number), txBytes: expect.any(Number) });
      await f.a.destroyDomain(name);
      expect((await f.a.domainStats()).some((s) => s.name === name)).toBe(false);
      await f.a.undefineDomain(name);
      await f.a.deleteVolume(f.pool, vol);
    });

    it("managed-saves a running domain and resumes it at the next start", async () => {
      const name = uniq("msave");
      const vol = await overlay(name);
      await f.a.defineDomain(spec(name, vol));
      await f.a.startDomain(name);
      await f.a.managedSave(name);
      expect(await f.a.getDomainState(name)).toEqual({ state: "shutoff", reason: "saved" });
      expect(await f.a.hasManagedSave(name)).toBe(true);
      await f.a.startDomain(name);
      expect(await f.a.getDomainState(name)).toEqual({ state: "running", reason: "restored" });
      expect(await f.a.hasManagedSave(name)).toBe(false);
      // Dropping the save file: the next start boots afresh.
      await f.a.managedSave(name);
      await f.a.removeManagedSave(name);
      expect(await f.a.hasManagedSave(name)).toBe(false);
      await f.a.startDomain(name);
      expect(await f.a.getDomainState(name)).toEqual({ state: "running", reason: "booted" });
      await f.a.destroyDomain(name);
      await f.a.undefineDomain(name);
      await f.a.deleteVolume(f.pool, vol);
    }, 60_000);

    it("saves a running domain to a checkpoint and restores it", async () => {
      const name = uniq("ckpt");
      const vol = await overlay(name);
      await f.a.defineDomain(spec(name, vol));
      await f.a.startDomain(name);
      const path = `${f.checkpointDir}/${name}.save`;
      await f.a.saveCheckpoint(name, path);
      expect(await f.a.getDomainState(name)).toEqual({ state: "shutoff", reason: "saved" });
      await f.a.restoreCheckpoint(path);
      expect(await f.a.getDomainState(name)).toEqual({ state: "running", reason: "restored" });
      await f.a.destroyDomain(name);
      await f.a.undefineDomain(name);
      await f.a.deleteVolume(f.pool, vol);
    });

    it("migrates a running domain live to the other host", async () => {
      const name = uniq("mig");
      const vol = await overlay(name);
      await f.a.defineDomain(spec(name, vol));
      await f.a.startDomain(name);
      // The target's pool must know the volume (on shared storage, created through host a).
      expect(await f.b.getVolume(f.pool, vol)).toBeDefined();
      const progress: number[] = [];
      await f.a.migrateDomain(name, f.bUriFromA, {
        live: true,
        unsafe: f.migrationUnsafe,
        onProgress: (p) => progress.push(p),
      });
      expect(progress.at(-1)).toBe(100);
      expect(await f.b.getDomainState(name)).toEqual({ state: "running", reason: "migrated" });
      expect((await f.b.getDomainSpec(name))?.ownership).toMatchObject({ uid: `uid-${name}` });
      expect(await f.a.getDomainState(name)).toBeUndefined();
      await f.b.destroyDomain(name);
      await f.b.undefineDomain(name);
      await f.a.deleteVolume(f.pool, vol);
    }, 60_000);

    it("defines, reads back and removes a network", async () => {
      const name = `vwc${process.pid % 10000}${n++}`;
      const net = {
        name,
        mode: "isolated" as const,
        bridge: `vwc${process.pid % 1000}b${n}`,
        address: "192.168.251.1/24",
        dhcpRange: { start: "192.168.251.100", end: "192.168.251.150" },
        leases: [{ mac: "52:54:00:aa:bb:01", ip: "192.168.251.10", hostname: "db" }],
        ownership: { uid: "u1", namespace: "contract", name: "net", specHash: "h1" },
      };
      await f.a.ensureNetwork(net);
      const got = await f.a.getNetwork(name);
      expect(got).toMatchObject({
        active: true,
        autostart: true,
        spec: {
          name,
          mode: "isolated",
          address: "192.168.251.1/24",
          dhcpRange: net.dhcpRange,
          leases: net.leases,
          ownership: net.ownership,
        },
      });
      // A change beyond the leases redefines the persistent network.
      const wider = { ...net, dhcpRange: { start: "192.168.251.100", end: "192.168.251.200" } };
      await f.a.ensureNetwork({ ...wider, ownership: { ...net.ownership, specHash: "h2" } });
      expect((await f.a.getNetwork(name))?.spec.dhcpRange).toEqual(wider.dhcpRange);
      expect((await f.a.getNetwork(name))?.active).toBe(true);
      // No guest has asked yet: no leases (the real leases are in libvirt-network.test.ts).
      expect(await f.a.networkLeases(name)).toEqual([]);
      await f.a.removeNetwork(name);
      expect(await f.a.getNetwork(name)).toBeUndefined();
      await expect(f.a.networkLeases(name)).rejects.toSatisfy((e: unknown) => isProviderError(e, "NotFound"));
    });

    it("fails fast with an aborted signal", async () => {
      const ac = new AbortController();
      ac.abort();
      await expect(f.a.getDomainState("x", ac.signal)).rejects.toSatisfy((e: unknown) =>
        isProviderError(e, "Aborted"),
      );
    });
  });
}
