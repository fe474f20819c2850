import { describe, expect, it } from "vitest";
import type { VirtualNetwork } from "../../../src/api/types.js";
import { NETWORK_STALL_MS, networkStatus } from "../../../src/reconcilers/virtualnetwork/status.js";

const T0 = new Date("2026-12-02T10:00:00Z");
const at = (ms: number) => new Date(T0.getTime() + ms);

function vnet(status?: VirtualNetwork["status"], deleting = false): VirtualNetwork {
  return {
    apiVersion: "virtwarden.io/v1alpha1",
    kind: "VirtualNetwork",
    metadata: {
      name: "lab",
      namespace: "default",
      generation: 2,
      ...(deleting ? { deletionTimestamp: T0.toISOString() } : {}),
    },
    spec: { mode: "nat", subnet: "10.0.0.0/24" },
    status,
  } as VirtualNetwork;
}

const cond = (s: VirtualNetwork["status"], type: string) => {
  const c = s?.conditions?.find((x) => x.type === type);
  return c ? `${c.status} ${c.reason}` : "absent";
};
const summary = (s: VirtualNetwork["status"]) =>
  ["Ready", "Reconciling", "Stalled"].map((t) => `${t}=${cond(s, t)}`).join(", ");

const ok = (host: string) => ({ host, ready: true });
const bad = (host: string) => ({ host, ready: false, message: "bridge br9 does not exist" });

describe("VirtualNetwork status (what kstatus and Argo CD read)", () => {
  it.each([
    [
      "realised on every selected host",
      [ok("h1"), ok("h2")],
      "Ready=True Realised, Reconciling=False Reconciled, Stalled=False NotStalled",
    ],
    [
      "realised on some",
      [ok("h1"), bad("h2")],
      "Ready=True Realised, Reconciling=True NotRealised, Stalled=False NotStalled",
    ],
    [
      "realised nowhere",
      [bad("h1")],
      "Ready=False NotRealised, Reconciling=True NotRealised, Stalled=False NotStalled",
    ],
    [
      "no host selected",
      [],
      "Ready=False NoHostSelected, Reconciling=True NoHostSelected, Stalled=False NotStalled",
    ],
  ])("%s", (_, hosts, want) => {
    expect(summary(networkStatus(vnet(), hosts, [], T0))).toBe(want);
  });

  it("a host that keeps refusing the network stalls it after NETWORK_STALL_MS, and it stays stalled until realised", () => {
    let s = networkStatus(vnet(), [ok("h1"), bad("h2")], [], T0);
    s = networkStatus(vnet(s), [ok("h1"), bad("h2")], [], at(NETWORK_STALL_MS - 1_000));
    expect(summary(s)).toContain("Reconciling=True");
    s = networkStatus(vnet(s), [ok("h1"), bad("h2")], [], at(NETWORK_STALL_MS));
    expect(summary(s)).toBe("Ready=True Realised, Reconciling=False NotRealised, Stalled=True NotRealised");
    expect(s.conditions?.find((c) => c.type === "Stalled")?.message).toContain(
      "h2: bridge br9 does not exist",
    );
    // Still failing later: stays Stalled (its own transition time, not Reconciling's, carries it).
    s = networkStatus(vnet(s), [ok("h1"), bad("h2")], [], at(NETWORK_STALL_MS + 60_000));
    expect(summary(s)).toContain("Stalled=True");
    // Fixed: both False at once.
    s = networkStatus(vnet(s), [ok("h1"), ok("h2")], [], at(NETWORK_STALL_MS + 61_000));
    expect(summary(s)).toBe("Ready=True Realised, Reconciling=False Reconciled, Stalled=False NotStalled");
    // A new failure starts a new clock: not stalled at once.
    s = networkStatus(vnet(s), [ok("h1"), bad("h2")], [], at(NETWORK_STALL_MS + 62_000));
    expect(summary(s)).toContain("Reconciling=True");
  });

  it("never both Reconciling and Stalled, and a status that did not change is equal (no rewrite)", () => {
    let s = networkStatus(vnet(), [bad("h1")], [], T0);
    for (let i = 1; i <= 12; i++) {
      s = networkStatus(vnet(s), [bad("h1")], [], at(i * 60_000));
      expect(cond(s, "Reconciling").startsWith("True") && cond(s, "Stalled").startsWith("True")).toBe(false);
    }
    expect(networkStatus(vnet(s), [bad("h1")], [], at(13 * 60_000))).toEqual(s);
  });

  it("while deleting: InUse names the users; a deletion is never called stalled", () => {
    const s = networkStatus(
      vnet(undefined, true),
      [bad("h1")],
      ["default/a", "default/b"],
      at(NETWORK_STALL_MS * 2),
    );
    expect(cond(s, "InUse")).toBe("True InUse");
    expect(s.conditions?.find((c) => c.type === "InUse")?.message).toBe(
      "deletion waits: used by VMs default/a, default/b",
    );
    expect(cond(s, "Stalled")).toBe("False NotStalled");
    expect(cond(networkStatus(vnet(), [ok("h1")], ["default/a"], T0), "InUse")).toBe("absent");
  });

  it("every condition carries the generation it was computed for", () => {
    const s = networkStatus(vnet(), [ok("h1")], [], T0);
    expect(s.observedGeneration).toBe(2);
    expect(s.conditions?.every((c) => c.observedGeneration === 2)).toBe(true);
  });
});
