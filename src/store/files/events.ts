/**
 * Events in standalone mode, aggregated like Kubernetes events: the same (object, reason, type)
 * bumps a count and the last time instead of adding a line. At most `perObject` kept per object.
 */
import type { ObjectReference, RecordedEvent } from "../types.js";

const refKey = (r: ObjectReference) => `${r.kind}|${r.namespace ?? ""}|${r.name}`;

export class EventLog {
  private readonly byObject = new Map<string, RecordedEvent[]>();

  constructor(
    private readonly now: () => Date,
    private readonly perObject = 50,
  ) {}

  record(e: Omit<RecordedEvent, "firstTime" | "lastTime" | "count">): void {
    const key = refKey(e.regarding);
    let list = this.byObject.get(key);
    if (!list) {
      list = [];
      this.byObject.set(key, list);
    }
    const t = this.now().toISOString();
    const same = list.find((x) => x.reason === e.reason && x.type === e.type);
    if (same) {
      same.count++;
      same.lastTime = t;
      same.note = e.note;
      same.action = e.action;
      list.splice(list.indexOf(same), 1);
      list.push(same);
      return;
    }
    list.push({ ...e, firstTime: t, lastTime: t, count: 1 });
    if (list.length > this.perObject) list.splice(0, list.length - this.perObject);
  }

  list(regarding?: ObjectReference): RecordedEvent[] {
    if (regarding) return [...(this.byObject.get(refKey(regarding)) ?? [])];
    return this.all();
  }

  all(): RecordedEvent[] {
    return [...this.byObject.values()].flat().sort((a, b) => a.lastTime.localeCompare(b.lastTime));
  }

  load(events: RecordedEvent[]): void {
    for (const e of events) {
      const key = refKey(e.regarding);
      const list = this.byObject.get(key) ?? [];
      list.push(e);
      this.byObject.set(key, list);
    }
  }
}
