/**
 * The power side of the Host reconciler: consolidation's asks (intents.ts) turned into
 * status.consolidation and power-agent calls, one step per reconcile, each state written before
 * the next call so that a controller restart resumes where it was:
 *
 *   (ordinary) --drain--> Draining --no running VM left--> PoweringOff --agent off--> PoweredOff
 *   PoweredOff --powerOn--> PoweringOn --agent on, host answers--> (ordinary)
 *   Draining --cancel--> (ordinary)
 *
 * A host in PoweringOff, PoweredOff or PoweringOn is off (or on its way) on purpose: its missed
 * heartbeats never lead to fencing. A host that was switched on by hand answers and becomes an
 * ordinary host again.
 */
import type { Host, HostStatus } from "../../api/types.js";
import type { ReconcilerContext } from "../context.js";

type Consolidation = NonNullable<HostStatus["consolidation"]>;

/** A host switched on is given this long to answer before it is reported off again. */
export const POWER_ON_TIMEOUT_MS = 10 * 60_000;

export interface PowerFacts {
  connected: boolean;
  /** No running VM is assigned to it and none is migrating to it. */
  drained: boolean;
}

export interface PowerOutcome {
  consolidation: Consolidation | undefined;
  events: { type: "Normal" | "Warning"; reason: string; note: string }[];
  /** Look again soon (the next step is due). */
  again: boolean;
}

/** Power-ons sent when no consolidation runs in this controller (its intents hold them otherwise). */
const switchedOnHere = new Set<string>();

/** Off, or on its way off or on, on purpose: no heartbeat failure of it means a failure. */
export function offOnPurpose(host: Host): boolean {
  const s = host.status?.consolidation?.state;
  return s === "PoweringOff" || s === "PoweredOff" || s === "PoweringOn";
}

export async function powerStep(
  ctx: ReconcilerContext,
  host: Host,
  facts: PowerFacts,
  signal: AbortSignal,
): Promise<PowerOutcome> {
  const name = host.metadata.name;
  const now = ctx.now();
  const at = (state: Consolidation["state"], message?: string): Consolidation => ({
    state,
    since: now.toISOString(),
    ...(message ? { message } : {}),
  });
  const cur = host.status?.consolidation;
  const intent = ctx.consolidation?.peek(name);
  const out: PowerOutcome = { consolidation: cur, events: [], again: false };
  const agent = () => ctx.powerAgents?.(host);
  switch (cur?.state) {
    case undefined:
      if (intent === "drain") {
        ctx.consolidation?.done(name);
        if (host.spec.maintenance) break;
        out.consolidation = at("Draining", "emptying the host to power it off");
        out.events.push({
          type: "Normal",
          reason: "Consolidating",
          note: "emptying the host to power it off: its VMs move to the others",
        });
      } else if (intent) ctx.consolidation?.done(name);
      break;
    case "Draining":
      if (intent === "cancel" || host.spec.maintenance) {
        ctx.consolidation?.done(name);
        out.consolidation = undefined;
        out.events.push({
          type: "Normal",
          reason: "ConsolidationCancelled",
          note: "capacity is wanted: the host stays in service",
        });
      } else if (facts.drained && facts.connected) {
        if (!agent()?.canPowerOff) {
          out.consolidation = undefined;
          out.events.push({
            type: "Warning",
            reason: "PowerOffFailed",
            note: `no power agent can switch ${name} off`,
          });
        } else {
          out.consolidation = at("PoweringOff");
          out.again = true;
        }
      }
      break;
    case "PoweringOff": {
      const a = agent();
      try {
        if (!a) throw new Error("no power agent");
        await a.powerOff(name, signal);
        out.consolidation = at("PoweredOff", `powered off by the ${a.kind} agent: idle`);
        out.events.push({ type: "Normal", reason: "HostPoweredOff", note: out.consolidation.message ?? "" });
      } catch (e) {
        // Still on: back in service, said so.
        out.consolidation = undefined;
        out.events.push({ type: "Warning", reason: "PowerOffFailed", note: (e as Error).message });
      }
      break;
    }
    case "PoweredOff":
      if (facts.connected) {
        // Somebody switched it on: an ordinary host again.
        out.consolidation = undefined;
        out.events.push({
          type: "Normal",
          reason: "HostPoweredOn",
          note: "answers again (switched on outside virtwarden)",
        });
      } else if (intent === "powerOn") {
        ctx.consolidation?.done(name);
        out.consolidation = at("PoweringOn", "capacity is wanted");
        out.again = true;
      }
      break;
    case "PoweringOn": {
      if (facts.connected) {
        out.consolidation = undefined;
        out.events.push({
          type: "Normal",
          reason: "HostPoweredOn",
          note: "powered on and answering: back in service",
        });
        break;
      }
      const since = new Date(cur.since).getTime();
      if (now.getTime() - since > POWER_ON_TIMEOUT_MS) {
        out.consolidation = at(
          "PoweredOff",
          `switched on ${Math.round((now.getTime() - since) / 60_000)} min ago, never answered`,
        );
        out.events.push({ type: "Warning", reason: "PowerOnFailed", note: out.consolidation.message ?? "" });
        break;
      }
      // Switched on once per PoweringOn (again after a controller restart: harmless).
      const attempt = `${name}@${cur.since}`;
      const switchedOn = ctx.consolidation?.switchedOn ?? switchedOnHere;
      if (!switchedOn.has(attempt)) {
        const a = agent();
        try {
          if (!a) throw new Error("no power agent");
          await a.powerOn(name, signal);
          switchedOn.add(attempt);
          out.consolidation = {
            ...cur,
            message: `switched on by the ${a.kind} agent; waiting for it to answer`,
          };
          out.events.push({
            type: "Normal",
            reason: "HostPoweringOn",
            note: out.consolidation.message ?? "",
          });
        } catch (e) {
          out.consolidation = { ...cur, message: `power-on failed, trying again: ${(e as Error).message}` };
          out.events.push({ type: "Warning", reason: "PowerOnFailed", note: (e as Error).message });
        }
      }
      break;
    }
  }
  return out;
}
