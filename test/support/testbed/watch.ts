/**
 * The never-two-running-copies invariant, watched on the real test bed: every 100 ms every host's
 * libvirtd is asked which domains run (a migration's target QEMU exists, paused, until the
 * switchover, so QEMU processes alone would say two). The asking is done by `virsh` over each
 * host's local socket, not by LibvirtProvider: the provider is the code under test, and an oracle
 * that shares its bugs (a stale list, a reconnect that drops a host) would agree with them. The
 * local socket also answers for a host whose network link is cut, whose copies the controller
 * cannot see but which still run. Hosts that are off answer nothing and are asked again.
 * `samples` counts rounds that saw at least `expect` guests running, so an empty violation list
 * is known to mean something.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import type { Testbed } from "./index.js";

const run = promisify(execFile);

export interface RunningWatch {
  violations: string[];
  samples(): number;
  stop(): Promise<void>;
}

/** The names of the domains running on one host, by libvirt's own client; none when it does not answer. */
async function runningDomains(unixUri: string): Promise<string[]> {
  try {
    const { stdout } = await run("virsh", ["-q", "-c", unixUri, "list", "--state-running", "--name"], {
      encoding: "utf8",
      timeout: 4000,
      killSignal: "SIGKILL",
    });
    return stdout
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean);
  } catch {
    return [];
  }
}

export function watchRunningCopies(tb: Testbed, expect = 1): RunningWatch {
  const violations: string[] = [];
  let samples = 0;
  let round: Promise<void> | undefined;
  const sample = async () => {
    const running = new Map<string, string[]>();
    await Promise.all(
      tb.hosts.map(async (h) => {
        for (const name of await runningDomains(h.unixUri))
          running.set(name, [...(running.get(name) ?? []), h.name]);
      }),
    );
    for (const [g, hosts] of running) if (hosts.length > 1) violations.push(`${g}: ${hosts.join(",")}`);
    if (running.size >= expect) samples++;
  };
  const timer = setInterval(() => {
    if (round) return;
    round = sample().finally(() => {
      round = undefined;
    });
  }, 100);
  return {
    violations,
    samples: () => samples,
    stop: async () => {
      clearInterval(timer);
      await round;
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
