/**
 * Event-loop stall accounting, in monotonic time (performance.now): when was this process unable
 * to run its callbacks? A blocked event loop (a long synchronous job), a process descheduled on a
 * busy core, SIGSTOP, or the controller's own machine paused all look the same from inside: a
 * timer fires late. While the loop is stalled, replies that arrived sit unread in their sockets,
 * so a deadline that "passed" during a stall says nothing about whoever was supposed to answer.
 *
 * Contract:
 * - `stalledMs(from, to)` is the time within [from, to] during which the loop was observed not to
 *   run, beyond a small jitter allowance; it first accounts for a stall that is only now ending
 *   (a caller woken late after a stall sees it, even before the monitor's own tick has run).
 * - One monitor per process (the event loop is per process): `loopStalls()`. Its timer is unref'd
 *   and never keeps the process alive.
 * - Resolution is one tick (TICK_MS); stalls older than HISTORY_MS are forgotten.
 */

/** How often the loop is looked at. */
export const TICK_MS = 50;
/** Lateness up to this much is ordinary timer jitter, not a stall. */
export const JITTER_MS = 20;
const HISTORY_MS = 10 * 60_000;
const MAX_STALLS = 4096;

export interface Stall {
  from: number;
  to: number;
}

export class LoopStallMonitor {
  private lastSeen: number;
  private readonly stalls: Stall[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly clock: () => number = () => performance.now()) {
    this.lastSeen = clock();
  }

  /** Start looking at the loop every TICK_MS (idempotent). */
  start(): this {
    if (this.timer) return this;
    this.lastSeen = this.clock();
    this.timer = setInterval(() => this.observe(), TICK_MS);
    this.timer.unref();
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * The loop is running now. A gap since it was last seen running longer than one tick plus the
   * jitter allowance is recorded as a stall (the part beyond the tick the loop was due back at).
   */
  observe(now = this.clock()): void {
    const due = this.lastSeen + TICK_MS;
    if (now - due > JITTER_MS) this.record({ from: due, to: now });
    if (now > this.lastSeen) this.lastSeen = now;
  }

  /** Record a stall measured elsewhere (tests; a timer of known due time found late). */
  record(s: Stall): void {
    const last = this.stalls[this.stalls.length - 1];
    if (last && s.from <= last.to) last.to = Math.max(last.to, s.to);
    else this.stalls.push({ ...s });
    const horizon = s.to - HISTORY_MS;
    while (this.stalls.length > MAX_STALLS || (this.stalls[0] && this.stalls[0].to < horizon))
      this.stalls.shift();
  }

  /** How long the loop was stalled within [from, to] (a stall ending now included). */
  stalledMs(from: number, to = this.clock()): number {
    if (this.timer) this.observe();
    let sum = 0;
    for (const s of this.stalls) {
      const a = Math.max(from, s.from);
      const b = Math.min(to, s.to);
      if (b > a) sum += b - a;
    }
    return sum;
  }
}

let shared: LoopStallMonitor | undefined;

/** This process's monitor, started on first use. */
export function loopStalls(): LoopStallMonitor {
  shared ??= new LoopStallMonitor().start();
  return shared;
}

/** Let queued I/O (replies sitting in sockets) be processed once: the poll phase runs first. */
export function yieldToIO(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Whether `p` resolves within `ms`: true if it did; false if it is still pending once the window
 * has passed and queued I/O was processed once (a reply that arrived while the loop was stalled is
 * read before the window is judged); rejects as `p` does before that. `p` is never left with an
 * unhandled rejection.
 */
export function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      void yieldToIO().then(() => {
        if (done) return;
        done = true;
        resolve(false);
      });
    }, ms);
    p.then(
      () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(true);
      },
      (e: unknown) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
