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
 * - fence-agents: a ClusterLabs fence_* program (bmc/fence-agent-api.ts): options on its stdin, `off`,
 *   then `status` must say off.
 * - sim: the simulator's power switch.
 * - manual: waits for an operator (the `virtwarden.io/fence-confirmed` annotation on the Host:
 *   `kubectl annotate`, or in the Host's manifest in standalone mode); never confirms by itself.
 */
import { FENCE_CONFIRMED_ANNOTATION } from "../../api/annotations.js";
import type { FencingSpec } from "../../api/types.js";
import { switchByFenceAgent } from "../bmc/fence-agent-api.js";
import {
  bmcName,
  type IpmiTarget,
  ipmitoolCommand,
  type PowerSwitch,
  runCommand,
  switchByExec,
} from "../bmc/switch.js";

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

export class FenceAgentsFenceAgent implements FenceAgent {
  readonly kind = "fence-agents" as const;

  constructor(
    private readonly program: string,
    private readonly options: Record<string, string>,
    private readonly credentials: () => Promise<{ username: string; password: string } | undefined>,
    private readonly timeoutMs = 30_000,
  ) {}

  async fence(host: string, signal: AbortSignal): Promise<void> {
    try {
      const credentials = await this.credentials();
      await switchByFenceAgent(
        { program: this.program, options: this.options, ...(credentials ? { credentials } : {}) },
        "off",
        this.timeoutMs,
        signal,
      );
    } catch (e) {
      throw new FenceError(host, this.program, (e as Error).message);
    }
  }
}
