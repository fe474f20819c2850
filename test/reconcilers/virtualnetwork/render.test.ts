import { describe, expect, it } from "vitest";
import type { VirtualNetwork } from "../../../src/api/types.js";
import type { NetworkInfo } from "../../../src/providers/types.js";
import { decideHostNetwork, renderNetwork } from "../../../src/reconcilers/virtualnetwork/render.js";

const vnet: VirtualNetwork = {
  apiVersion: "virtwarden.io/v1alpha1",
  kind: "VirtualNetwork",
  metadata: { name: "backend", namespace: "default", uid: "u1" },
  spec: {
    mode: "nat",
    subnet: "10.10.0.0/24",
    dhcp: { range: { start: "10.10.0.100", end: "10.10.0.200" } },
  },
};
const desired = renderNetwork(vnet);
const on = (patch: Partial<NetworkInfo> = {}, spec = desired): NetworkInfo => ({
  spec,
  active: true,
  autostart: true,
  ...patch,
});

describe("decideHostNetwork", () => {
  it.each([
    ["missing: create it", undefined, { action: "ensure", drift: "missing" }],
    ["as desired: nothing", on(), { action: "none" }],
    ["stopped behind our back: start it", on({ active: false }), { action: "ensure", drift: "inactive" }],
    [
      "edited behind our back: correct it",
      on({}, { ...desired, address: "10.99.0.1/24" }),
      { action: "ensure", drift: "configuration" },
    ],
    [
      "guests left on the hop by an interrupted restart: bring them back",
      on({ relinkPending: true }),
      { action: "ensure", drift: "relink" },
    ],
  ])("%s", (_what, actual, want) => {
    expect(decideHostNetwork(desired, actual)).toEqual(want);
  });

  it("derives a bridge name of at most 15 characters for the networks libvirt makes", () => {
    expect(desired.bridge?.length).toBeLessThanOrEqual(15);
    expect(desired.bridge).toMatch(/^vw-[0-9a-f]{8}$/);
  });
});
