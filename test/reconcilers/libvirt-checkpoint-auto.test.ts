/**
 * Issue 19 end to end, on real libvirt hosts: a VM with onHostFailure RestoreCheckpoint, picked by
 * a SnapshotPolicy with schedule auto, is checkpointed (memory + disk) by the policy alone; its
 * host is then powered off and fenced (exec agent, the bed's power switch), and the VM resumes
 * from that checkpoint on another host, with the work lost recorded on the VM and in the metric.
 *
 * The oracles are the test's own: libvirt itself (virsh over each host's unix socket: the
 * checkpoint's state, which hosts have the domain active, the resumed domain's state reason),
 * QEMU processes (/proc), Daly's formula written out again, and the lost work computed from the
 * failed Host's last heartbeat and the snapshot's creation time, never with the product's code.
 *
 * The CRD's smallest interval is 1m (auto fields match ^[1-9][0-9]{0,5}(m|h|d|w)$), so a second
 * checkpoint can come at the earliest a minute after the first: the host is powered off well
 * before. No host has a failure history yet, so M is assumedMtbf: 2d puts Daly's interval for
 * this bed's checkpoint cost (tens of milliseconds for a 64 MiB guest, up to seconds on a loaded
 * machine) between the bounds, so the interval is the formula's, not a clamp's; whether it is
 * clamped is checked against the test's own computation either way.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import type { SnapshotPolicy } from "../../src/api/types.js";
import {
  type Cleanups,
  eventually,
  onHost,
  splitBrainWatcher,
  startHaBed,
} from "../support/testbed/ha-bed.js";
import type { Testbed } from "../support/testbed/index.js";

const run = promisify(execFile);
const cleanups: Cleanups = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

const GUEST = "default_app-0";
const MIN_INTERVAL_S = 60;
const MAX_INTERVAL_S = 3600;
const ASSUMED_MTBF_S = 2 * 86_400;

/** Daly's interval, written out again here: √(2CM)(1 + ⅓√(C/2M) + (1/9)(C/2M)) − C, or M. */
function daly(c: number, m: number): number {
  if (c >= 2 * m) return m;
  const r = c / (2 * m);
  return Math.sqrt(2 * c * m) * (1 + Math.sqrt(r) / 3 + r / 9) - c;
}

async function virsh(tb: Testbed, host: string, ...args: string[]): Promise<string> {
  const h = tb.hosts.find((x) => x.name === host);
  if (!h) throw new Error(`no test host ${host}`);
  const { stdout } = await run("virsh", ["-q", "-c", h.unixUri, ...args], { timeout: 5_000 });
  return stdout.trim();
}

/**
 * libvirt's own answer, every 150 ms: on which hosts the guest's domain is active (running or
 * paused: `virsh list --name`). A host that is off answers nothing (its daemon is dead) and counts
 * as having no copy; its QEMU processes are watched separately (splitBrainWatcher).
 */
function activeCopiesWatcher(tb: Testbed, guest: string) {
  const violations: string[] = [];
  const seenOn = new Set<string>();
  let rounds = 0;
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const active = await Promise.all(
        tb.hosts.map(async (h) => {
          const names = await virsh(tb, h.name, "list", "--name").catch(() => "");
          return names.split("\n").includes(guest) ? [h.name] : [];
        }),
      );
      const on = active.flat();
      for (const h of on) seenOn.add(h);
      if (on.length > 1) violations.push(`${new Date().toISOString()} ${guest}: ${on.join(",")}`);
      rounds++;
      await new Promise((r) => setTimeout(r, 150));
    }
  })();
  const stop = async () => {
    stopped = true;
    await loop;
  };
  cleanups.push(stop);
  return { violations, seenOn, rounds: () => rounds, stop };
}

describe("schedule auto and RestoreCheckpoint on real libvirt hosts", () => {
  it("checkpoints a VM by itself, then resumes it from that checkpoint on another host when its host is powered off", async () => {
    const { tb, store, running, registry } = await startHaBed(cleanups, {
      vms: 1,
      fencing: (h) => ({ agent: "exec", command: h.fenceCommand, timeoutSeconds: 10 }),
      labels: { checkpoint: "auto" },
      extra: { availability: { onHostFailure: "RestoreCheckpoint" } },
    });
    const victim = tb.hosts[0]?.name as string;
    expect(onHost(store, victim).map((v) => v.metadata.name)).toEqual(["app-0"]);
    const qemuCopies = splitBrainWatcher(tb, cleanups);
    const libvirtCopies = activeCopiesWatcher(tb, GUEST);

    const policy: SnapshotPolicy = {
      apiVersion: "virtwarden.io/v1alpha1",
      kind: "SnapshotPolicy",
      metadata: { name: "ckpt", namespace: "default" },
      spec: {
        selector: { matchLabels: { checkpoint: "auto" } },
        schedule: "auto",
        type: "disk+memory",
        auto: { minInterval: "1m", maxInterval: "1h", assumedMtbf: "2d" },
      },
    };
    const t0 = Date.now();
    store.apply(policy);
    const snapshots = () => store.list("VirtualMachineSnapshot").filter((s) => s.spec.policy === "ckpt");
    const cadence = () => store.get("SnapshotPolicy", "default/ckpt")?.status?.cadence?.[0];

    // 1. The policy takes the first checkpoint at once (no checkpoint yet), by itself.
    await eventually(() => snapshots()[0]?.status?.phase === "Succeeded", "the policy's first checkpoint");
    console.log(`checkpoint Succeeded ${Date.now() - t0} ms after the policy was applied`);
    const snap = snapshots()[0];
    if (!snap?.status) throw new Error("no snapshot");
    expect(snapshots()).toHaveLength(1);
    expect(snap.spec).toMatchObject({ vmName: "app-0", type: "disk+memory", policy: "ckpt" });
    const member = snap.status.members?.[0];
    expect(snap.status.members).toHaveLength(1);
    expect(member).toMatchObject({ vmName: "app-0", host: victim, state: "running" });
    // libvirt agrees: the domain's snapshot holds a running guest, i.e. its memory too.
    const info = await virsh(
      tb,
      victim,
      "snapshot-info",
      GUEST,
      "--snapshotname",
      member?.snapshotName as string,
    );
    expect(info).toMatch(/^State:\s+running$/m);
    const createdAt = Date.parse(snap.status.creationTime as string);
    expect(createdAt).toBeGreaterThanOrEqual(t0 - 1000);
    // The creation time the lost work is measured from is libvirt's (whole seconds there).
    const snapXml = await virsh(
      tb,
      victim,
      "snapshot-dumpxml",
      GUEST,
      "--snapshotname",
      member?.snapshotName as string,
    );
    const libvirtCreatedS = Number(/<creationTime>(\d+)<\/creationTime>/.exec(snapXml)?.[1]);
    expect(Math.floor(createdAt / 1000)).toBe(libvirtCreatedS);

    // The policy's status: the interval and its inputs, C from the checkpoint's recorded cost and
    // M assumed (no host has failed yet).
    await eventually(
      () => cadence()?.formula === "Daly" && cadence()?.costSamples === 1,
      "cadence from the first checkpoint",
    );
    const c = (snap.status.pauseWindowSeconds ?? snap.status.durationSeconds) as number;
    expect(c).toBeGreaterThan(0);
    const raw = daly(c, ASSUMED_MTBF_S);
    const interval = Math.min(Math.max(raw, MIN_INTERVAL_S), MAX_INTERVAL_S);
    const got = cadence();
    console.log(`cadence: ${got?.message}`);
    expect(got).toMatchObject({
      target: "vm/app-0",
      hosts: [victim],
      mtbfSeconds: ASSUMED_MTBF_S,
      mtbfSource: "assumed",
      formula: "Daly",
      lastCheckpointTime: snap.status.creationTime,
    });
    expect(got?.costSeconds).toBeCloseTo(c, 5);
    expect(got?.formulaSeconds).toBeCloseTo(raw, 2);
    expect(got?.intervalSeconds).toBeCloseTo(interval, 2);
    expect(got?.clamped).toBe(raw < MIN_INTERVAL_S ? "min" : undefined);
    expect(Date.parse(got?.nextRunTime as string)).toBe(createdAt + Math.round(interval * 1000));

    // 2. Some work after the checkpoint (it is what the recovery loses), then the host goes dark.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(snapshots()).toHaveLength(1);
    const poweredOffAt = Date.now();
    tb.hosts[0]?.powerOff();
    await eventually(
      () => running().length === 1 && onHost(store, victim).length === 0,
      "app-0 running elsewhere",
      120_000,
    );
    console.log(`app-0 running elsewhere ${Date.now() - poweredOffAt} ms after the power-off`);
    const v = store.get("VirtualMachine", "default/app-0");
    const toHost = v?.status?.host as string;
    expect(toHost).not.toBe(victim);
    expect(tb.hosts.map((h) => h.name)).toContain(toHost);
    expect(store.get("Host", victim)?.status?.phase).toBe("Fenced");

    // Resumed from that checkpoint: one restore, of it, Succeeded, and no newer checkpoint.
    expect(snapshots().map((s) => s.metadata.name)).toEqual([snap.metadata.name]);
    const restores = store.list("VirtualMachineRestore");
    expect(restores.map((r) => [r.spec.snapshotName, r.status?.phase])).toEqual([
      [snap.metadata.name, "Succeeded"],
    ]);

    // libvirt's word on where it runs and how: active on the new host only, and running because
    // it was unpaused after the revert (its memory), not booted.
    const where = await Promise.all(
      tb.hosts.slice(1).map(async (h) => [h.name, (await virsh(tb, h.name, "list", "--name")).split("\n")]),
    );
    expect(where.filter(([, names]) => names?.includes(GUEST)).map(([h]) => h)).toEqual([toHost]);
    expect(await virsh(tb, toHost, "domstate", GUEST, "--reason")).toBe("running (unpaused)");
    // QEMU's word: the new copy's process was started loading that checkpoint's saved state.
    const qemuArgs = (tb.hosts.find((h) => h.name === toHost)?.qemuPids() ?? [])
      .map((p) => readFileSync(`/proc/${p}/cmdline`, "utf8").split("\0"))
      .filter((argv) => argv.some((a) => a.includes(`guest=${GUEST}`)));
    expect(qemuArgs).toHaveLength(1);
    const loadvm = qemuArgs[0]?.indexOf("-loadvm") ?? -1;
    expect(loadvm).toBeGreaterThan(0);
    expect(qemuArgs[0]?.[loadvm + 1]).toBe(member?.snapshotName);

    // The recovery record: the checkpoint, and the work lost = failure (the host's last
    // heartbeat) - the checkpoint's creation time; that failure lies just before the power-off.
    const failedAt = Date.parse(store.get("Host", victim)?.status?.lastHeartbeat as string);
    expect(failedAt).toBeLessThanOrEqual(poweredOffAt + 100);
    expect(poweredOffAt - failedAt).toBeLessThan(2_000);
    const expectedLost = (failedAt - createdAt) / 1000;
    const r = v?.status?.lastRecovery;
    console.log(
      `lost work ${r?.lostWorkSeconds} s (expected ${expectedLost} s; power-off ${(poweredOffAt - createdAt) / 1000} s after the checkpoint)`,
    );
    expect(r).toMatchObject({
      reason: "HostFailure",
      fromHost: victim,
      toHost,
      result: "Succeeded",
      checkpoint: snap.metadata.name,
    });
    expect(r?.lostWorkSeconds).toBeGreaterThan(0);
    expect(Math.abs((r?.lostWorkSeconds as number) - expectedLost)).toBeLessThan(2);
    expect(Math.abs((r?.lostWorkSeconds as number) - (poweredOffAt - createdAt) / 1000)).toBeLessThan(2);

    // The metric: one recovery from a checkpoint, its lost work as the sum.
    const metric = await registry.getSingleMetric("virtwarden_recovery_lost_work_seconds")?.get();
    const value = (suffix: string) =>
      metric?.values.find((x) => (x as { metricName?: string }).metricName?.endsWith(suffix))?.value;
    expect(value("_count")).toBe(1);
    expect(value("_sum")).toBeCloseTo(r?.lostWorkSeconds as number, 3);

    // Never two copies: neither two QEMU processes nor two hosts with the domain active; and the
    // libvirt watcher did see the guest, first on the victim and then on the new host.
    await libvirtCopies.stop();
    expect(qemuCopies).toEqual([]);
    expect(libvirtCopies.violations).toEqual([]);
    expect([...libvirtCopies.seenOn].sort()).toEqual([victim, toHost].sort());
    expect(libvirtCopies.rounds()).toBeGreaterThan(10);
  }, 180_000);
});
