/**
 * A jittery link for a test-bed host, where the kernel has no sch_netem: the delay line of
 * test/support/delayline (Go, built once and cached outside the work tree by its build.sh) runs
 * inside the host's network namespace, owns a TUN device there, and the host's route to the
 * controller's address is pointed into it. Every packet the host sends the controller — TCP
 * segments, the kernel's SYN-ACKs and RSTs, ICMP — leaves through the host's real veth after
 * `delayMs ± jitterMs` (uniform, per packet, as `tc netem delay D J` does). The other direction
 * is untouched, like netem on the host's egress.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const BUILD = join(import.meta.dirname, "..", "delayline", "build.sh");
let built: string | undefined;

/** The delay line's binary (built on first use; a missing Go toolchain is an error, never a skip). */
export function delayLineBinary(): string {
  built ??= execFileSync("bash", [BUILD], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim();
  return built;
}

export interface DelayLine {
  pid: number;
  /** Restore the direct route, let what is in flight arrive, end the delay line (by pid). */
  stop(): Promise<void>;
}

export async function startDelayLine(o: {
  netns: string;
  /** The host's own interface inside its namespace (the veth end). */
  outIf: string;
  /** The bridge the veth is a port of (its MAC is the frames' destination). */
  bridge: string;
  /** The controller's address as the host sees it (the bridge's). */
  towards: string;
  tun: string;
  delayMs: number;
  jitterMs: number;
}): Promise<DelayLine> {
  const bin = delayLineBinary();
  const mac = readFileSync(`/sys/class/net/${o.bridge}/address`, "utf8").trim();
  const child: ChildProcess = spawn(
    "ip",
    [
      "netns",
      "exec",
      o.netns,
      bin,
      "-tun",
      o.tun,
      "-out",
      o.outIf,
      "-dst-mac",
      mac,
      "-delay",
      String(o.delayMs),
      "-jitter",
      String(o.jitterMs),
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stderr = "";
  child.stderr?.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`delay line did not start: ${stderr}`)), 10_000);
    child.stdout?.on("data", (b: Buffer) => {
      if (b.toString().includes("ready")) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(t);
      reject(new Error(`delay line exited (${code}): ${stderr}`));
    });
  });
  const ip = (...args: string[]) => execFileSync("ip", ["-n", o.netns, ...args], { stdio: "ignore" });
  ip("link", "set", o.tun, "up");
  ip("route", "replace", `${o.towards}/32`, "dev", o.tun);
  const pid = child.pid ?? 0;
  return {
    pid,
    stop: async () => {
      try {
        ip("route", "del", `${o.towards}/32`, "dev", o.tun);
      } catch {
        // The namespace is gone (the bed was torn down) or the route with it.
      }
      await sleep(o.delayMs + o.jitterMs + 50);
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        for (let i = 0; i < 40 && child.exitCode === null; i++) await sleep(25);
      }
    },
  };
}
