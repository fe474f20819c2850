/**
 * Fence agents: make sure a host that stopped answering is really off before its VMs start
 * elsewhere (never two running copies).
 *
 * Contract: `fence` resolves only when power-off is confirmed, and rejects otherwise (a timeout,
 * an exit code, an unreachable BMC) with a message a person can act on. Every agent honours an
 * AbortSignal and its own timeout.
 * - exec: runs an argv (no shell) with {host} and {action} substituted; exit 0 means done.
 *   `fence` runs action "off" then "status" and wants "off" in the status output (or exit 0 for
 *   a status-less command when the off run succeeded).
 * - ipmi: ipmitool -I lanplus chassis power off / status, credentials from a Secret or a file
 *   (the password in ipmitool's environment, -E, never in its argv).
 * - fence-agents: a ClusterLabs fence_* program (fence-agents.ts): options on its stdin, `off`,
 *   then `status` must say off.
 * - sim: the simulator's power switch.
 * - manual: waits for an operator (the `virtwarden.io/fence-confirmed` annotation on the Host:
 *   `kubectl annotate`, or in the Host's manifest in standalone mode); never confirms by itself.
 */
import { spawn } from "node:child_process";
import { FENCE_CONFIRMED_ANNOTATION } from "../../api/annotations.js";
import type { FencingSpec } from "../../api/types.js";
import { PROGRAMS } from "../programs.js";

export interface FenceAgent {
  readonly kind: FencingSpec["agent"];
  fence(host: string, signal: AbortSignal): Promise<void>;
}

export class FenceError extends Error {
  constructor(
    readonly host: string,
    readonly agent: string,
    message: string,
  ) {
    super(`fencing ${host} with ${agent}: ${message}`);
    this.name = "FenceError";
  }
}

/** Run an argv (no shell) with a timeout and an AbortSignal; its exit code and output. */
export function runCommand(
  argv: string[],
  timeoutMs: number,
  signal: AbortSignal,
  env?: Record<string, string>,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    if (!cmd) return reject(new Error("empty command"));
    const child = spawn(cmd, args, {
      stdio: ["ignore", "pipe", "pipe"],
      ...(env ? { env: { ...process.env, ...env } } : {}),
    });
    let out = "";
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString();
    });
    child.stderr.on("data", (b: Buffer) => {
      out += b.toString();
    });
    const kill = () => child.kill("SIGKILL");
    const timer = setTimeout(() => {
      kill();
      reject(new Error(`${cmd} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    signal.addEventListener("abort", kill, { once: true });
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", kill);
      resolve({ code, out: out.trim() });
    });
  });
}

export class ExecFenceAgent implements FenceAgent {
  readonly kind = "exec" as const;

  constructor(
    private readonly command: string[],
    private readonly timeoutMs = 30_000,
  ) {}

  async fence(host: string, signal: AbortSignal): Promise<void> {
    try {
      await switchByExec(this.command, host, "off", this.timeoutMs, signal);
    } catch (e) {
      throw new FenceError(host, "exec", (e as Error).message);
    }
  }
}

/**
 * Switch a host by an argv (no shell), `{host}` and `{action}` substituted: exit 0 means done;
 * when the argv takes an `{action}`, its `status` must then say the new state ("on" | "off").
 * Shared by the exec fence agent (off) and the exec power agent (on, off).
 */
export async function switchByExec(
  command: string[],
  host: string,
  action: "on" | "off",
  timeoutMs: number,
  signal: AbortSignal,
): Promise<void> {
  const argv = (a: string) => command.map((x) => x.replaceAll("{host}", host).replaceAll("{action}", a));
  const r = await runCommand(argv(action), timeoutMs, signal);
  if (r.code !== 0)
    throw new Error(`"${argv(action).join(" ")}" exited with ${r.code}${r.out ? `: ${r.out}` : ""}`);
  if (!command.some((x) => x.includes("{action}"))) return;
  const st = await runCommand(argv("status"), timeoutMs, signal).catch((e: unknown) => {
    throw new Error(`status: ${(e as Error).message}`);
  });
  if (st.code !== 0 || !new RegExp(`\\b${action}\\b`, "i").test(st.out))
    throw new Error(`power-${action} not confirmed: status said "${st.out}" (exit ${st.code})`);
}

/** A BMC as ipmitool reaches it over the LAN (IPMI v2.0, RMCP+). */
export interface IpmiTarget {
  address: string;
  /** UDP port (ipmitool -p); ipmitool's default is 623. */
  port?: number;
  /** RMCP+ cipher suite (ipmitool -C); unset, ipmitool asks the BMC for its list. */
  cipherSuite?: number;
}

/**
 * ipmitool's argv for `chassis power ACTION…`, and its environment: `-E` takes the password from
 * IPMI_PASSWORD, never from argv (argv is visible to every user in ps and /proc). Shared by the
 * ipmi fence agent and the ipmi power agent.
 */
export function ipmitoolCommand(
  bmc: IpmiTarget,
  credentials: { username: string; password: string },
  args: string[],
): { argv: string[]; env: Record<string, string> } {
  const argv = [PROGRAMS.ipmitool.program, "-I", "lanplus", "-H", bmc.address];
  if (bmc.port !== undefined) argv.push("-p", String(bmc.port));
  if (bmc.cipherSuite !== undefined) argv.push("-C", String(bmc.cipherSuite));
  argv.push("-U", credentials.username, "-E", "chassis", "power", ...args);
  return { argv, env: { IPMI_PASSWORD: credentials.password } };
}

/** "BMC 10.0.0.5" or "BMC 127.0.0.1:16623", for messages. */
export function bmcName(bmc: IpmiTarget): string {
  return `BMC ${bmc.address}${bmc.port !== undefined ? `:${bmc.port}` : ""}`;
}

export class IpmiFenceAgent implements FenceAgent {
  readonly kind = "ipmi" as const;

  constructor(
    private readonly bmc: IpmiTarget,
    private readonly credentials: () => Promise<{ username: string; password: string }>,
    private readonly timeoutMs = 30_000,
  ) {}

  async fence(host: string, signal: AbortSignal): Promise<void> {
    const creds = await this.credentials();
    const ipmi = (action: string) => {
      const { argv, env } = ipmitoolCommand(this.bmc, creds, [action]);
      return runCommand(argv, this.timeoutMs, signal, env);
    };
    const off = await ipmi("off").catch((e: unknown) => {
      throw new FenceError(host, "ipmi", String((e as Error).message ?? e));
    });
    if (off.code !== 0)
      throw new FenceError(host, "ipmi", `${bmcName(this.bmc)}: ${off.out || `exit ${off.code}`}`);
    let last = "";
    for (let i = 0; i < 10; i++) {
      const st = await ipmi("status");
      if (st.code === 0 && /is off/i.test(st.out)) return;
      last = st.out || `exit ${st.code}`;
      await new Promise((r) => setTimeout(r, 1000));
    }
    throw new FenceError(
      host,
      "ipmi",
      `${bmcName(this.bmc)} never reported the chassis off (last status: ${last})`,
    );
  }
}

export interface PowerSwitch {
  powerOff(host: string): void;
  powerStatus(host: string): "on" | "off";
}

export class SimFenceAgent implements FenceAgent {
  readonly kind = "sim" as const;

  constructor(
    private readonly power: PowerSwitch,
    private readonly simHost: string,
  ) {}

  async fence(host: string): Promise<void> {
    let status: "on" | "off";
    try {
      this.power.powerOff(this.simHost);
      status = this.power.powerStatus(this.simHost);
    } catch (e) {
      throw new FenceError(host, "sim", (e as Error).message);
    }
    if (status !== "off") throw new FenceError(host, "sim", "still powered on");
  }
}

/** Never fences by itself: the Host reconciler treats the annotation as the confirmation. */
export class ManualFenceAgent implements FenceAgent {
  readonly kind = "manual" as const;

  async fence(host: string): Promise<void> {
    throw new FenceError(
      host,
      "manual",
      `waiting for an operator: power the host off, then annotate it: kubectl annotate host ${host} ${FENCE_CONFIRMED_ANNOTATION}=true (standalone: add that annotation to the Host's manifest)`,
    );
  }
}
