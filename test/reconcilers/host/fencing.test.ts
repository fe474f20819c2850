import { describe, expect, it } from "vitest";
import type { Host } from "../../../src/api/types.js";
import { fencingHeld } from "../../../src/reconcilers/host/fencing.js";
import { hostResource } from "../../support/fixtures.js";

const host = (name: string, phase: NonNullable<Host["status"]>["phase"]): Host => ({
  ...hostResource(name),
  status: { phase },
});

describe("fencingHeld (storm protection)", () => {
  it("fences one host of three, holds when two of three are lost at once", () => {
    const hosts = [host("a", "Unreachable"), host("b", "Ready"), host("c", "Ready")];
    expect(fencingHeld(hosts, "a", () => false)).toBe(false);
    expect(fencingHeld(hosts, "a", (h) => h === "b")).toBe(true);
  });

  it("does not count a host already fenced: a second, later failure is fenced", () => {
    const hosts = [host("a", "Fenced"), host("b", "Ready"), host("c", "Unreachable")];
    // a is off and does not answer (lost contact), c fails now: c may be fenced.
    expect(fencingHeld(hosts, "c", (h) => h === "a")).toBe(false);
  });

  it("still holds when most live hosts are lost together", () => {
    const hosts = [
      host("a", "Fenced"),
      host("b", "Ready"),
      host("c", "Ready"),
      host("d", "Ready"),
      host("e", "Ready"),
    ];
    expect(fencingHeld(hosts, "b", (h) => h === "c" || h === "d" || h === "a")).toBe(true);
  });
});
