import { describe, expect, it } from "vitest";
import { eventually, eventuallyWith, NotReached } from "./eventually.js";

describe("eventually, the one poll loop of the tests", () => {
  it("returns the probe's first truthy value", async () => {
    let n = 0;
    await expect(
      eventually(() => (++n >= 3 ? { n } : undefined), "third call", { everyMs: 1 }),
    ).resolves.toEqual({
      n: 3,
    });
  });

  it("times out naming what was awaited, the time given and the last value, then the detail", async () => {
    const e = await eventually(() => 0, "the count above zero", {
      timeoutMs: 30,
      everyMs: 5,
      detail: () => "log tail",
    }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(NotReached);
    expect((e as Error).message).toBe(
      "not reached within 30 ms: the count above zero (last value: 0)\nlog tail",
    );
  });

  it("fails at once with a probe's own error, unless told to retry it, then reports the last one", async () => {
    let calls = 0;
    const boom = () => {
      calls++;
      throw new Error("ECONNREFUSED");
    };
    await expect(eventually(boom, "connected", 1_000)).rejects.toThrow(/^ECONNREFUSED$/);
    expect(calls).toBe(1);
    await expect(
      eventually(boom, "connected", { timeoutMs: 30, everyMs: 5, retryErrors: true }),
    ).rejects.toThrow("not reached within 30 ms: connected (last error: ECONNREFUSED)");
    expect(calls).toBeGreaterThan(2);
  });

  it("eventuallyWith: the file's defaults, a call's number overriding the timeout", async () => {
    const wait = eventuallyWith({ timeoutMs: 10_000, everyMs: 5 });
    const t0 = Date.now();
    await expect(wait(() => false, "never", 40)).rejects.toThrow(
      "not reached within 40 ms: never (last value: false)",
    );
    expect(Date.now() - t0).toBeLessThan(5_000);
  });
});
