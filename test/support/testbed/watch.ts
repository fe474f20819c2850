/**
 * The never-two-running-copies invariant, watched on the real test bed: every 100 ms every host's
 * libvirtd is asked which domains run (a migration's target QEMU exists, paused, until the
 * switchover, so QEMU processes alone would say two). Hosts that are off or unreachable answer
 * nothing and are asked again. `samples` counts rounds that saw at least `expect` guests running,
 * so an empty violation list is known to mean something.
 */
import { readFileSync } from "node:fs";
import { LibvirtProvider } from "../../../src/providers/libvirt/index.js";
import type { Testbed } from "./index.js";

export interface RunningWatch {
  violations: string[];
  samples(): number;
  stop(): Promise<void>;
}

export function watchRunningCopies(tb: Testbed, expect = 1): RunningWatch {
  const probes = tb.hosts.map((h) => new LibvirtProvider(h.uri));
  const violations: string[] = [];
  let samples = 0;
  let busy = false;
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      const running = new Map<string, string[]>();
      await Promise.all(
        probes.map(async (p, i) => {
          if (!p.health().connected) await p.connect().catch(() => undefined);
          for (const d of await p.listDomains().catch(() => []))
            if (d.state.state === "running")
              running.set(d.name, [...(running.get(d.name) ?? []), tb.hosts[i]?.name as string]);
        }),
      );
      for (const [g, hosts] of running) if (hosts.length > 1) violations.push(`${g}: ${hosts.join(",")}`);
      if (running.size >= expect) samples++;
    } finally {
      busy = false;
    }
  }, 100);
  return {
    violations,
    samples: () => samples,
    stop: async () => {
      clearInterval(timer);
      await Promise.all(probes.map((p) => p.close()));
    },
  };
}

/** The guest names whose QEMU runs on each test host, from QEMU's pid files and /proc. */
export function guestsOf(tb: Testbed): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const h of tb.hosts) {
    for (const p of h.qemuPids()) {
      let cmd: string;
      try {
        cmd = readFileSync(`/proc/${p}/cmdline`, "utf8").replaceAll("\0", " ");
      } catch {
        continue;
      }
      const m = /guest=([^,\s]+)/.exec(cmd);
      if (m?.[1]) out.set(m[1], [...(out.get(m[1]) ?? []), h.name]);
    }
  }
  return out;
}
