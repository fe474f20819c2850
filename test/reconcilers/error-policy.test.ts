import { describe, expect, it } from "vitest";
import { TerminalError } from "../../src/controller/outcome.js";
import { reconcileErrorPolicy } from "../../src/reconcilers/error-policy.js";
import { ConflictError } from "../../src/store/types.js";

describe("reconcileErrorPolicy", () => {
  it.each([
    { what: "a store conflict", err: new ConflictError("Host a: modified"), expected: "conflict" },
    { what: "any other error", err: new Error("host busy"), expected: "retry" },
    {
      what: "an error only named like a conflict",
      err: Object.assign(new Error("x"), { name: "ConflictError" }),
      expected: "retry",
    },
    { what: "a thrown non-error", err: "boom", expected: "retry" },
    {
      what: "a TerminalError (the controller acts on it first)",
      err: new TerminalError("bad"),
      expected: "retry",
    },
  ])("$what -> $expected", ({ err, expected }) => {
    expect(reconcileErrorPolicy(err)).toBe(expected);
  });
});
