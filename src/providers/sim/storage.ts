/**
 * Simulated storage pools and volumes: linked clones (a backing volume) start as a small qcow2
 * header, full copies as large as their base; a volume that backs another cannot be deleted.
 */
import type { CreateVolumeOptions, PoolInfo, VolumeInfo } from "../types.js";
import type { SimSession } from "./session.js";

export async function listPools(s: SimSession, signal?: AbortSignal): Promise<PoolInfo[]> {
  return s.call("listPools", "callMs", signal, (h) =>
    [...h.pools.values()].map((p) => {
      let used = 0;
      for (const v of p.volumes.values()) used += v.allocationBytes;
      return {
        name: p.name,
        path: p.path,
        capacityBytes: p.capacityBytes,
        availableBytes: p.capacityBytes - used,
        active: true,
      };
    }),
  );
}

export async function listVolumes(s: SimSession, pool: string, signal?: AbortSignal): Promise<VolumeInfo[]> {
  return s.call("listVolumes", "callMs", signal, (h) => {
    const p = h.pools.get(pool);
    if (!p) throw s.err("NotFound", "listVolumes", `pool ${pool} not found`);
    return [...p.volumes.values()].map((v) => ({ ...v }));
  });
}

export async function createVolume(
  s: SimSession,
  pool: string,
  options: CreateVolumeOptions,
  signal?: AbortSignal,
): Promise<VolumeInfo> {
  return s.call("createVolume", "volumeCreateMs", signal, (h) => {
    const p = h.pools.get(pool);
    if (!p) throw s.err("NotFound", "createVolume", `pool ${pool} not found`);
    if (p.volumes.has(options.name))
      throw s.err("AlreadyExists", "createVolume", `volume ${options.name} exists`);
    const from = options.backing ?? options.copyFrom;
    const base = from ? h.pools.get(from.pool)?.volumes.get(from.volume) : undefined;
    if (from && !base)
      throw s.err("NotFound", "createVolume", `base volume ${from.pool}/${from.volume} not found`);
    const v: VolumeInfo = {
      pool,
      name: options.name,
      path: `${p.path}/${options.name}`,
      format: options.format,
      capacityBytes: Math.max(options.capacityBytes, base?.capacityBytes ?? 0),
      // A linked clone starts as a small qcow2 header; a full copy is as large as its base.
      allocationBytes: options.copyFrom ? (base?.allocationBytes ?? 0) : 196_624,
      ...(options.backing && base ? { backingPath: base.path } : {}),
    };
    p.volumes.set(options.name, v);
    return { ...v };
  });
}

export async function getVolume(
  s: SimSession,
  pool: string,
  name: string,
  signal?: AbortSignal,
): Promise<VolumeInfo | undefined> {
  return s.call("getVolume", "callMs", signal, (h) => {
    const v = h.pools.get(pool)?.volumes.get(name);
    return v ? { ...v } : undefined;
  });
}

export async function deleteVolume(
  s: SimSession,
  pool: string,
  name: string,
  signal?: AbortSignal,
): Promise<void> {
  await s.call("deleteVolume", "callMs", signal, (h) => {
    const p = h.pools.get(pool);
    const v = p?.volumes.get(name);
    if (!p || !v) throw s.err("NotFound", "deleteVolume", `volume ${pool}/${name} not found`);
    for (const other of p.volumes.values()) {
      if (other.backingPath === v.path) {
        throw s.err(
          "InvalidState",
          "deleteVolume",
          `volume ${name} backs ${other.name}: delete the overlay first`,
        );
      }
    }
    p.volumes.delete(name);
  });
}
