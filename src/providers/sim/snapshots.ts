/**
 * Simulated snapshots (libvirt-internal: a running domain's snapshot always holds its memory),
 * managed save, and checkpoints to a path (kept in the Simulator, so another host can restore one).
 * Snapshot data outlives its host only with the simulator's shared storage.
 */
import type { SnapshotInfo } from "../types.js";
import { clone, type SimSession } from "./session.js";
import { isActive } from "./world.js";

export async function createSnapshot(
  s: SimSession,
  domain: string,
  options: { name: string; memory: boolean; description?: string },
  signal?: AbortSignal,
): Promise<SnapshotInfo> {
  return s.call("createSnapshot", "snapshotMs", signal, (h) => {
    const d = s.domain(h, domain, "createSnapshot");
    if (d.snapshots.some((s) => s.name === options.name)) {
      throw s.err("AlreadyExists", "createSnapshot", `snapshot ${options.name} exists`);
    }
    if (options.memory && !isActive(d.state)) {
      throw s.err("InvalidState", "createSnapshot", "a memory snapshot needs a running domain");
    }
    const parent = d.snapshots.find((s) => s.current);
    for (const s of d.snapshots) s.current = false;
    const snap = {
      name: options.name,
      domain,
      createdAt: new Date(),
      // Like libvirt's internal snapshots: a running domain's snapshot always holds its memory.
      memory: isActive(d.state),
      state: d.state.state,
      current: true,
      ...(parent ? { parent: parent.name } : {}),
      ...(options.description ? { description: options.description } : {}),
      sizeBytes: d.spec.disks.length * 64 * 1024 ** 2 + (options.memory ? d.spec.memoryBytes : 0),
      spec: clone(d.spec),
      wasRunning: isActive(d.state),
    };
    d.snapshots.push(snap);
    if (s.sim.sharedStorage) s.sim.snapshotData.set(`${domain}/${options.name}`, clone(snap));
    const { spec: _s, wasRunning: _w, ...info } = snap;
    return info;
  });
}

export async function listSnapshots(
  s: SimSession,
  domain: string,
  signal?: AbortSignal,
): Promise<SnapshotInfo[]> {
  return s.call("listSnapshots", "callMs", signal, (h) =>
    s.domain(h, domain, "listSnapshots").snapshots.map(({ spec: _s, wasRunning: _w, ...info }) => ({
      ...info,
    })),
  );
}

export async function revertSnapshot(
  s: SimSession,
  domain: string,
  name: string,
  options: { paused?: boolean } = {},
  signal?: AbortSignal,
): Promise<void> {
  await s.call("revertSnapshot", "snapshotMs", signal, (h) => {
    const d = s.domain(h, domain, "revertSnapshot");
    const snap = d.snapshots.find((s) => s.name === name);
    if (!snap) throw s.err("NotFound", "revertSnapshot", `snapshot ${name} not found`);
    d.spec = clone(snap.spec);
    for (const s of d.snapshots) s.current = s === snap;
    const running = snap.memory && snap.wasRunning;
    d.state = !running
      ? { state: "shutoff", reason: "from-snapshot" }
      : options.paused
        ? { state: "paused", reason: "from-snapshot" }
        : { state: "running", reason: "from-snapshot" };
    s.sim.emit(h, d, running ? "started" : "stopped", "from-snapshot");
  });
}

export async function importSnapshot(
  s: SimSession,
  domain: string,
  snapshot: Pick<SnapshotInfo, "name" | "createdAt" | "state" | "memory">,
  signal?: AbortSignal,
): Promise<void> {
  await s.call("importSnapshot", "callMs", signal, (h) => {
    const d = s.domain(h, domain, "importSnapshot");
    if (d.snapshots.some((s) => s.name === snapshot.name)) {
      throw s.err("AlreadyExists", "importSnapshot", `snapshot ${snapshot.name} exists`);
    }
    const data = s.sim.snapshotData.get(`${domain}/${snapshot.name}`);
    if (!data) {
      throw s.err("NotFound", "importSnapshot", `no data of snapshot ${snapshot.name} in ${domain}'s disks`);
    }
    d.snapshots.push({ ...clone(data), current: false });
  });
}

export async function deleteSnapshot(
  s: SimSession,
  domain: string,
  name: string,
  signal?: AbortSignal,
): Promise<void> {
  await s.call("deleteSnapshot", "callMs", signal, (h) => {
    const d = s.domain(h, domain, "deleteSnapshot");
    const i = d.snapshots.findIndex((s) => s.name === name);
    if (i < 0) throw s.err("NotFound", "deleteSnapshot", `snapshot ${name} not found`);
    d.snapshots.splice(i, 1);
    s.sim.snapshotData.delete(`${domain}/${name}`);
  });
}

export async function managedSave(s: SimSession, domain: string, signal?: AbortSignal): Promise<void> {
  await s.call("managedSave", "saveMs", signal, (h) => {
    const d = s.domain(h, domain, "managedSave");
    if (!isActive(d.state)) throw s.err("InvalidState", "managedSave", "domain is not running");
    d.managedSave = true;
    d.state = { state: "shutoff", reason: "saved" };
    s.sim.emit(h, d, "stopped", "saved");
  });
}

export async function hasManagedSave(s: SimSession, domain: string, signal?: AbortSignal): Promise<boolean> {
  return s.call(
    "hasManagedSave",
    "callMs",
    signal,
    (h) => s.domain(h, domain, "hasManagedSave").managedSave === true,
  );
}

export async function removeManagedSave(s: SimSession, domain: string, signal?: AbortSignal): Promise<void> {
  await s.call("removeManagedSave", "callMs", signal, (h) => {
    s.domain(h, domain, "removeManagedSave").managedSave = false;
  });
}

export async function saveCheckpoint(
  s: SimSession,
  domain: string,
  path: string,
  signal?: AbortSignal,
): Promise<void> {
  await s.call("saveCheckpoint", "saveMs", signal, (h) => {
    const d = s.domain(h, domain, "saveCheckpoint");
    if (!isActive(d.state)) throw s.err("InvalidState", "saveCheckpoint", "domain is not running");
    s.sim.checkpoints.set(path, { spec: clone(d.spec), uuid: d.uuid, fromHost: h.name });
    d.state = { state: "shutoff", reason: "saved" };
    s.sim.emit(h, d, "stopped", "saved");
  });
}

export async function restoreCheckpoint(s: SimSession, path: string, signal?: AbortSignal): Promise<void> {
  await s.call("restoreCheckpoint", "restoreMs", signal, (h) => {
    const cp = s.sim.checkpoints.get(path);
    if (!cp) throw s.err("NotFound", "restoreCheckpoint", `no checkpoint at ${path}`);
    let d = h.domains.get(cp.spec.name);
    if (d && isActive(d.state)) throw s.err("InvalidState", "restoreCheckpoint", "domain is already running");
    if (h.usedMemory() + cp.spec.memoryBytes > h.memoryBytes) {
      throw s.err("InsufficientResources", "restoreCheckpoint", "not enough free memory");
    }
    if (!d) {
      d = {
        spec: clone(cp.spec),
        uuid: cp.uuid,
        state: { state: "shutoff", reason: "saved" },
        persistent: false,
        snapshots: [],
      };
      h.domains.set(cp.spec.name, d);
    }
    d.state = { state: "running", reason: "restored" };
    s.sim.emit(h, d, "started", "restored");
  });
}
