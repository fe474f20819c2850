/**
 * A host's measured reliability (status.reliability): failures, up and down time, MTBF, MTTR and
 * availability, accumulated from what the Host reconciler concludes beat after beat. Pure.
 *
 * What counts:
 * - Up: the host answers (Ready, Maintenance).
 * - Down: the host is judged dead by the heartbeat rule (heartbeat.ts): silent below libvirt too,
 *   or libvirt gone past MANAGEMENT_DOWN_FENCE_AFTER_MS; that is Unreachable with fencing engaged,
 *   Fencing or Fenced. Entering it from up is one failure, timed from the host's last answered
 *   heartbeat (as a VM's recovery is): the time between that beat and the verdict is down time.
 * - Uncertain (nothing folded until it resolves): beats missed but no verdict yet, and libvirt not
 *   answering while the host answers at the network level (a libvirtd restart). If the host
 *   answers again the whole span was up and nothing failed; if it is judged dead, the span from
 *   its last answer on was down.
 * - Not observed: Pending (never reached), PoweredOff on purpose (consolidation), and any time no
 *   controller ran. A controller that starts resumes from the persisted figures and counts from
 *   its first observation: it never credits the gap to either side, and a down episode it finds
 *   already recorded (the persisted phase was down) is not counted again.
 *
 * Writes: the running span is folded into the figures (and so into status) only when the host
 * changes between up, down and not observed, when the status is written anyway (the Host
 * reconciler persists lastHeartbeat every 30 s while the host answers), or after FOLD_MAX_MS
 * otherwise. A heartbeat alone never makes a status write, in either store; a crash loses at most
 * the unfolded span, which is then not observed time (never invented uptime).
 */
import type { HostPhase, HostReliability, HostStatus } from "../../api/types.js";

/** The longest span kept unfolded while nothing else writes the status (a host staying down). */
export const FOLD_MAX_MS = 5 * 60_000;

export type HostCondition = "up" | "down" | "uncertain" | "unobserved";

/** What this controller has accounted: until when, and what the host was then. In memory only. */
export interface ReliabilityMark {
  at: Date;
  condition: "up" | "down" | "unobserved";
}

export interface ReliabilityInput {
  prev: HostReliability | undefined;
  /**
   * The persisted status says a down episode is under way and already counted (downRecorded of
   * the status before this reconcile): a controller starting then does not count it again.
   */
  downRecorded: boolean;
  /** This controller's mark; undefined: it has not observed the host yet (just started). */
  mark: ReliabilityMark | undefined;
  observed: HostCondition;
  /** The host's last answered heartbeat seen by this controller. */
  lastAnswer: Date | undefined;
  /** The status is written in this reconcile anyway: a fold costs no extra write. */
  writing: boolean;
  now: Date;
}

export interface ReliabilityResult {
  reliability: HostReliability | undefined;
  mark: ReliabilityMark | undefined;
}

/**
 * Whether a status records a down episode under way that was counted: Fencing and Fenced are only
 * reached by a verdict; Unreachable also by libvirt down while the host answers, which is counted
 * only if its failure was (lastFailureTime is the last answer, persisted as lastHeartbeat at the
 * phase change, or later).
 */
export function downRecorded(s: HostStatus | undefined): boolean {
  if (!s?.reliability) return false;
  if (s.phase === "Fenced" || s.phase === "Fencing") return true;
  const failed = s.reliability.lastFailureTime;
  return (
    s.phase === "Unreachable" &&
    failed !== undefined &&
    Date.parse(failed) >= Date.parse(s.lastHeartbeat ?? s.reliability.since)
  );
}

/**
 * The host's condition for accounting. `judgedDead`: the heartbeat verdict engaged fencing (any
 * outcome but notNeeded/deferred); `answering`: connected with no missed beat.
 */
export function hostCondition(phase: HostPhase, judgedDead: boolean, answering: boolean): HostCondition {
  if (phase === "Pending" || phase === "PoweredOff") return "unobserved";
  if (phase === "Fenced" || phase === "Fencing" || judgedDead) return "down";
  if (answering && (phase === "Ready" || phase === "Maintenance")) return "up";
  return "uncertain";
}

const secs = (ms: number) => Math.max(0, ms) / 1000;
const round3 = (n: number) => Math.round(n * 1000) / 1000;

function withDerived(r: HostReliability, recovered: boolean): HostReliability {
  const out: HostReliability = {
    failures: r.failures,
    observedSeconds: round3(r.upSeconds + r.downSeconds),
    upSeconds: round3(r.upSeconds),
    downSeconds: round3(r.downSeconds),
    since: r.since,
    ...(r.lastFailureTime ? { lastFailureTime: r.lastFailureTime } : {}),
  };
  if (out.failures > 0) out.mtbfSeconds = round3(out.upSeconds / out.failures);
  // Every failure so far has finished when the host comes back, so MTTR is down time / failures
  // then; while down, the last figure stands (the episode under way is not finished).
  if (recovered && out.failures > 0) out.mttrSeconds = round3(out.downSeconds / out.failures);
  else if (r.mttrSeconds !== undefined) out.mttrSeconds = r.mttrSeconds;
  if (out.observedSeconds > 0)
    out.availability = Math.round((out.upSeconds / out.observedSeconds) * 1e6) / 1e6;
  return out;
}

export function accountReliability(i: ReliabilityInput): ReliabilityResult {
  const { now, observed } = i;
  const base: HostReliability = i.prev ?? {
    failures: 0,
    observedSeconds: 0,
    upSeconds: 0,
    downSeconds: 0,
    // Observation began at the mark, unless the host was not observed since then.
    since: (i.mark && i.mark.condition !== "unobserved" ? i.mark.at : now).toISOString(),
  };
  if (!i.mark) {
    // First observation by this controller: no time before it is credited.
    if (observed === "uncertain") {
      // Resolved later: from here on, up if it answers, down if judged dead (or, when the episode
      // was counted before the restart, down either way).
      return { reliability: i.prev, mark: { at: now, condition: i.downRecorded ? "down" : "up" } };
    }
    if (observed === "unobserved") return { reliability: i.prev, mark: { at: now, condition: observed } };
    const mark: ReliabilityMark = { at: now, condition: observed };
    if (observed === "down" && !i.downRecorded) {
      // A down episode not recorded yet (it began while no controller watched): one failure,
      // its start unknown, timed from now.
      return {
        reliability: withDerived(
          { ...base, failures: base.failures + 1, lastFailureTime: now.toISOString() },
          false,
        ),
        mark,
      };
    }
    return { reliability: i.prev ?? withDerived(base, false), mark };
  }
  const { mark } = i;
  if (observed === "uncertain") return { reliability: i.prev, mark };
  const spanMs = now.getTime() - mark.at.getTime();
  if (observed === mark.condition) {
    if (observed === "unobserved" || !(i.writing || spanMs >= FOLD_MAX_MS) || spanMs <= 0)
      return { reliability: i.prev, mark };
    const r = { ...base };
    if (observed === "up") r.upSeconds += secs(spanMs);
    else r.downSeconds += secs(spanMs);
    return { reliability: withDerived(r, false), mark: { at: now, condition: observed } };
  }
  const r = { ...base };
  let recovered = false;
  if (mark.condition === "up") {
    if (observed === "down") {
      // Failed at its last answer (clamped into the span: before the mark is already counted up).
      const answer = i.lastAnswer?.getTime() ?? mark.at.getTime();
      const failedAt = Math.min(now.getTime(), Math.max(mark.at.getTime(), answer));
      r.upSeconds += secs(failedAt - mark.at.getTime());
      r.downSeconds += secs(now.getTime() - failedAt);
      r.failures += 1;
      r.lastFailureTime = new Date(failedAt).toISOString();
    } else r.upSeconds += secs(spanMs);
  } else if (mark.condition === "down") {
    r.downSeconds += secs(spanMs);
    recovered = observed === "up";
  } else if (observed === "down") {
    // From not observed (just reached, or switched on again) straight to down: a failure now.
    r.failures += 1;
    r.lastFailureTime = now.toISOString();
  }
  return { reliability: withDerived(r, recovered), mark: { at: now, condition: observed } };
}
