/**
 * schedule: auto — each target's (VM's or group's) checkpoint interval, from what its checkpoints
 * cost and how often the hosts it runs on fail. decideCadence is pure: every rule is a row in
 * test/reconcilers/snapshot/cadence.test.ts.
 *
 * - C, the cost: the mean over the target's newest COST_SAMPLES Succeeded checkpoints of their
 *   pause window (costFrom pause, the default: what the guest loses; a single VM's internal
 *   checkpoint pauses it for the whole of it, so its durationSeconds is its pause) or of how long
 *   taking them lasted (costFrom total). Checkpoints that recorded no cost are not samples.
 * - M, the MTBF: the host's status.reliability.mtbfSeconds (measured; written by the host
 *   reliability accounting, read here defensively: absent, zero or not a number counts as no
 *   measurement), else auto.assumedMtbf (assumed). A group is lost when any of its hosts fails:
 *   failure rates add, so M = 1 / Σ 1/M_h over its distinct hosts. A migration changes the host,
 *   and so M, at the next decision.
 * - The interval: Daly's higher-order optimum (default) or Young's first-order √(2CM), clamped to
 *   minInterval..maxInterval. Daly's is the default because it stays near the true optimum when C
 *   is not small beside M (volatile hosts, large memory), where Young's overshoots, and it is
 *   defined for C >= 2M (the interval is M); for C << M the two agree.
 * - When: at the newest attempt (any outcome) + the interval, or at the target's resume from one
 *   of its checkpoints + the interval when that is later. A resume puts the target back at the
 *   checkpoint: it holds no unsaved work then, exactly as just after a checkpoint, so counting
 *   from the attempt before the failure would take the next checkpoint early, at the full cost C
 *   for less than an interval's work (or at once, for none, when the interval ran out during the
 *   outage). bench:checkpoint measured that on common outage traces (200 seeds): about half a
 *   checkpoint's cost wasted per failure; counting from the resume cut lost work + overhead by
 *   2-3% on hosts failing every 2 h, 2% at 12 h with C 120 s, less (within noise) beyond.
 *   No attempt yet: at once (FirstCheckpoint; until there is one a failure loses everything, and
 *   it measures C). Attempts but no measured C (none succeeded, or they predate cost recording):
 *   minInterval after the newest attempt or resume (MinInterval).
 *
 * Contract: the inputs are the whole story — the same inputs give the same decision, so a
 * recomputation after a restart or a cache lag names the same due time (and so the same snapshot).
 */
import type { SnapshotCadence, SnapshotPolicyAuto } from "../../api/types.js";

export const COST_SAMPLES = 5;

export const AUTO_DEFAULTS: Required<SnapshotPolicyAuto> = {
  minInterval: "5m",
  maxInterval: "24h",
  assumedMtbf: "7d",
  costFrom: "pause",
  formula: "Daly",
};

/** Young (1974): the first-order optimum checkpoint interval, in the units of c and m. */
export function youngInterval(c: number, m: number): number {
  return Math.sqrt(2 * c * m);
}

/** Daly (2006): √(2CM)·[1 + ⅓√(C/2M) + (1/9)(C/2M)] − C for C < 2M, else M. */
export function dalyInterval(c: number, m: number): number {
  if (c >= 2 * m) return m;
  const r = c / (2 * m);
  return Math.sqrt(2 * c * m) * (1 + Math.sqrt(r) / 3 + r / 9) - c;
}

const UNIT_S: Record<string, number> = { m: 60, h: 3600, d: 86_400, w: 604_800 };

/** The policy's auto settings with defaults, in seconds; throws naming the field on bad input. */
export function resolveAuto(auto: SnapshotPolicyAuto | undefined): {
  minS: number;
  maxS: number;
  assumedMtbfS: number;
  costFrom: "pause" | "total";
  formula: "Daly" | "Young";
} {
  const a = { ...AUTO_DEFAULTS, ...(auto ?? {}) };
  const seconds = (field: keyof SnapshotPolicyAuto, v: string): number => {
    const m = /^([0-9]+)(m|h|d|w)$/.exec(v);
    const s = m ? Number(m[1]) * (UNIT_S[m[2] as string] as number) : Number.NaN;
    if (!(s > 0)) throw new Error(`auto.${field} ${JSON.stringify(v)} is not a positive duration such as 5m`);
    return s;
  };
  const minS = seconds("minInterval", a.minInterval);
  const maxS = seconds("maxInterval", a.maxInterval);
  if (minS > maxS)
    throw new Error(`auto.minInterval ${a.minInterval} is longer than auto.maxInterval ${a.maxInterval}`);
  return {
    minS,
    maxS,
    assumedMtbfS: seconds("assumedMtbf", a.assumedMtbf),
    costFrom: a.costFrom,
    formula: a.formula,
  };
}

export interface CadenceInputs {
  auto: SnapshotPolicyAuto | undefined;
  /** `vm/<name>` or `group/<name>`. */
  target: string;
  /** The hosts its VMs run on, each with its measured MTBF when it has one. Empty: not placed. */
  hosts: { name: string; mtbfSeconds?: number }[];
  /** Checkpoint costs in seconds (costFrom's measure), newest first; see checkpointCost. */
  costSamples: number[];
  /** When the newest checkpoint attempt (any outcome) started; undefined: none yet. */
  lastCheckpoint: Date | undefined;
  /**
   * When the target last resumed from one of its checkpoints (a VM's host-failure recovery with
   * onHostFailure RestoreCheckpoint that succeeded: status.lastRecovery.finishedAt when it names a
   * checkpoint); undefined: never, or not known (then the interval counts from lastCheckpoint
   * alone). For a group, only when every VM of it resumed from the same checkpoint: a member
   * that kept running holds work no checkpoint has.
   */
  resumedAt?: Date | undefined;
  /** The due time of a first checkpoint: a fixed time in the past (the policy's creation). */
  firstDue: Date;
  now: Date;
}

export interface CadenceDecision {
  /** Whether a checkpoint is due now, and for which due time (it names the snapshot). */
  due: Date | undefined;
  status: SnapshotCadence;
}

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;

export function decideCadence(input: CadenceInputs): CadenceDecision {
  const a = resolveAuto(input.auto);
  const hostNames = [...new Set(input.hosts.map((h) => h.name))].sort();
  const perHost = hostNames.map((name) => {
    const m = input.hosts.find((h) => h.name === name)?.mtbfSeconds;
    return typeof m === "number" && Number.isFinite(m) && m > 0
      ? { name, m, measured: true }
      : { name, m: a.assumedMtbfS, measured: false };
  });
  const mtbf = perHost.length > 0 ? 1 / perHost.reduce((sum, h) => sum + 1 / h.m, 0) : a.assumedMtbfS;
  const measured = perHost.length > 0 && perHost.every((h) => h.measured);
  const mWords = `M ${round(mtbf, 3)}s (${perHost
    .map((h) => `${h.name} ${h.measured ? "measured" : "assumed"}`)
    .join(", ")})`;
  const base = {
    target: input.target,
    ...(hostNames.length > 0 ? { hosts: hostNames } : {}),
    mtbfSeconds: round(mtbf, 3),
    mtbfSource: measured ? ("measured" as const) : ("assumed" as const),
    ...(input.lastCheckpoint ? { lastCheckpointTime: input.lastCheckpoint.toISOString() } : {}),
  };
  if (hostNames.length === 0)
    return {
      due: undefined,
      status: { ...base, formula: "NotPlaced", message: "no VM of it runs on a host: nothing to checkpoint" },
    };
  if (!input.lastCheckpoint) {
    const due = input.firstDue;
    return {
      due,
      status: {
        ...base,
        formula: "FirstCheckpoint",
        nextRunTime: due.toISOString(),
        message: `no checkpoint yet: one at once, to have one and to measure its cost; ${mWords}`,
      },
    };
  }
  const samples = input.costSamples.filter((c) => Number.isFinite(c) && c >= 0).slice(0, COST_SAMPLES);
  let intervalS: number;
  let status: SnapshotCadence;
  if (samples.length === 0) {
    intervalS = a.minS;
    status = {
      ...base,
      formula: "MinInterval",
      intervalSeconds: intervalS,
      message: `no measured checkpoint cost yet: minInterval ${intervalS}s after the last attempt; ${mWords}`,
    };
  } else {
    const c = samples.reduce((s, x) => s + x, 0) / samples.length;
    const raw = a.formula === "Young" ? youngInterval(c, mtbf) : dalyInterval(c, mtbf);
    const clamped = raw < a.minS ? ("min" as const) : raw > a.maxS ? ("max" as const) : undefined;
    intervalS = round(Math.min(Math.max(raw, a.minS), a.maxS), 3);
    status = {
      ...base,
      costSeconds: round(c, 6),
      costSamples: samples.length,
      formula: a.formula,
      formulaSeconds: round(raw, 3),
      intervalSeconds: intervalS,
      ...(clamped ? { clamped } : {}),
      message:
        `${a.formula}: C ${round(c, 6)}s (${a.costFrom}, mean of ${samples.length}) and ${mWords} give ` +
        `${round(raw, 3)}s${clamped ? `, clamped to ${clamped}Interval ${intervalS}s` : ""}`,
    };
  }
  // From the later of the newest attempt and the newest resume: either leaves no unsaved work.
  const resumed = input.resumedAt;
  const fromResume = resumed !== undefined && resumed.getTime() > input.lastCheckpoint.getTime();
  const from = fromResume ? resumed : input.lastCheckpoint;
  if (fromResume) status.message += `; counted from the resume from a checkpoint at ${resumed.toISOString()}`;
  const next = new Date(from.getTime() + Math.round(intervalS * 1000));
  status.nextRunTime = next.toISOString();
  return { due: input.now.getTime() >= next.getTime() ? next : undefined, status };
}
