import { describe, expect, it } from "vitest";
import { mergeStatus } from "../../src/store/merge.js";

const cond = (type: string, status: string, reason = "R") => ({ type, status, reason });

describe("mergeStatus (three-way, on a conflict)", () => {
  it("keeps what another write added when this reconcile did not touch it", () => {
    const base = { phase: "Running", host: "a" };
    const theirs = {
      phase: "Running",
      host: "b",
      lastRecovery: { reason: "HostFailure", result: "Succeeded" },
    };
    // A reconcile that read `base` (stale) and only updated its specHash.
    const ours = { phase: "Running", host: "a", specHash: "x" };
    expect(mergeStatus(base, ours, theirs)).toEqual({ ...theirs, specHash: "x" });
  });

  it("applies what this reconcile changed, including removals", () => {
    const base = { phase: "Recovering", host: "a", lastFailure: { reason: "Crash" } };
    const ours = { phase: "Running", host: "b" };
    const theirs = {
      phase: "Recovering",
      host: "a",
      lastFailure: { reason: "Crash" },
      observedGeneration: 3,
    };
    expect(mergeStatus(base, ours, theirs)).toEqual({ phase: "Running", host: "b", observedGeneration: 3 });
  });

  it("merges conditions by type", () => {
    const base = { conditions: [cond("Ready", "False"), cond("Synced", "True")] };
    const ours = { conditions: [cond("Ready", "True", "Running"), cond("Synced", "True")] };
    const theirs = {
      conditions: [cond("Ready", "False"), cond("Synced", "False", "Drift"), cond("Degraded", "True")],
    };
    expect(mergeStatus(base, ours, theirs).conditions).toEqual([
      cond("Ready", "True", "Running"),
      cond("Synced", "False", "Drift"),
      cond("Degraded", "True"),
    ]);
  });

  it("treats a missing base as empty", () => {
    expect(mergeStatus(undefined, { phase: "Running" }, { host: "h" })).toEqual({
      phase: "Running",
      host: "h",
    });
  });
});
