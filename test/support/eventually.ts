/**
 * The one poll loop of the tests and the benchmarks: call `probe` until it returns a truthy value
 * and return that value; once the deadline has passed, throw a `NotReached` that names what was
 * awaited, how long it was given, and what the probe gave last (its value or its error), plus the
 * caller's `detail` (a log tail, a dump of the store).
 *
 * Contract:
 * - the probe runs at least once, and once more at or after the deadline, so a probe that turns
 *   true while the loop sleeps is never reported as missed;
 * - done means truthy: `false`, `undefined`, `null`, `0` and `""` all mean "not yet";
 * - a probe that throws fails the wait at once with its own error, unless `retryErrors` is set:
 *   then a throw means "not yet" (a daemon not listening yet) and the last one is reported.
 *
 * No vitest import: bench/ (which runs without vitest) polls with this too, through bench/env.ts.
 */
import { inspect } from "node:util";

export interface PollOptions {
  /** Give up after this long. 15 s unless given. */
  timeoutMs?: number;
  /** Sleep this long between probes. 10 ms unless given. */
  everyMs?: number;
  /** A probe's throw means "not yet" rather than failing the wait. */
  retryErrors?: boolean;
  /** Appended to the timeout's message: what a person needs to see to tell why it never came. */
  detail?: () => string;
}

export type Truthy<T> = Exclude<T, false | undefined | null | 0 | "">;

/** The timeout of a wait (a probe's own error is thrown as it is, never wrapped in this). */
export class NotReached extends Error {
  override name = "NotReached";
}

const DEFAULTS = { timeoutMs: 15_000, everyMs: 10 };

/** Poll `probe` until it returns a truthy value, and return that value. A number is `timeoutMs`. */
export async function eventually<T>(
  probe: () => T | Promise<T>,
  what: string,
  opts: number | PollOptions = {},
): Promise<Truthy<Awaited<T>>> {
  const o = typeof opts === "number" ? { timeoutMs: opts } : opts;
  const timeoutMs = o.timeoutMs ?? DEFAULTS.timeoutMs;
  const everyMs = o.everyMs ?? DEFAULTS.everyMs;
  const deadline = Date.now() + timeoutMs;
  let last: { value: unknown } | { error: unknown } | undefined;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v as Truthy<Awaited<T>>;
      last = { value: v };
    } catch (error) {
      if (!o.retryErrors) throw error;
      last = { error };
    }
    if (Date.now() >= deadline) {
      const lastSaid =
        last && "error" in last
          ? `last error: ${last.error instanceof Error ? last.error.message : inspect(last.error)}`
          : `last value: ${inspect(last?.value, { depth: 3, breakLength: Number.POSITIVE_INFINITY })}`;
      const detail = o.detail ? `\n${o.detail()}` : "";
      throw new NotReached(`not reached within ${timeoutMs} ms: ${what} (${lastSaid})${detail}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** `eventually` with a file's own defaults (its timeout, its poll interval); a call may override them. */
export function eventuallyWith(defaults: PollOptions): typeof eventually {
  return (probe, what, opts = {}) =>
    eventually(probe, what, { ...defaults, ...(typeof opts === "number" ? { timeoutMs: opts } : opts) });
}
