/**
 * Power agents: switch an idle, empty host off for consolidation, and on again when capacity is
 * wanted (Host spec.power). Unlike a fence agent, power-off here is for a host that answers and
 * runs nothing: gracefully where the agent can (IPMI soft-off, i.e. ACPI), hard only when the
 * graceful way does not finish in time.
 *
 * Contract: `powerOff` and `powerOn` resolve when the agent confirms the new state (or, for an
 * agent that cannot tell, when the request was sent) and reject with a message a person can act
 * on. `canPowerOff` says whether the agent can switch the host off at all (wake-on-LAN cannot).
 * - exec: argv (no shell), `{host}` and `{action}` (on | off | status) substituted; exit 0 means
 *   done; status output must say "on" or "off".
 * - ipmi: ipmitool -I lanplus chassis power soft|off|on|status, credentials from a Secret or file.
 * - sim: the simulator's power switch.
 * - fence-agents: a ClusterLabs fence_* program, options on its stdin (bmc/fence-agent-api.ts).
 * - wol: a wake-on-LAN magic packet to the MAC in `address` (UDP broadcast, port 9); on only.
 */
import { createSocket } from "node:dgram";
import { setTimeout as sleep } from "node:timers/promises";
import type { Host, PowerSpec } from "../../api/types.js";
import { switchByFenceAgent } from "../bmc/fence-agent-api.js";
import {
  bmcCredentials,
  bmcName,
  type IpmiTarget,
  ipmitoolCommand,
  optionalCredentials,
  type PowerSwitch,
  type ReadSecret,
  runCommand,
  switchByExec,
} from "../bmc/switch.js";

export interface PowerAgent {
  readonly kind: PowerSpec["agent"];
  readonly canPowerOff: boolean;
  powerOff(host: string, signal: AbortSignal): Promise<void>;
  powerOn(host: string, signal: AbortSignal): Promise<void>;
}

export class PowerError extends Error {
  constructor(
    readonly host: string,
    readonly agent: string,
    message: string,
  ) {
    super(`powering ${host} with ${agent}: ${message}`);
    this.name = "PowerError";
  }
}

export class ExecPowerAgent implements PowerAgent {
  readonly kind = "exec" as const;
  readonly canPowerOff = true;

  constructor(
    private readonly command: string[],
    private readonly timeoutMs = 60_000,
  ) {}

  private async act(host: string, action: "on" | "off", signal: AbortSignal): Promise<void> {
    try {
      await switchByExec(this.command, host, action, this.timeoutMs, signal);
    } catch (e) {
      throw new PowerError(host, "exec", (e as Error).message);
    }
  }

  powerOff(host: string, signal: AbortSignal): Promise<void> {
    return this.act(host, "off", signal);
  }

  powerOn(host: string, signal: AbortSignal): Promise<void> {
    return this.act(host, "on", signal);
  }
}

export class IpmiPowerAgent implements PowerAgent {
  readonly kind = "ipmi" as const;
  readonly canPowerOff = true;

  constructor(
    private readonly bmc: IpmiTarget,
    private readonly credentials: () => Promise<{ username: string; password: string }>,
    private readonly timeoutMs = 120_000,
  ) {}

  private async ipmi(args: string[], signal: AbortSignal): Promise<{ code: number | null; out: string }> {
    const { argv, env } = ipmitoolCommand(this.bmc, await this.credentials(), args);
    return runCommand(argv, 30_000, signal, env);
  }

  private async waitFor(state: "on" | "off", deadline: number, signal: AbortSignal): Promise<boolean> {
    while (Date.now() < deadline) {
      const st = await this.ipmi(["status"], signal);
      if (st.code === 0 && new RegExp(`is ${state}`, "i").test(st.out)) return true;
      await sleep(2_000, undefined, { signal });
    }
    return false;
  }

  async powerOff(host: string, signal: AbortSignal): Promise<void> {
    const soft = await this.ipmi(["soft"], signal);
    if (soft.code !== 0)
      throw new PowerError(host, "ipmi", `${bmcName(this.bmc)}: ${soft.out || `exit ${soft.code}`}`);
    if (await this.waitFor("off", Date.now() + this.timeoutMs, signal)) return;
    // The host's OS did not shut down in time: it runs nothing of ours, so switch it off.
    const hard = await this.ipmi(["off"], signal);
    if (hard.code !== 0 || !(await this.waitFor("off", Date.now() + 30_000, signal)))
      throw new PowerError(host, "ipmi", `${bmcName(this.bmc)} never reported the chassis off`);
  }

  async powerOn(host: string, signal: AbortSignal): Promise<void> {
    const on = await this.ipmi(["on"], signal);
    if (on.code !== 0)
      throw new PowerError(host, "ipmi", `${bmcName(this.bmc)}: ${on.out || `exit ${on.code}`}`);
    if (!(await this.waitFor("on", Date.now() + 60_000, signal)))
      throw new PowerError(host, "ipmi", `${bmcName(this.bmc)} never reported the chassis on`);
  }
}

/** A ClusterLabs fence_* program (bmc/fence-agent-api.ts): `on`/`off`, then `status` must agree. */
export class FenceAgentsPowerAgent implements PowerAgent {
  readonly kind = "fence-agents" as const;
  readonly canPowerOff = true;

  constructor(
    private readonly program: string,
    private readonly options: Record<string, string>,
    private readonly credentials: () => Promise<{ username: string; password: string } | undefined>,
    private readonly timeoutMs = 120_000,
  ) {}

  private async act(host: string, action: "on" | "off", signal: AbortSignal): Promise<void> {
    try {
      const credentials = await this.credentials();
      await switchByFenceAgent(
        { program: this.program, options: this.options, ...(credentials ? { credentials } : {}) },
        action,
        this.timeoutMs,
        signal,
      );
    } catch (e) {
      throw new PowerError(host, this.program, (e as Error).message);
    }
  }

  powerOff(host: string, signal: AbortSignal): Promise<void> {
    return this.act(host, "off", signal);
  }

  powerOn(host: string, signal: AbortSignal): Promise<void> {
    return this.act(host, "on", signal);
  }
}

export class SimPowerAgent implements PowerAgent {
  readonly kind = "sim" as const;
  readonly canPowerOff = true;

  constructor(
    private readonly power: PowerSwitch & { powerOn(host: string): void },
    private readonly simHost: string,
  ) {}

  async powerOff(host: string): Promise<void> {
    if (this.switch(host, () => this.power.powerOff(this.simHost)) !== "off")
      throw new PowerError(host, "sim", "still on");
  }

  async powerOn(host: string): Promise<void> {
    if (this.switch(host, () => this.power.powerOn(this.simHost)) !== "on")
      throw new PowerError(host, "sim", "still off");
  }

  /** Flip the switch and read it back; a BMC that does not answer is a PowerError like ipmitool's. */
  private switch(host: string, flip: () => void): "on" | "off" {
    try {
      flip();
      return this.power.powerStatus(this.simHost);
    } catch (e) {
      throw new PowerError(host, "sim", (e as Error).message);
    }
  }
}

/** A wake-on-LAN magic packet: 6 x 0xff, then the MAC 16 times. */
export function magicPacket(mac: string): Buffer {
  const hex = mac.replace(/[:-]/g, "");
  if (!/^[0-9a-fA-F]{12}$/.test(hex)) throw new Error(`not a MAC address: ${mac}`);
  const m = Buffer.from(hex, "hex");
  return Buffer.concat([Buffer.alloc(6, 0xff), ...Array.from({ length: 16 }, () => m)]);
}

export class WolPowerAgent implements PowerAgent {
  readonly kind = "wol" as const;
  readonly canPowerOff = false;

  constructor(
    private readonly mac: string,
    private readonly target: { address: string; port: number } = { address: "255.255.255.255", port: 9 },
  ) {}

  async powerOff(host: string): Promise<void> {
    throw new PowerError(host, "wol", "wake-on-LAN can only power a host on");
  }

  async powerOn(host: string): Promise<void> {
    let packet: Buffer;
    try {
      packet = magicPacket(this.mac);
    } catch (e) {
      throw new PowerError(host, "wol", (e as Error).message);
    }
    const sock = createSocket("udp4");
    try {
      await new Promise<void>((resolve, reject) => {
        sock.once("error", reject);
        sock.bind(() => {
          sock.setBroadcast(true);
          sock.send(packet, this.target.port, this.target.address, (e) => (e ? reject(e) : resolve()));
        });
      });
    } catch (e) {
      throw new PowerError(host, "wol", (e as Error).message);
    } finally {
      sock.close();
    }
  }
}

export type PowerAgentFactory = (host: Host) => PowerAgent | undefined;

export interface PowerFactoryOptions {
  readSecret: ReadSecret;
  simPower?: PowerSwitch & { powerOn(host: string): void };
  simHostName?: (host: Host) => string;
  /** Where magic packets go (tests: loopback). */
  wolTarget?: { address: string; port: number };
}

export function createPowerAgentFactory(opts: PowerFactoryOptions): PowerAgentFactory {
  return (host) => {
    const p = host.spec.power;
    if (!p) return undefined;
    const timeoutMs = (p.timeoutSeconds ?? 120) * 1000;
    switch (p.agent) {
      case "exec":
        return new ExecPowerAgent(p.command ?? [], timeoutMs);
      case "ipmi":
        return new IpmiPowerAgent(
          {
            address: p.address ?? "",
            ...(p.port !== undefined ? { port: p.port } : {}),
            ...(p.cipherSuite !== undefined ? { cipherSuite: p.cipherSuite } : {}),
          },
          () => bmcCredentials(p, `host ${host.metadata.name}: ipmi power`, opts.readSecret),
          timeoutMs,
        );
      case "sim":
        if (!opts.simPower) return undefined;
        return new SimPowerAgent(opts.simPower, opts.simHostName?.(host) ?? host.metadata.name);
      case "wol":
        return new WolPowerAgent(p.address ?? "", opts.wolTarget);
      case "fence-agents":
        return new FenceAgentsPowerAgent(
          p.program ?? "",
          p.options ?? {},
          () => optionalCredentials(p, `host ${host.metadata.name}: ${p.program} power`, opts.readSecret),
          timeoutMs,
        );
    }
  };
}
