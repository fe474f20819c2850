/**
 * Fence agents by Host spec: the factory the CLI and the Runtime wire into the Host reconciler.
 */
import type { Host } from "../../api/types.js";
import { bmcCredentials, optionalCredentials, type PowerSwitch, type ReadSecret } from "../bmc/switch.js";
import {
  ExecFenceAgent,
  type FenceAgent,
  FenceAgentsFenceAgent,
  IpmiFenceAgent,
  ManualFenceAgent,
  SimFenceAgent,
} from "./agents.js";

export * from "./agents.js";

export type FenceAgentFactory = (host: Host) => FenceAgent | undefined;

export interface FenceFactoryOptions {
  /** Credentials from a Secret (Kubernetes) or the standalone secrets dir. */
  readSecret: ReadSecret;
  /** The simulator's power switch, for `agent: sim`. */
  simPower?: PowerSwitch;
  /** Map a Host to its simulated host name (URI sim://NAME, or the URI's host under --simulate). */
  simHostName?: (host: Host) => string;
}

export function createFenceAgentFactory(opts: FenceFactoryOptions): FenceAgentFactory {
  return (host) => {
    const f = host.spec.fencing;
    if (!f) return undefined;
    const timeoutMs = (f.timeoutSeconds ?? 30) * 1000;
    switch (f.agent) {
      case "exec":
        return new ExecFenceAgent(f.command ?? [], timeoutMs);
      case "ipmi":
        return new IpmiFenceAgent(
          {
            address: f.address ?? "",
            ...(f.port !== undefined ? { port: f.port } : {}),
            ...(f.cipherSuite !== undefined ? { cipherSuite: f.cipherSuite } : {}),
          },
          () => bmcCredentials(f, `host ${host.metadata.name}: ipmi fencing`, opts.readSecret),
          timeoutMs,
        );
      case "sim":
        if (!opts.simPower) return undefined;
        return new SimFenceAgent(opts.simPower, opts.simHostName?.(host) ?? host.metadata.name);
      case "manual":
        return new ManualFenceAgent();
      case "fence-agents":
        return new FenceAgentsFenceAgent(
          f.program ?? "",
          f.options ?? {},
          () => optionalCredentials(f, `host ${host.metadata.name}: ${f.program} fencing`, opts.readSecret),
          timeoutMs,
        );
    }
  };
}
