/**
 * Fence agents by Host spec: the factory the CLI and the Runtime wire into the Host reconciler.
 */
import { readFile } from "node:fs/promises";
import type { Host } from "../../api/types.js";
import {
  ExecFenceAgent,
  type FenceAgent,
  IpmiFenceAgent,
  ManualFenceAgent,
  type PowerSwitch,
  SimFenceAgent,
} from "./agents.js";
import { FenceAgentsFenceAgent } from "./fence-agents.js";

export * from "./agents.js";
export * from "./fence-agents.js";

export type FenceAgentFactory = (host: Host) => FenceAgent | undefined;

export interface FenceFactoryOptions {
  /** Credentials from a Secret (Kubernetes) or the standalone secrets dir. */
  readSecret: (ref: { name: string; namespace?: string }) => Promise<Record<string, string>>;
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

/** A BMC's username and password, from a Secret or a credentials file (fencing and power). */
export async function bmcCredentials(
  spec: { credentialsSecretRef?: { name: string; namespace?: string }; credentialsFile?: string },
  what: string,
  readSecret: FenceFactoryOptions["readSecret"],
): Promise<{ username: string; password: string }> {
  let s: Record<string, string>;
  if (spec.credentialsSecretRef) s = await readSecret(spec.credentialsSecretRef);
  else if (spec.credentialsFile) s = parseCredentialsFile(await readFile(spec.credentialsFile, "utf8"));
  else throw new Error(`${what} needs credentialsSecretRef or credentialsFile`);
  return { username: s.username ?? "", password: s.password ?? "" };
}

/** Credentials when the spec names some (a fence-agents program may need none). */
export async function optionalCredentials(
  spec: { credentialsSecretRef?: { name: string; namespace?: string }; credentialsFile?: string },
  what: string,
  readSecret: FenceFactoryOptions["readSecret"],
): Promise<{ username: string; password: string } | undefined> {
  if (!spec.credentialsSecretRef && !spec.credentialsFile) return undefined;
  return bmcCredentials(spec, what, readSecret);
}

/** A credentials file: JSON (`{"username": ..., "password": ...}`) or `key=value` lines. */
export function parseCredentialsFile(text: string): Record<string, string> {
  const t = text.trim();
  if (t.startsWith("{")) return JSON.parse(t) as Record<string, string>;
  const out: Record<string, string> = {};
  for (const line of t.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0 && !line.trimStart().startsWith("#")) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}
