/**
 * `virtwarden run` as its own process (standalone mode: a manifests directory and a state
 * directory), SIGKILLed by pid and started again on the same state directory. A restart waits for
 * the killed process to be gone (its exit reaped), so two controllers never share the state dir.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dirname, "..", "..", "..");
/**
 * Whose `virtwarden run` is started: this checkout, or VW_CHAOS_CONTROLLER_ROOT (e.g. an exported
 * commit, `git archive HEAD | tar -x -C DIR` with node_modules linked, to test a fixed revision
 * while the working tree changes).
 */
export const CONTROLLER_ROOT = process.env.VW_CHAOS_CONTROLLER_ROOT ?? ROOT;

export interface ControllerOptions {
  manifestDir: string;
  stateDir: string;
  logFile: string;
  /** Extra `virtwarden run` flags (e.g. --consolidate-interval). */
  args?: string[];
  /**
   * The whole command line instead (after `main.ts`), e.g. `run --kubernetes --kubeconfig F`:
   * manifestDir and stateDir are then unused.
   */
  argv?: string[];
}

/** Controllers alive now: ended (by pid) when this process exits, whatever ends it. */
const live = new Set<number>();
let exitHook = false;
function installExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.once("exit", () => {
    for (const pid of live)
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
  });
}

export class Controller {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private readonly log: WriteStream;
  starts = 0;
  kills = 0;
  /** Exits nobody asked for (a crash): each is reported as a failure of the run. */
  readonly crashes: string[] = [];

  constructor(private readonly opts: ControllerOptions) {
    this.log = createWriteStream(opts.logFile, { flags: "a" });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }
  get running(): boolean {
    return this.child !== undefined;
  }

  /** When the running process was started (epoch ms): a view.json older than this is its predecessor's. */
  startedAt = 0;

  start(): void {
    if (this.child) return;
    this.startedAt = Date.now();
    const logging = ["--log-format", "json", "--log-level", process.env.VW_CHAOS_LOG ?? "info"];
    const argv = [
      "--import",
      "tsx",
      join(CONTROLLER_ROOT, "src/cli/main.ts"),
      ...(this.opts.argv
        ? [...this.opts.argv, ...logging]
        : [
            "run",
            this.opts.manifestDir,
            "--state-dir",
            this.opts.stateDir,
            "--metrics-addr",
            "127.0.0.1:0",
            ...logging,
            "--unsafe-migration",
          ]),
      ...(this.opts.args ?? []),
    ];
    const child = spawn(process.execPath, argv, { cwd: CONTROLLER_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    this.starts++;
    installExitHook();
    live.add(child.pid as number);
    this.log.write(`\n=== start #${this.starts} pid ${child.pid} at ${new Date().toISOString()}\n`);
    child.stdout?.pipe(this.log, { end: false });
    child.stderr?.pipe(this.log, { end: false });
    let killed = false;
    (child as ChildProcess & { chaosKilled?: () => void }).chaosKilled = () => {
      killed = true;
    };
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.log.write(
          `=== pid ${child.pid} exited code ${code} signal ${signal} at ${new Date().toISOString()}\n`,
        );
        if (!killed) this.crashes.push(`pid ${child.pid} exited by itself: code ${code} signal ${signal}`);
        live.delete(child.pid as number);
        if (this.child === child) this.child = undefined;
        resolve();
      });
    });
    this.child = child;
  }

  /** SIGKILL, and wait until the process is gone. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    (child as ChildProcess & { chaosKilled?: () => void }).chaosKilled?.();
    this.kills++;
    this.log.write(`=== SIGKILL pid ${child.pid} at ${new Date().toISOString()}\n`);
    try {
      process.kill(child.pid as number, "SIGKILL");
    } catch {}
    await this.exited;
  }

  /** Stop for good at the end of a scenario (SIGKILL too: nothing depends on a clean stop). */
  async stop(): Promise<void> {
    const child = this.child;
    if (child) {
      (child as ChildProcess & { chaosKilled?: () => void }).chaosKilled?.();
      try {
        process.kill(child.pid as number, "SIGKILL");
      } catch {}
      await this.exited;
    }
    await new Promise<void>((r) => this.log.end(() => r()));
  }
}
