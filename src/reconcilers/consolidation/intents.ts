/**
 * What the consolidation planner asks of a Host, handed to the Host reconciler (the only writer
 * of Host status): empty it for power-off, give it back (stop emptying), or power it on. In
 * memory: a controller restart forgets the asks, while what was already done stays in the
 * Host's status.consolidation (a host powered off on purpose is never fenced for it).
 */
export type ConsolidationIntent = "drain" | "cancel" | "powerOn";

export class ConsolidationIntents {
  private readonly intents = new Map<string, ConsolidationIntent>();
  /** Power-on requests sent, by host@since of their PoweringOn (sent once each). */
  readonly switchedOn = new Set<string>();

  ask(host: string, intent: ConsolidationIntent): void {
    this.intents.set(host, intent);
  }

  peek(host: string): ConsolidationIntent | undefined {
    return this.intents.get(host);
  }

  done(host: string): void {
    this.intents.delete(host);
  }
}

/** A VM that is not running and is not about to: it may stay defined on a host switched off. */
export function atRest(phase: string | undefined): boolean {
  return phase === "Stopped" || phase === "Failed" || phase === "CrashLoop";
}
