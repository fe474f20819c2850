/**
 * Which heartbeats count as missed, and when missed beats are evidence enough to fence. Pure:
 * beats come in with monotonic times (performance.now) and the controller's own stalls measured
 * by src/controller/loop-stall.ts; the wall clock plays no part, so a clock step never makes a
 * host look silent.
 *
 * Two rules:
 *
 * 1. A beat counts as missed only if the controller could listen for it. A failed beat during
 *    whose span the controller's event loop was stalled (blocked, descheduled, SIGSTOPped, its
 *    machine paused) by more than `stallToleranceMs` (half an interval) is void: it neither counts nor resets the
 *    count. Silence is measured on a "listened" clock that advances by elapsed monotonic time
 *    minus the stalls in it, so one stall of N seconds is never N seconds (nor N beats) of
 *    silence. (The beat itself yields to I/O once before concluding a miss, so a reply that sat
 *    unread in its socket is read first; see reconciler.ts.) The exception is a beat whose
 *    network probe found the host silent: the kernel listened for the answer on our behalf and
 *    the probe read it after yielding, so a stall only made its window longer; it counts.
 *
 * 2. Management down is not host dead. libvirtd restarting or hung leaves the guests running.
 *    Each failed beat after the first is accompanied by a network-level probe of the host (a TCP
 *    connect to its libvirt port, reachability.ts): refused or accepted means the host's kernel
 *    answers ("alive"); no answer at all, or host/network unreachable, means "silent". A host is
 *    fenceable when
 *      - `threshold` consecutive counted misses had no sign of life at the network level
 *        (silent or, where no probe exists for the URI, unprobed), the latest one probed silent
 *        when a probe exists, and at least (threshold - 0.5) intervals of listened silence have
 *        passed since the last sign of life (the answer, or the host's network stack answering);
 *        a dead host is thus fenced after the same ~threshold intervals as before; or
 *      - libvirt has not answered for MANAGEMENT_DOWN_FENCE_AFTER_MS of listened time while the
 *        host kept answering at the network level (a management daemon that never comes back:
 *        its guests are no longer watched, and only fencing lets them be recovered).
 *    Until then a host whose management is down is Unreachable, not fenced, and said so.
 *
 * The half interval of slack on the silence: the threshold-th beat after the last answer comes
 * (threshold - 1) intervals plus the time the last answer took after it; without slack that beat
 * was refused whenever the failing attempt answered faster than the last ping had. A burst of
 * failures (a dropped connection waking extra beats at once) is short of the silence and counts as
 * threshold - 1 at most.
 */

/** What a failed beat learnt about the host below libvirt (reachability.ts). */
export type NetworkEvidence =
  /** The host's network stack answered: a TCP connect was accepted or refused. */
  | "alive"
  /** Nothing answered within the window, or the host/network is unreachable. */
  | "silent"
  /** Not probed (the first failed beat, a URI with no network endpoint, an inconclusive error). */
  | "none";

export interface Beat {
  /** Monotonic ms when the beat started (its request went out). */
  startedAt: number;
  /** Monotonic ms when it was concluded. */
  at: number;
  answered: boolean;
  /** Controller stall (ms) since the previous beat concluded (or since this one started, if first). */
  stalledMs: number;
  network: NetworkEvidence;
}

export interface BeatLedger {
  /** Monotonic ms of the latest beat's conclusion. */
  lastAt: number | undefined;
  /** Listened time (ms) since the ledger began: elapsed monotonic time minus stalls. */
  listened: number;
  /** Misses counted in a row (void beats excluded). */
  missed: number;
  /** Of those, the trailing run with no sign of life at the network level. */
  silentRun: number;
  /** Listened-clock time of the last answer, of the last sign of life, and when management was first seen down in this run. */
  lastAnswerL: number;
  lastSignL: number;
  downSinceL: number | undefined;
  lastNetwork: NetworkEvidence;
  /** Beats voided because the controller was stalled (for logs and tests). */
  voided: number;
}

export interface HeartbeatConfig {
  threshold: number;
  intervalMs: number;
  /** Whether a network-level probe exists for the host's URI (false: sim://, unknown schemes). */
  probeable: boolean;
}

/**
 * The default beat: every 250 ms, 3 missed (spec.heartbeat, --heartbeat-interval). A host that
 * loses power is fenced about 0.6-0.9 s later: 2.5 intervals of listened silence, the last beat
 * waiting 150 ms (beatWindowMs).
 *
 * The false-positive bound. Each beat is a keepalive round trip that libvirtd answers in its
 * event loop (a daemon busy starting guests answers as fast as an idle one) and may take one
 * interval; every failed beat after the first also carries a TCP connect to the libvirt port,
 * whose SYN-ACK or RST the host's kernel sends at once. A healthy host is fenced only if, for 2.5
 * intervals of the controller's listened time, neither its daemon nor its kernel got an answer
 * back within a window: a round trip above 250 ms (the second beat's probe) and then above 150 ms
 * (the deciding beat's), that is one-way delays past ~250 ms lasting ~0.6 s or more. A link with
 * 100 ± 100 ms of jitter (0-200 ms) never does that; a controller stalled (blocked, starved,
 * stopped) never counts the stall as silence (rule 1). Hosts on links slower than that want a
 * longer spec.heartbeat.intervalSeconds: the bound scales with it.
 */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 250;
export const DEFAULT_MISSED_BEATS = 3;

/** libvirt silent this long (listened) while its host answers at the network level: fenced anyway. */
export const MANAGEMENT_DOWN_FENCE_AFTER_MS = 5 * 60_000;

/**
 * A failed beat whose span holds more controller stall than this is void. Half an interval: a
 * busy but running controller (lags of tens to a few hundred ms) still counts its misses, since
 * the yield to I/O before a miss is concluded already reads a reply that arrived late; what is
 * voided is a controller that could not run for much of the beat (stopped, starved).
 */
export function stallToleranceMs(intervalMs: number): number {
  return Math.max(150, intervalMs / 2);
}

export function newLedger(): BeatLedger {
  return {
    lastAt: undefined,
    listened: 0,
    missed: 0,
    silentRun: 0,
    lastAnswerL: 0,
    lastSignL: 0,
    downSinceL: undefined,
    lastNetwork: "none",
    voided: 0,
  };
}

/**
 * How long a beat waits for its answer: one interval, except the beat that can decide a death
 * (the host already probed silent in a run one short of the threshold) waits half of one. A
 * silent host's misses are known only at the end of their windows, so without this it is judged
 * a whole interval after the silence was long enough; a host whose kernel answers is never
 * judged by this beat's timeout (its probe says alive), however slow its libvirtd is.
 */
export function beatWindowMs(l: BeatLedger, cfg: HeartbeatConfig, capMs: number): number {
  const full = Math.min(capMs, cfg.intervalMs);
  const deciding = cfg.probeable && l.lastNetwork === "silent" && l.silentRun >= cfg.threshold - 1;
  return deciding ? Math.max(Math.min(150, full), full / 2) : full;
}

export interface BeatResult {
  ledger: BeatLedger;
  /** false: the beat failed while the controller could not listen; it was not counted. */
  counted: boolean;
}

export function recordBeat(prev: BeatLedger, beat: Beat, cfg: HeartbeatConfig): BeatResult {
  const since = prev.lastAt ?? beat.startedAt;
  const elapsed = Math.max(0, beat.at - since);
  const listened = prev.listened + Math.max(0, elapsed - Math.max(0, beat.stalledMs));
  const l: BeatLedger = { ...prev, lastAt: Math.max(beat.at, prev.lastAt ?? beat.at), listened };
  if (beat.answered) {
    return {
      counted: true,
      ledger: {
        ...l,
        missed: 0,
        silentRun: 0,
        lastAnswerL: listened,
        lastSignL: listened,
        downSinceL: undefined,
        lastNetwork: "none",
      },
    };
  }
  // A probe that found the host silent stands, stall or not: the kernel listened for its SYN-ACK
  // or RST, and the probe read the outcome after yielding to I/O, so a stall only lengthened its
  // window. Anything else that failed while the controller could not run proves nothing.
  if (beat.stalledMs > stallToleranceMs(cfg.intervalMs) && beat.network !== "silent") {
    return { counted: false, ledger: { ...l, voided: prev.voided + 1 } };
  }
  l.missed = prev.missed + 1;
  l.lastNetwork = beat.network;
  if (beat.network === "alive") {
    l.silentRun = 0;
    l.lastSignL = listened;
    l.downSinceL = prev.downSinceL ?? prev.lastAnswerL;
  } else {
    l.silentRun = prev.silentRun + 1;
  }
  return { counted: true, ledger: l };
}

export interface HeartbeatVerdict {
  /** Missed beats as the Host's phase and conditions should see them. */
  missed: number;
  /** The host is judged dead: fencing may start. */
  fenceable: boolean;
  /** libvirt does not answer but the host does at the network level (past the threshold). */
  managementDown: boolean;
  /** Listened silence since the last answer (ms). */
  silentMs: number;
  /** How long (listened ms) management has been down while the host answered. */
  managementDownMs: number;
}

export function judgeHeartbeat(l: BeatLedger, cfg: HeartbeatConfig): HeartbeatVerdict {
  const { threshold, intervalMs } = cfg;
  const need = (threshold - 0.5) * intervalMs;
  const silentMs = l.listened - l.lastAnswerL;
  const lifelessMs = l.listened - l.lastSignL;
  const managementDownMs = l.downSinceL === undefined ? 0 : l.listened - l.downSinceL;
  // A burst of failures shorter than the silence threshold beats take is not yet Unreachable.
  const missed = l.missed >= threshold && silentMs < need ? threshold - 1 : l.missed;
  const dead =
    l.silentRun >= threshold &&
    lifelessMs >= need &&
    (cfg.probeable ? l.lastNetwork === "silent" : l.lastNetwork !== "alive");
  const managementDown = missed >= threshold && l.downSinceL !== undefined && !dead;
  const abandoned = managementDown && managementDownMs >= MANAGEMENT_DOWN_FENCE_AFTER_MS;
  return { missed, fenceable: dead || abandoned, managementDown, silentMs, managementDownMs };
}
