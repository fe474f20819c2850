/**
 * The fence-agents kind, for fence agents and power agents alike: run a ClusterLabs fence-agents
 * program (fence_ipmilan, fence_redfish, fence_apc, … — what Pacemaker users already configure)
 * through its documented stdin interface (FenceAgentAPI): `key=value` lines on stdin, one of them `action=…`, and nothing in argv, so no
 * option — least of all the password — is visible in ps or /proc/PID/cmdline.
 *
 * Contract:
 * - Only a program named `fence_[a-z0-9_]+` is run, found on the controller's PATH (never a path
 *   or a shell); the argv is that absolute path alone.
 * - `off` must exit 0, then `status` must exit 2 (FenceAgentAPI: 0 on, 1 error, 2 off); `on`
 *   must exit 0, then `status` must exit 0. Anything else rejects, with the program's output.
 * - The password and the username come from the Host's credentials (Secret or file), never from
 *   `options`; whatever the program prints is redacted of the password before it becomes an
 *   error message (and so a log line, an event or a condition).
 * - A run that outlasts its timeout, or is aborted, is killed with its whole process group (the
 *   program runs ipmitool, ssh, … as children), by the group's id.
 *
 * What the program does with the password is out of virtwarden's hands: fence_ipmilan (4.12) hands
 * it to ipmitool as `-P PASSWORD`, readable in /proc/PID/cmdline until ipmitool overwrites it with
 * X's (test/providers/fence/bmc.test.ts's sampler catches it). Where that matters, use the ipmi
 * agent (fence/agents.ts), which never puts it in any argv (ipmitool -E).
 */
import { spawn } from "node:child_process";
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, join } from "node:path";

export const FENCE_AGENT_PROGRAM = /^fence_[a-z0-9_]+$/;
const OPTION_NAME = /^[a-z][a-z0-9_]*$/;
/** Set by virtwarden (action) or taken from the credentials (the password), never from options. */
export const RESERVED_FENCE_OPTIONS: readonly string[] = [
  "action",
  "password",
  "passwd",
  "password_script",
  "passwd_script",
];

/** The absolute path of a fence_* program on PATH; throws when the name is not one or is absent. */
export function resolveFenceProgram(name: string, path = process.env.PATH ?? ""): string {
  if (!FENCE_AGENT_PROGRAM.test(name))
    throw new Error(`"${name}" is not a fence-agents program name (fence_[a-z0-9_]+)`);
  for (const dir of path.split(delimiter)) {
    if (!dir || !isAbsolute(dir)) continue; // a relative PATH entry would depend on the cwd
    const p = join(dir, name);
    try {
      if (!statSync(p).isFile()) continue;
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  throw new Error(`${name} is not on PATH (${path}): install the fence-agents package`);
}

export interface FenceAgentCall {
  program: string;
  options: Record<string, string>;
  credentials?: { username: string; password: string };
}

/** The stdin a fence agent reads: `key=value` lines; refuses what could smuggle in a line. */
export function fenceAgentInput(call: FenceAgentCall, action: string): string {
  const opts: Record<string, string> = { ...call.options };
  for (const k of Object.keys(opts)) {
    if (!OPTION_NAME.test(k)) throw new Error(`option "${k}" is not a fence-agents option name`);
    if (RESERVED_FENCE_OPTIONS.includes(k))
      throw new Error(`option "${k}" is not allowed: the password comes from the credentials`);
  }
  if (call.credentials?.username) opts.username = call.credentials.username;
  if (call.credentials?.password) opts.password = call.credentials.password;
  const lines = [`action=${action}`];
  for (const [k, v] of Object.entries(opts)) {
    if (/[\r\n]/.test(v)) throw new Error(`option "${k}": a value cannot span lines`);
    lines.push(`${k}=${v}`);
  }
  return `${lines.join("\n")}\n`;
}

/** Every occurrence of each secret replaced; a secret of fewer than 3 characters left alone. */
export function redact(text: string, secrets: (string | undefined)[]): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 3) out = out.split(s).join("[redacted]");
  return out;
}

/**
 * Run a fence agent once with `action`: its exit code and (redacted) output. Rejects on a
 * timeout or an abort, after killing the program's process group.
 */
export function runFenceAgent(
  call: FenceAgentCall,
  action: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    let input: string;
    let path: string;
    try {
      path = resolveFenceProgram(call.program);
      input = fenceAgentInput(call, action);
    } catch (e) {
      return reject(e);
    }
    const secrets = [call.credentials?.password];
    // Its own process group, so that a timeout ends what it started too (ipmitool, ssh, …).
    const child = spawn(path, [], { stdio: ["pipe", "pipe", "pipe"], detached: true });
    let out = "";
    const collect = (b: Buffer) => {
      out += b.toString();
    };
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    const killGroup = () => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    };
    let failed: Error | undefined;
    const timer = setTimeout(() => {
      failed = new Error(`${call.program} action=${action} did not finish within ${timeoutMs} ms`);
      killGroup();
    }, timeoutMs);
    const onAbort = () => {
      failed = new Error(`${call.program} action=${action} aborted`);
      killGroup();
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    child.stdin.on("error", () => undefined); // a program that exits before reading its input
    child.stdin.end(input);
    child.once("error", (e) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      reject(e);
    });
    child.once("close", (code) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      if (failed) return reject(failed);
      resolve({ code, out: redact(out.trim(), secrets) });
    });
  });
}

/** FenceAgentAPI status exit codes. */
const STATUS = { 0: "on", 2: "off" } as Record<number, "on" | "off">;

/**
 * `action` (on | off), then `status` must report that state. The error message carries the
 * program's (redacted) output and exit codes.
 */
export async function switchByFenceAgent(
  call: FenceAgentCall,
  action: "on" | "off",
  timeoutMs: number,
  signal: AbortSignal,
): Promise<void> {
  const r = await runFenceAgent(call, action, timeoutMs, signal);
  if (r.code !== 0)
    throw new Error(
      `${call.program} action=${action} exited with ${r.code}${r.out ? `: ${lastLines(r.out)}` : ""}`,
    );
  const st = await runFenceAgent(call, "status", timeoutMs, signal);
  const state = st.code === null ? undefined : STATUS[st.code];
  if (state !== action)
    throw new Error(
      `power-${action} not confirmed: ${call.program} action=status exited with ${st.code} (${state ?? "error"})${st.out ? `: ${lastLines(st.out)}` : ""}`,
    );
}

/** The end of a long output, where fence agents say what went wrong. */
function lastLines(out: string, n = 5): string {
  return out.split("\n").slice(-n).join("\n");
}
