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
 * - ipmi: ipmitool -I lanplus chassis power off / status, credentials from a Secret or a file.
 * - sim: the simulator's power switch.
 * - manual: waits for an operator (`virtwarden.io/fence-confirmed` annotation on the Host, or the
 *   CLI, which sets it); never confirms by itself.
 */
import { spawn } from "node:child_process";
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

export class IpmiFenceAgent implements FenceAgent {
  readonly kind = "ipmi" as const;

  constructor(
    private readonly address: string,
    private readonly credentials: () => Promise<{ username: string; password: string }>,
    private readonly timeoutMs = 30_000,
  ) {}

  async fence(host: string, signal: AbortSignal): Promise<void> {
    const { username, password } = await this.credentials();
    // -E: the password comes from IPMI_PASSWORD, never from argv (visible to every user in ps).
    const base = [PROGRAMS.ipmitool.program, "-I", "lanplus", "-H", this.address, "-U", username, "-E"];
    const env = { IPMI_PASSWORD: password };
    const off = await runCommand([...base, "chassis", "power", "off"], this.timeoutMs, signal, env).catch(
      (e: unknown) => {
        throw new FenceError(host, "ipmi", String((e as Error).message ?? e));
      },
    );
    if (off.code !== 0)
      throw new FenceError(host, "ipmi", `BMC ${this.address}: ${off.out || `exit ${off.code}`}`);
    for (let i = 0; i < 10; i++) {
      const st = await runCommand([...base, "chassis", "power", "status"], this.timeoutMs, signal, env);
      if (st.code === 0 && /is off/i.test(st.out)) return;
      await new Promise((r) => setTimeout(r, 1000));
    }
    throw new FenceError(host, "ipmi", `BMC ${this.address} never reported the chassis off`);
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
    try {
      this.power.powerOff(this.simHost);
    } catch (e) {
      throw new FenceError(host, "sim", (e as Error).message);
    }
    if (this.power.powerStatus(this.simHost) !== "off") throw new FenceError(host, "sim", "still powered on");
  }
}

/** Never fences by itself: the Host reconciler treats the annotation as the confirmation. */
export class ManualFenceAgent implements FenceAgent {
  readonly kind = "manual" as const;

  async fence(host: string): Promise<void> {
    throw new FenceError(
      host,
      "manual",
      `waiting for an operator: power the host off, then annotate it: kubectl annotate host ${host} virtwarden.io/fence-confirmed=true (or \`virtwarden confirm-fence ${host}\`)`,
    );
  }
}

export const FENCE_CONFIRMED_ANNOTATION = "virtwarden.io/fence-confirmed";
