/**
 * The fencing step of the Host reconciler: when a host has stopped answering, make sure it is off
 * (fence agent), or that an operator confirmed it, before its VMs may start elsewhere.
 *
 * Rules:
 * - Nothing is fenced while the host answers.
 * - No fencing storm: when more than half of the hosts (and at least two) are unreachable at once,
 *   the controller's own connectivity is the likelier culprit (oVirt's
 *   skip_if_connectivity_broken): fencing is held and said so.
 * - The `virtwarden.io/fence-confirmed` annotation is an operator's confirmation (manual agent,
 *   or when the agent cannot succeed).
 * - `unsafeSkipFencing` treats the host as fenced without confirmation, reported loudly.
 * - A failed attempt leaves the host Fencing; it is retried at the next reconcile.
 */
import { FENCE_CONFIRMED_ANNOTATION } from "../../api/annotations.js";
import type { Host } from "../../api/types.js";
import type { FenceAgentFactory } from "../../providers/fence/index.js";
import type { ResourceStore } from "../../store/types.js";

export type FenceOutcome =
  | { state: "notNeeded" }
  | { state: "held"; message: string }
  /** Not judged dead: libvirt does not answer but the host does at the network level (heartbeat.ts). */
  | { state: "deferred"; message: string }
  | { state: "unconfigured"; message: string }
  | { state: "failed"; message: string }
  | { state: "fenced"; at: string; how: "agent" | "confirmed" | "skipped"; message: string };

const STORM_FRACTION = 0.5;

/**
 * Whether fencing is held: `lostContact(name)` says whether the controller currently fails to
 * reach a host (any missed beat: hosts lost together are not all past the threshold at the same
 * instant, so phases alone would let the first one be fenced before the storm is visible).
 */
export function fencingHeld(hosts: Host[], self: string, lostContact: (host: string) => boolean): boolean {
  // A host already fenced is known to be off: it is no evidence of a storm now, and counting it
  // would forbid fencing a second, independent failure in a small cluster.
  // Nor is a host powered off on purpose (consolidation): its silence is expected.
  const live = hosts.filter(
    (h) => h.metadata.name === self || (h.status?.phase !== "Fenced" && h.status?.phase !== "PoweredOff"),
  );
  const down = live.filter(
    (h) =>
      h.metadata.name === self ||
      lostContact(h.metadata.name) ||
      h.status?.phase === "Unreachable" ||
      h.status?.phase === "Fencing",
  ).length;
  return live.length > 1 && down >= 2 && down / live.length > STORM_FRACTION;
}

export async function fenceStep(
  host: Host,
  store: ResourceStore,
  agents: FenceAgentFactory | undefined,
  now: Date,
  signal: AbortSignal,
  lostContact: (host: string) => boolean = () => false,
): Promise<FenceOutcome> {
  const name = host.metadata.name;
  if (host.status?.phase === "Fenced" && host.status.fencedAt) {
    // Said as it was when it happened: a confirmation stays a confirmation on every later pass
    // (a pass soon after it, e.g. woken by the annotation itself, must not rename it).
    const was = host.status.conditions?.find((c) => c.type === "Fenced")?.reason;
    const how = was === "FenceConfirmed" ? "confirmed" : was === "FencingSkipped" ? "skipped" : "agent";
    return { state: "fenced", at: host.status.fencedAt, how, message: "fenced earlier" };
  }
  if (fencingHeld(store.list("Host"), name, lostContact)) {
    return {
      state: "held",
      message:
        "more than half of the hosts are unreachable at once: the controller's own network is the likelier fault, fencing held",
    };
  }
  if (host.metadata.annotations?.[FENCE_CONFIRMED_ANNOTATION] === "true") {
    return {
      state: "fenced",
      at: now.toISOString(),
      how: "confirmed",
      message: "power-off confirmed by an operator",
    };
  }
  const f = host.spec.fencing;
  if (!f) {
    return {
      state: "unconfigured",
      message: `no fence agent: its VMs are not started elsewhere until an operator confirms the host is off (annotation ${FENCE_CONFIRMED_ANNOTATION}=true)`,
    };
  }
  if (f.unsafeSkipFencing) {
    return {
      state: "fenced",
      at: now.toISOString(),
      how: "skipped",
      message: "UNSAFE: unsafeSkipFencing set, treated as fenced without confirmation",
    };
  }
  const agent = agents?.(host);
  if (!agent)
    return { state: "failed", message: `no ${f.agent} fence agent is available in this controller` };
  try {
    await agent.fence(
      name,
      AbortSignal.any([signal, AbortSignal.timeout((f.timeoutSeconds ?? 30) * 1000 + 1000)]),
    );
    return {
      state: "fenced",
      at: new Date().toISOString(),
      how: "agent",
      // The agent that acted (under --simulate the simulated BMC stands in for the spec's agent).
      message: `powered off by the ${agent.kind} agent`,
    };
  } catch (e) {
    return { state: "failed", message: e instanceof Error ? e.message : String(e) };
  }
}
