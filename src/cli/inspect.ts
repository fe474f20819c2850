/**
 * `virtwarden get`, `describe` and `events`: read what a standalone controller recorded in its
 * state directory (another process may be running it), without a running controller.
 */

import { Command, InvalidArgumentError } from "commander";
import { getCondition } from "../api/conditions.js";
import { CLUSTER_SCOPED, KINDS, type Kind, type Resource } from "../api/types.js";
import type { SyncStatus } from "../store/files/index.js";
import { PLURALS } from "../store/kube/store.js";
import type { RecordedEvent } from "../store/types.js";

export interface ReadOnlyView {
  list<K extends Kind>(kind: K): Resource[];
  listEvents(regarding?: { kind: Kind; namespace?: string; name: string }): RecordedEvent[];
  /** `run --git`: the sync status. */
  sync?: SyncStatus;
}

/**
 * The sync line of `run --git` (get and describe): the revision in force, when it was last
 * synced, and the last attempt's result with its message (a failure names the commit, file,
 * line and field).
 */
export function formatSyncLine(sync: SyncStatus, now = new Date()): string {
  const rev = sync.revision ? sync.revision.slice(0, 12) : "none yet";
  const last = sync.lastAttempt;
  const synced = sync.lastSyncedTime ? `, synced ${age(sync.lastSyncedTime, now)} ago` : "";
  const attempt = last ? `; ${last.result} ${age(last.time, now)} ago: ${last.message}` : "; not synced yet";
  return `Sync: revision ${rev} of ${sync.source} ${sync.branch}:${sync.path}${synced}${attempt}`;
}

const ALIASES: Record<string, Kind> = {};
for (const k of KINDS) {
  ALIASES[k.toLowerCase()] = k;
  ALIASES[`${k.toLowerCase()}s`] = k;
  ALIASES[PLURALS[k]] = k; // snapshotpolicies, as kubectl spells it
}
Object.assign(ALIASES, {
  vm: "VirtualMachine",
  vms: "VirtualMachine",
  host: "Host",
  hosts: "Host",
  vnet: "VirtualNetwork",
  vnets: "VirtualNetwork",
  snappol: "SnapshotPolicy",
  snappols: "SnapshotPolicy",
  vmsnap: "VirtualMachineSnapshot",
  vmsnaps: "VirtualMachineSnapshot",
  vmrestore: "VirtualMachineRestore",
  vmrestores: "VirtualMachineRestore",
  vmclass: "VirtualMachineClass",
  vmclasses: "VirtualMachineClass",
});

export function parseKind(text: string): Kind {
  const k = ALIASES[text.toLowerCase()];
  if (!k)
    throw new InvalidArgumentError(
      `unknown kind "${text}" (one of: vm, host, vnet, snappol, vmsnap, vmrestore, vmclass)`,
    );
  return k;
}

export function age(from: string | undefined, now = new Date()): string {
  if (!from) return "-";
  return duration(Math.max(0, Math.floor((now.getTime() - new Date(from).getTime()) / 1000)));
}

/** Seconds as kubectl shows ages: 45s, 12m, 5h, 3d. */
export function duration(seconds: number | undefined): string {
  if (seconds === undefined) return "-";
  const s = Math.max(0, Math.floor(seconds));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

export function formatTable(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) for (const [i, c] of r.entries()) widths[i] = Math.max(widths[i] ?? 0, c.length);
  return rows
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("   "))
    .join("\n");
}

const ready = (r: Resource) => getCondition(r.status?.conditions, "Ready")?.status ?? "Unknown";

/** `wide`: as `-o wide`, with the columns the CRDs print at priority 1 (Hosts: reliability, measured use). */
export function tableFor(kind: Kind, items: Resource[], now = new Date(), wide = false): string {
  const sorted = [...items].sort((a, b) =>
    `${a.metadata.namespace ?? ""}/${a.metadata.name}`.localeCompare(
      `${b.metadata.namespace ?? ""}/${b.metadata.name}`,
    ),
  );
  const rows: string[][] = [];
  switch (kind) {
    case "VirtualMachine":
      rows.push(["NAMESPACE", "NAME", "PHASE", "HOST", "READY", "RESTARTS", "AGE"]);
      for (const r of sorted) {
        if (r.kind !== "VirtualMachine") continue;
        rows.push([
          r.metadata.namespace ?? "default",
          r.metadata.name,
          r.status?.phase ?? "Pending",
          r.status?.host ?? "-",
          ready(r),
          String(r.status?.restartCount ?? 0),
          age(r.metadata.creationTimestamp, now),
        ]);
      }
      break;
    case "Host":
      rows.push([
        "NAME",
        "PHASE",
        "URI",
        "VMS",
        "CPU",
        "MEMORY",
        "AGE",
        ...(wide
          ? ["HEARTBEAT", "FAILURES", "MTBF", "MTTR", "AVAILABILITY", "OBSERVED", "AVOIDED", "CPU%", "MEM%"]
          : []),
      ]);
      for (const r of sorted) {
        if (r.kind !== "Host") continue;
        const s = r.status;
        const rel = s?.reliability;
        rows.push([
          r.metadata.name,
          s?.phase ?? "Pending",
          r.spec.uri,
          String(s?.vmCount ?? 0),
          s?.allocated && s.allocatable ? `${s.allocated.cpu}/${s.allocatable.cpu}` : "-",
          s?.allocated && s.allocatable ? `${s.allocated.memory}/${s.allocatable.memory}` : "-",
          age(r.metadata.creationTimestamp, now),
          ...(wide
            ? [
                age(s?.lastHeartbeat, now),
                rel ? String(rel.failures) : "-",
                duration(rel?.mtbfSeconds),
                duration(rel?.mttrSeconds),
                rel?.availability !== undefined ? `${(rel.availability * 100).toFixed(2)}%` : "-",
                duration(rel?.observedSeconds),
                // Placement avoids it for missed bring-up deadlines (virtualmachine/deadlines.ts).
                s?.deadlines?.avoidUntil && Date.parse(s.deadlines.avoidUntil) > now.getTime()
                  ? `until ${s.deadlines.avoidUntil}`
                  : "-",
                // Measured use (status.usage), what loadAware placement ranks by.
                s?.usage ? String(s.usage.cpuPercent) : "-",
                s?.usage?.memoryPercent !== undefined ? String(s.usage.memoryPercent) : "-",
              ]
            : []),
        ]);
      }
      break;
    case "VirtualMachineClass":
      // As the CRD's printer columns: a class has no status, only what it gives its VMs.
      rows.push(["NAME", "CPU", "MEMORY", "AGE"]);
      for (const r of sorted) {
        if (r.kind !== "VirtualMachineClass") continue;
        rows.push([
          r.metadata.name,
          String(r.spec.cpu),
          r.spec.memory,
          age(r.metadata.creationTimestamp, now),
        ]);
      }
      break;
    default:
      rows.push(["NAMESPACE", "NAME", "READY", "AGE"]);
      for (const r of sorted) {
        rows.push([
          r.metadata.namespace ?? "-",
          r.metadata.name,
          ready(r),
          age(r.metadata.creationTimestamp, now),
        ]);
      }
  }
  return formatTable(rows);
}

function splitName(kind: Kind, text: string): { namespace?: string; name: string } {
  if (CLUSTER_SCOPED.has(kind)) return { name: text };
  const i = text.indexOf("/");
  return i > 0
    ? { namespace: text.slice(0, i), name: text.slice(i + 1) }
    : { namespace: "default", name: text };
}

export function describeResource(
  r: Resource,
  events: RecordedEvent[],
  now = new Date(),
  sync?: SyncStatus,
): string {
  const lines: string[] = [];
  lines.push(`Name:        ${r.metadata.name}`);
  if (r.metadata.namespace) lines.push(`Namespace:   ${r.metadata.namespace}`);
  lines.push(`Kind:        ${r.kind}`);
  if (sync) lines.push(formatSyncLine(sync, now).replace(/^Sync: /, "Sync:        "));
  if (r.metadata.labels && Object.keys(r.metadata.labels).length > 0) {
    lines.push(
      `Labels:      ${Object.entries(r.metadata.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(", ")}`,
    );
  }
  lines.push(
    `Generation:  ${r.metadata.generation ?? "-"} (observed ${r.status?.observedGeneration ?? "-"})`,
  );
  const { conditions, ...rest } = (r.status ?? {}) as Record<string, unknown> & { conditions?: unknown };
  lines.push("Status:");
  for (const [k, v] of Object.entries(rest)) {
    if (k === "observedGeneration") continue;
    lines.push(`  ${k}: ${typeof v === "object" ? JSON.stringify(v) : String(v)}`);
  }
  lines.push("Conditions:");
  const conds = (r.status?.conditions ?? []).map((c) => [
    c.type,
    c.status,
    c.reason,
    age(c.lastTransitionTime, now),
    c.message,
  ]);
  lines.push(
    conds.length > 0
      ? formatTable([
          ["  TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"],
          ...conds.map((c) => [`  ${c[0]}`, ...c.slice(1)] as string[]),
        ])
      : "  <none>",
  );
  lines.push("Events:");
  const ev = events
    .slice(-20)
    .map((e) => [`  ${e.type}`, e.reason, age(e.lastTime, now), e.count > 1 ? `x${e.count}` : "", e.note]);
  lines.push(
    ev.length > 0 ? formatTable([["  TYPE", "REASON", "AGE", "COUNT", "MESSAGE"], ...ev]) : "  <none>",
  );
  return lines.join("\n");
}

/** Loaded on use, so that `validate` does not pay for the state store's modules. */
async function openView(stateDir: string): Promise<ReadOnlyView> {
  const { openStateReadOnly } = await import("../store/files/index.js");
  return openStateReadOnly(stateDir);
}

const stateDirOption = (c: Command) =>
  c.option("--state-dir <dir>", "state directory of the standalone controller", ".virtwarden/state");

export function getCommand(): Command {
  return stateDirOption(
    new Command("get")
      .description("list resources and their status (from a standalone controller's state)")
      .argument("<kind>", "vm | host | vnet | snappol | vmsnap | vmrestore", parseKind)
      .argument("[name]", "namespace/name (or name in default; hosts: name)"),
  )
    .option("-o, --output <format>", "table | wide | json | yaml", "table")
    .option("-w, --watch", "after the list, print a row each time a resource changes (as kubectl get -w)")
    .action(async (kind: Kind, name: string | undefined, opts: GetOptions) => {
      if (opts.watch && opts.output !== "table" && opts.output !== "wide")
        throw new Error("--watch prints table rows: drop -o");
      if (!["table", "wide", "json", "yaml"].includes(opts.output))
        throw new InvalidArgumentError(`-o ${opts.output}: expected table, wide, json or yaml`);
      const wide = opts.output === "wide";
      const pick = (list: Resource[]) => {
        if (!name) return list;
        const want = splitName(kind, name);
        return list.filter(
          (r) =>
            r.metadata.name === want.name && (kind === "Host" || r.metadata.namespace === want.namespace),
        );
      };
      const view = await openView(opts.stateDir);
      const items = pick(view.list(kind));
      if (name && items.length === 0 && !opts.watch)
        throw new Error(`${kind} ${name} not found in ${opts.stateDir}`);
      if (opts.output === "json") process.stdout.write(`${JSON.stringify(items, null, 2)}\n`);
      else if (opts.output === "yaml") {
        const { stringify } = await import("yaml");
        process.stdout.write(items.map((i) => stringify(i)).join("---\n"));
      } else
        process.stdout.write(
          `${tableFor(kind, items, new Date(), wide)}\n${view.sync ? `${formatSyncLine(view.sync)}\n` : ""}`,
        );
      if (opts.watch)
        await watchRows(kind, items, async () => pick((await openView(opts.stateDir)).list(kind)), wide);
    });
}

interface GetOptions {
  stateDir: string;
  output: string;
  watch?: boolean;
}

/** How often `get -w` reads the controller's view again (it is rewritten about once a second). */
const WATCH_INTERVAL_MS = 500;

/**
 * `get -w`: a row each time a resource's row changes, and a line when one goes, until interrupted.
 * Rows are compared with the age column held still, so time passing alone prints nothing.
 */
async function watchRows(
  kind: Kind,
  initial: Resource[],
  read: () => Promise<Resource[]>,
  wide = false,
): Promise<never> {
  const since = new Date();
  const id = (r: Resource) =>
    kind === "Host" ? r.metadata.name : `${r.metadata.namespace ?? "default"}/${r.metadata.name}`;
  const rowOf = (r: Resource, now: Date) => tableFor(kind, [r], now, wide).split("\n")[1] ?? "";
  let last = new Map(initial.map((r) => [id(r), rowOf(r, since)]));
  for (;;) {
    await new Promise((r) => setTimeout(r, WATCH_INTERVAL_MS));
    let items: Resource[];
    try {
      items = await read();
    } catch {
      continue; // The view is being replaced, or the controller has not written it yet.
    }
    const next = new Map(items.map((r) => [id(r), rowOf(r, since)]));
    for (const r of items)
      if (last.get(id(r)) !== next.get(id(r))) process.stdout.write(`${rowOf(r, new Date())}\n`);
    for (const k of last.keys()) if (!next.has(k)) process.stdout.write(`${k}   deleted\n`);
    last = next;
  }
}

export function describeCommand(): Command {
  return stateDirOption(
    new Command("describe")
      .description("show a resource's status, conditions and recent events")
      .argument("<kind>", "vm | host | vnet | snappol | vmsnap | vmrestore", parseKind)
      .argument("<name>", "namespace/name (or name in default; hosts: name)"),
  ).action(async (kind: Kind, name: string, opts: { stateDir: string }) => {
    const view = await openView(opts.stateDir);
    const want = splitName(kind, name);
    const r = view
      .list(kind)
      .find(
        (x) => x.metadata.name === want.name && (kind === "Host" || x.metadata.namespace === want.namespace),
      );
    if (!r) throw new Error(`${kind} ${name} not found in ${opts.stateDir}`);
    process.stdout.write(
      `${describeResource(r, view.listEvents({ kind, ...want }), new Date(), view.sync)}\n`,
    );
  });
}

export function eventsCommand(): Command {
  return stateDirOption(new Command("events").description("recent events, oldest first"))
    .option("--for <kind/name>", "only events about this object, e.g. vm/default/web-0")
    .action(async (opts: { stateDir: string; for?: string }) => {
      const view = await openView(opts.stateDir);
      let filter: { kind: Kind; namespace?: string; name: string } | undefined;
      if (opts.for) {
        const i = opts.for.indexOf("/");
        if (i < 0) throw new InvalidArgumentError(`--for ${opts.for}: expected KIND/NAME`);
        const kind = parseKind(opts.for.slice(0, i));
        filter = { kind, ...splitName(kind, opts.for.slice(i + 1)) };
      }
      const events = view.listEvents(filter).sort((a, b) => a.lastTime.localeCompare(b.lastTime));
      const rows = events.map((e) => [
        age(e.lastTime),
        e.type,
        e.reason,
        `${e.regarding.kind}/${e.regarding.namespace ? `${e.regarding.namespace}/` : ""}${e.regarding.name}`,
        e.count > 1 ? `x${e.count}` : "",
        e.note,
      ]);
      process.stdout.write(
        `${formatTable([["LAST SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE"], ...rows])}\n`,
      );
    });
}
