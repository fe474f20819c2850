/**
 * What fence agents (fence/) and power agents (power/) share: running a program without a shell,
 * switching a host by an exec argv or by ipmitool, the simulator's power switch, and a BMC's
 * credentials. Neither kind of agent imports the other; both import this.
 */
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { PROGRAMS } from "../programs.js";

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
/** The simulator's power switch, as the sim fence agent and the sim power agent drive it. */
export interface PowerSwitch {
  powerOff(host: string): void;
  powerStatus(host: string): "on" | "off";
}

/** Reads a Secret's data by reference (Kubernetes, or the standalone secrets dir). */
export type ReadSecret = (ref: { name: string; namespace?: string }) => Promise<Record<string, string>>;

/** A BMC's username and password, from a Secret or a credentials file (fencing and power). */
export async function bmcCredentials(
  spec: { credentialsSecretRef?: { name: string; namespace?: string }; credentialsFile?: string },
  what: string,
  readSecret: ReadSecret,
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
  readSecret: ReadSecret,
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
