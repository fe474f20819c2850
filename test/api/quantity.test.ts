import { describe, expect, it } from "vitest";
import { getCondition, isTrue, setCondition } from "../../src/api/conditions.js";
import { formatBytes, isQuantity, parseQuantity } from "../../src/api/quantity.js";

describe("quantities", () => {
  it.each([
    ["2Gi", 2 * 1024 ** 3],
    ["512Mi", 512 * 1024 ** 2],
    ["1.5G", 1.5e9],
    ["500m", 0.5],
    ["4", 4],
    ["1Ki", 1024],
    ["3T", 3e12],
  ])("%s = %d", (text, want) => {
    expect(parseQuantity(text)).toBe(want);
    expect(isQuantity(text)).toBe(true);
  });
  it.each(["2GB", "Gi", "-1Gi", "1 Gi", "", "1e3"])("rejects %j, naming it", (text) => {
    expect(() => parseQuantity(text)).toThrow(
      text === "" ? /is not a quantity/ : new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")),
    );
    expect(isQuantity(text)).toBe(false);
  });
  it("formats bytes as the largest exact binary unit", () => {
    expect(formatBytes(2 * 1024 ** 3)).toBe("2Gi");
    expect(formatBytes(1536 * 1024 ** 2)).toBe("1536Mi");
    expect(formatBytes(1000)).toBe("1000");
    expect(parseQuantity(formatBytes(123 * 1024 ** 2))).toBe(123 * 1024 ** 2);
  });
});

describe("conditions", () => {
  const t0 = new Date("2026-01-01T00:00:00Z");
  const t1 = new Date("2026-01-01T00:01:00Z");
  it("keeps lastTransitionTime while the status does not change", () => {
    const a = setCondition([], { type: "Ready", status: "True", reason: "Running", message: "a" }, t0);
    const b = setCondition(a, { type: "Ready", status: "True", reason: "Running", message: "b" }, t1);
    expect(b[0]?.lastTransitionTime).toBe(t0.toISOString());
    expect(b[0]?.message).toBe("b");
    const c = setCondition(b, { type: "Ready", status: "False", reason: "Crashed", message: "c" }, t1);
    expect(c[0]?.lastTransitionTime).toBe(t1.toISOString());
  });
  it("is keyed by type and keeps order", () => {
    let l = setCondition([], { type: "Scheduled", status: "True", reason: "r", message: "" }, t0);
    l = setCondition(l, { type: "Ready", status: "False", reason: "r", message: "" }, t0);
    l = setCondition(l, { type: "Scheduled", status: "False", reason: "r", message: "" }, t0);
    expect(l.map((c) => c.type)).toEqual(["Scheduled", "Ready"]);
    expect(isTrue(l, "Scheduled")).toBe(false);
    expect(getCondition(l, "Missing")).toBeUndefined();
  });
});
