/**
 * The hand-written types (src/api/types.ts) and the types generated from the CRDs
 * (src/api/generated/) must describe the same objects. The checks are compile-time: `npm test`
 * runs tsc over test/, and a mismatch in either direction is a type error here. The runtime part
 * checks the generated files are current.
 */
import { execFileSync } from "node:child_process";
import { describe, expect, expectTypeOf, it } from "vitest";
import type * as G from "../../src/api/generated/index.js";
import type * as T from "../../src/api/types.js";

describe("types follow the CRDs", () => {
  it("spec and status types are mutually assignable for every kind", () => {
    expectTypeOf<T.VirtualMachineSpec>().toEqualTypeOf<G.VirtualMachineSpec>();
    expectTypeOf<T.VirtualMachineStatus>().toEqualTypeOf<G.VirtualMachineStatus>();
    expectTypeOf<T.HostSpec>().toEqualTypeOf<G.HostSpec>();
    expectTypeOf<T.HostStatus>().toEqualTypeOf<G.HostStatus>();
    expectTypeOf<T.VirtualNetworkSpec>().toEqualTypeOf<G.VirtualNetworkSpec>();
    expectTypeOf<T.VirtualNetworkStatus>().toEqualTypeOf<G.VirtualNetworkStatus>();
    expectTypeOf<T.SnapshotPolicySpec>().toEqualTypeOf<G.SnapshotPolicySpec>();
    expectTypeOf<T.SnapshotPolicyStatus>().toEqualTypeOf<G.SnapshotPolicyStatus>();
    expectTypeOf<T.VirtualMachineSnapshotSpec>().toEqualTypeOf<G.VirtualMachineSnapshotSpec>();
    expectTypeOf<T.VirtualMachineSnapshotStatus>().toEqualTypeOf<G.VirtualMachineSnapshotStatus>();
    expectTypeOf<T.VirtualMachineRestoreSpec>().toEqualTypeOf<G.VirtualMachineRestoreSpec>();
    expectTypeOf<T.VirtualMachineRestoreStatus>().toEqualTypeOf<G.VirtualMachineRestoreStatus>();
  });

  it("the generated files are current with crds/", () => {
    const out = execFileSync("npx", ["tsx", "scripts/gen-types.ts", "--check"], { encoding: "utf8" });
    expect(out).toContain("up to date");
  });
});
