/**
 * Each test-bed host's own /proc/stat. The bed's hosts are namespaces of one kernel, so libvirt's
 * node CPU statistics (virNodeGetCPUStats reads /proc/stat) would be the whole machine's, the
 * same on every host: no test could tell a busy host from an idle one. With `ownCpuStats` each
 * host's libvirtd has, bind-mounted over /proc/stat in its mount namespace, a file whose "cpu "
 * line counts only the CPU time of that host's own processes (its libvirtd and the QEMUs it
 * started, from their /proc/PID/stat) as busy and the rest of the machine's CPU time since the
 * view began as idle, as lxcfs gives a container its own /proc/stat. The CPU time itself is
 * real: a guest that spins burns it in its QEMU.
 *
 * The file is rewritten in place every 200 ms at a constant length (fixed-width counters, one
 * write at offset 0, never truncated): a bind mount pins the inode, so it cannot be replaced, and
 * a reader never sees it empty. Memory (/proc/meminfo) stays the machine's: the same on every host.
 */
import { closeSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { cpus } from "node:os";

/** USER_HZ: /proc counts CPU time in these ticks on Linux. */
const TICKS_PER_SECOND = 100;
const WIDTH = 20;

export interface CpuView {
  /** The file to bind-mount over /proc/stat. */
  path: string;
  stop(): void;
}

const num = (n: number) => String(Math.max(0, Math.floor(n))).padStart(WIDTH, "0");

function render(userTicks: number, systemTicks: number, idleTicks: number, btime: string): Buffer {
  return Buffer.from(
    `cpu  ${num(userTicks)} ${num(0)} ${num(systemTicks)} ${num(idleTicks)} ${num(0)} ${num(0)} ${num(0)} ${num(0)} 0 0\n${btime}\n`,
  );
}

/** Start the view of the host whose processes `pids()` names; the file exists when this returns. */
export function startCpuView(path: string, pids: () => number[]): CpuView {
  const n = cpus().length;
  const started = performance.now();
  const btime = readFileSync("/proc/stat", "utf8").match(/^btime \d+$/m)?.[0] ?? "btime 0";
  // Per pid the most seen, so a process that exited keeps counting (the counters never go back).
  const seen = new Map<number, { user: number; system: number }>();
  let idle = 0;
  writeFileSync(path, render(0, 0, 0, btime));
  const fd = openSync(path, "r+");
  const tick = () => {
    for (const pid of pids()) {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        const user = Number(f[11]);
        const system = Number(f[12]);
        const was = seen.get(pid);
        seen.set(pid, { user: Math.max(was?.user ?? 0, user), system: Math.max(was?.system ?? 0, system) });
      } catch {}
    }
    let user = 0;
    let system = 0;
    for (const v of seen.values()) {
      user += v.user;
      system += v.system;
    }
    const wall = ((performance.now() - started) / 1000) * TICKS_PER_SECOND * n;
    idle = Math.max(idle, wall - user - system);
    writeSync(fd, render(user, system, idle, btime), 0, undefined, 0);
  };
  tick();
  const timer = setInterval(tick, 200);
  timer.unref();
  return {
    path,
    stop: () => {
      clearInterval(timer);
      try {
        closeSync(fd);
      } catch {}
    },
  };
}
