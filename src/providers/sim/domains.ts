/**
 * The simulated domain lifecycle: define, start, shut down, destroy, pause and resume, device
 * hotplug and live resize, and the per-domain stats. Each function is one SimProvider call on
 * session `s` (session.ts) and checks what libvirt checks, failing with its error codes.
 */
import type {
  DomainDiskSpec,
  DomainInterfaceSpec,
  DomainSpec,
  DomainStateInfo,
  DomainStats,
  DomainSummary,
} from "../types.js";
import { clone, type SimSession } from "./session.js";
import { guestLoad, isActive, type SimDomain } from "./world.js";

export async function listDomains(s: SimSession, signal?: AbortSignal): Promise<DomainSummary[]> {
  return s.call("listDomains", "callMs", signal, (h) =>
    [...h.domains.values()].map((d) => ({
      name: d.spec.name,
      uuid: d.uuid,
      state: { ...d.state },
      ...(d.spec.ownership ? { ownership: { ...d.spec.ownership } } : {}),
      vcpus: d.spec.vcpus,
      memoryBytes: d.spec.memoryBytes,
      persistent: d.persistent,
    })),
  );
}

export async function defineDomain(s: SimSession, spec: DomainSpec, signal?: AbortSignal): Promise<void> {
  await s.call("defineDomain", "defineMs", signal, (h) => {
    const existing = h.domains.get(spec.name);
    const uuid = existing?.uuid ?? spec.uuid ?? crypto.randomUUID();
    const stored = clone({ ...spec, uuid });
    if (existing) {
      existing.spec = stored;
      existing.persistent = true;
    } else {
      const d: SimDomain = {
        spec: stored,
        uuid,
        state: { state: "shutoff", reason: "unknown" },
        persistent: true,
        snapshots: [],
      };
      h.domains.set(spec.name, d);
    }
    s.sim.emit(h, h.domains.get(spec.name) as SimDomain, "defined", existing ? "updated" : "added");
  });
}

export async function startDomain(s: SimSession, name: string, signal?: AbortSignal): Promise<void> {
  await s.call("startDomain", "startMs", signal, (h) => {
    const d = s.domain(h, name, "startDomain");
    if (isActive(d.state)) throw s.err("InvalidState", "startDomain", "domain is already running");
    if (h.usedMemory() + d.spec.memoryBytes > h.memoryBytes) {
      throw s.err(
        "InsufficientResources",
        "startDomain",
        `not enough free memory for ${d.spec.memoryBytes} bytes`,
      );
    }
    for (const disk of d.spec.disks) {
      if (!h.pools.get(disk.pool)?.volumes.has(disk.volume)) {
        throw s.err(
          "NotFound",
          "startDomain",
          `disk ${disk.target}: volume ${disk.pool}/${disk.volume} not found`,
        );
      }
    }
    const resumed = d.managedSave === true;
    d.managedSave = false;
    d.runningSince = Date.now();
    d.starts = (d.starts ?? 0) + 1;
    d.state = { state: "running", reason: resumed ? "restored" : "booted" };
    s.sim.emit(h, d, "started", resumed ? "restored" : "booted");
  });
}

export async function attachInterface(
  s: SimSession,
  name: string,
  nic: DomainInterfaceSpec,
  signal?: AbortSignal,
): Promise<void> {
  await s.call("attachInterface", "callMs", signal, (h) => {
    const d = s.domain(h, name, "attachInterface");
    if (!isActive(d.state)) throw s.err("InvalidState", "attachInterface", "domain is not running");
    if (!h.networks.has(nic.network))
      throw s.err(
        "NotFound",
        "attachInterface",
        `Network not found: no network with matching name '${nic.network}'`,
      );
    if (d.spec.interfaces.some((n) => n.mac === nic.mac))
      throw s.err("OperationFailed", "attachInterface", `interface ${nic.mac} already exists`);
    d.spec.interfaces = [...d.spec.interfaces, { ...nic }];
  });
}

export async function detachInterface(
  s: SimSession,
  name: string,
  nic: DomainInterfaceSpec,
  signal?: AbortSignal,
): Promise<void> {
  await s.call("detachInterface", "callMs", signal, (h) => {
    const d = s.domain(h, name, "detachInterface");
    if (!isActive(d.state)) throw s.err("InvalidState", "detachInterface", "domain is not running");
    if (!d.spec.interfaces.some((n) => n.mac === nic.mac))
      throw s.err("NotFound", "detachInterface", `no interface with MAC ${nic.mac}`);
    d.spec.interfaces = d.spec.interfaces.filter((n) => n.mac !== nic.mac);
  });
}

export async function attachDisk(
  s: SimSession,
  name: string,
  disk: DomainDiskSpec,
  signal?: AbortSignal,
): Promise<void> {
  await s.call("attachDisk", "callMs", signal, (h) => {
    const d = s.domain(h, name, "attachDisk");
    if (!isActive(d.state)) throw s.err("InvalidState", "attachDisk", "domain is not running");
    if (disk.bus === "ide" || disk.bus === "sata")
      throw s.err("OperationFailed", "attachDisk", `disk bus '${disk.bus}' cannot be hotplugged`);
    if (!h.pools.get(disk.pool)?.volumes.has(disk.volume))
      throw s.err("NotFound", "attachDisk", `volume ${disk.pool}/${disk.volume} not found`);
    if (d.spec.disks.some((x) => x.target === disk.target))
      throw s.err("OperationFailed", "attachDisk", `target ${disk.target} already exists`);
    d.spec.disks = [...d.spec.disks, { ...disk }];
  });
}

export async function detachDisk(
  s: SimSession,
  name: string,
  disk: DomainDiskSpec,
  signal?: AbortSignal,
): Promise<void> {
  await s.call("detachDisk", "callMs", signal, (h) => {
    const d = s.domain(h, name, "detachDisk");
    if (!isActive(d.state)) throw s.err("InvalidState", "detachDisk", "domain is not running");
    if (!d.spec.disks.some((x) => x.target === disk.target))
      throw s.err("NotFound", "detachDisk", `disk ${disk.target} not found`);
    d.spec.disks = d.spec.disks.filter((x) => x.target !== disk.target);
  });
}

/** As libvirt: live and persistent at once, within the defined maxima, memory only with a balloon. */
export async function resizeDomain(
  s: SimSession,
  name: string,
  change: { vcpus?: number; memoryBytes?: number },
  signal?: AbortSignal,
): Promise<void> {
  await s.call("resizeDomain", "callMs", signal, (h) => {
    const d = s.domain(h, name, "resizeDomain");
    if (!isActive(d.state)) throw s.err("InvalidState", "resizeDomain", "domain is not running");
    const { vcpus, memoryBytes } = change;
    const maxVcpus = d.spec.maxVcpus ?? d.spec.vcpus;
    if (vcpus !== undefined && (vcpus < 1 || vcpus > maxVcpus))
      throw s.err(
        "OperationFailed",
        "resizeDomain",
        `requested vcpus ${vcpus} is greater than max allowable vcpus ${maxVcpus}`,
      );
    if (memoryBytes !== undefined) {
      if (d.spec.maxMemoryBytes === undefined)
        throw s.err(
          "InvalidState",
          "resizeDomain",
          "Unable to change memory of active domain without the balloon device and guest OS balloon driver",
        );
      if (memoryBytes > d.spec.maxMemoryBytes)
        throw s.err("OperationFailed", "resizeDomain", "cannot set memory higher than max memory");
      if (h.usedMemory() - d.spec.memoryBytes + memoryBytes > h.memoryBytes)
        throw s.err(
          "InsufficientResources",
          "resizeDomain",
          `not enough free memory for ${memoryBytes} bytes`,
        );
    }
    if (vcpus !== undefined) {
      d.spec.vcpus = vcpus;
      if (vcpus === maxVcpus) delete d.spec.maxVcpus;
      else d.spec.maxVcpus = maxVcpus;
    }
    if (memoryBytes !== undefined) d.spec.memoryBytes = memoryBytes;
  });
}

export async function shutdownDomain(s: SimSession, name: string, signal?: AbortSignal): Promise<void> {
  await s.call("shutdownDomain", "callMs", signal, (h) => {
    const d = s.domain(h, name, "shutdownDomain");
    if (!isActive(d.state)) throw s.err("InvalidState", "shutdownDomain", "domain is not running");
    d.state = { state: "shutdown", reason: "user" };
    const finish = () => {
      if (d.state.state !== "shutdown") return;
      d.state = { state: "shutoff", reason: "shutdown" };
      s.sim.emit(h, d, "stopped", "shutdown");
    };
    const ms = s.sim.delay("guestShutdownMs");
    if (ms <= 0) finish();
    else {
      d.shutdownTimer = setTimeout(finish, ms);
      d.shutdownTimer.unref();
    }
  });
}

export async function destroyDomain(s: SimSession, name: string, signal?: AbortSignal): Promise<void> {
  await s.call("destroyDomain", "destroyMs", signal, (h) => {
    const d = s.domain(h, name, "destroyDomain");
    if (!isActive(d.state)) throw s.err("InvalidState", "destroyDomain", "domain is not running");
    if (d.shutdownTimer) clearTimeout(d.shutdownTimer);
    d.state = { state: "shutoff", reason: "destroyed" };
    if (!d.persistent) h.domains.delete(name);
    s.sim.emit(h, d, "stopped", "destroyed");
  });
}

export async function undefineDomain(s: SimSession, name: string, signal?: AbortSignal): Promise<void> {
  await s.call("undefineDomain", "callMs", signal, (h) => {
    const d = s.domain(h, name, "undefineDomain");
    if (isActive(d.state)) d.persistent = false;
    else h.domains.delete(name);
    d.snapshots = [];
    s.sim.emit(h, d, "undefined", "removed");
  });
}

export async function pauseDomain(s: SimSession, name: string, signal?: AbortSignal): Promise<void> {
  await s.call("pauseDomain", "callMs", signal, (h) => {
    const d = s.domain(h, name, "pauseDomain");
    if (d.state.state !== "running") throw s.err("InvalidState", "pauseDomain", "domain is not running");
    d.state = { state: "paused", reason: "user" };
    s.sim.emit(h, d, "suspended", "paused");
  });
}

export async function resumeDomain(s: SimSession, name: string, signal?: AbortSignal): Promise<void> {
  await s.call("resumeDomain", "callMs", signal, (h) => {
    const d = s.domain(h, name, "resumeDomain");
    if (d.state.state !== "paused") throw s.err("InvalidState", "resumeDomain", "domain is not paused");
    d.state = { state: "running", reason: "unpaused" };
    s.sim.emit(h, d, "resumed", "unpaused");
  });
}

export async function getDomainState(
  s: SimSession,
  name: string,
  signal?: AbortSignal,
): Promise<DomainStateInfo | undefined> {
  return s.call("getDomainState", "callMs", signal, (h) => {
    const d = h.domains.get(name);
    return d ? { ...d.state } : undefined;
  });
}

export async function getDomainSpec(
  s: SimSession,
  name: string,
  signal?: AbortSignal,
): Promise<DomainSpec | undefined> {
  return s.call("getDomainSpec", "callMs", signal, (h) => {
    const d = h.domains.get(name);
    return d ? clone(d.spec) : undefined;
  });
}

export async function domainStats(s: SimSession, signal?: AbortSignal): Promise<DomainStats[]> {
  return s.call("domainStats", "callMs", signal, (h) =>
    [...h.domains.values()]
      .filter((d) => isActive(d.state))
      .map((d) => {
        const upMs = Date.now() - (d.runningSince ?? Date.now());
        return {
          name: d.spec.name,
          // Simulated: a running guest uses its load (world.ts guestLoad: by default a tenth of
          // a vCPU each, a quarter of its memory resident), reads its disks at 4 MB/s and
          // writes at 1 MB/s (counters since this start, as libvirt's are per QEMU process).
          cpuTimeNs: (d.cpuTimeNs ?? 0) + Math.round(upMs * 1e6 * guestLoad(d).cpus),
          memoryBytes: d.spec.memoryBytes,
          rssBytes: guestLoad(d).memoryBytes,
          block:
            d.spec.disks.length > 0
              ? { readBytes: Math.round(upMs * 4_000), writeBytes: Math.round(upMs * 1_000) }
              : { readBytes: 0, writeBytes: 0 },
          net: { rxBytes: 0, txBytes: 0 },
        };
      }),
  );
}
