/**
 * A connection to one libvirtd over its remote protocol.
 *
 * Contracts:
 * - Many calls in flight at once, matched to replies by serial (the 32-bit serial on the wire,
 *   wrapping at 2^32 and skipping 0, as libvirt does).
 * - Every call has a deadline (callTimeoutMs; jobTimeoutMs for the procedures that run a job,
 *   JOB_PROCEDURES) and honours an AbortSignal; an aborted call's late reply is dropped.
 * - A call timeout closes the connection: libvirtd answers every call, so one unanswered for
 *   callTimeoutMs means the daemon or the link is wedged and every call behind it would wait as
 *   long. The one exception is a quick call timing out while one of our job calls is still
 *   running, since libvirtd then may be holding our requests behind its max_client_requests; that
 *   call fails alone. The caller reconnects (the provider does, on its next heartbeat).
 * - A reply with status Error becomes a LibvirtError carrying libvirt's code, domain and message.
 * - Whatever the daemon sends cannot crash or wedge us: a bad frame length, a header for another
 *   program or version, a reply nobody waits for or for another procedure, a body that does not
 *   decode, an event body that does not decode, a connection cut mid-frame — each closes the
 *   connection with a ConnectionError (reason "protocol") naming the host and what was wrong, and
 *   rejects every pending call. Inbound memory is bounded by one frame (MESSAGE_MAX), outbound by
 *   maxOutboundBytes: a peer that stops reading is declared dead ("stalled") once our unread
 *   bytes pass it.
 * - Liveness: we answer the daemon's keepalive pings; every keepaliveIntervalMs of silence we
 *   probe (a keepalive ping, or a ConnectGetLibVersion call where the daemon lacks keepalive), and
 *   after interval * (count + 1) with nothing at all received the connection is declared dead:
 *   pending calls fail, `connected` turns false, and `onClose` listeners hear why.
 *   keepaliveIntervalMs: 0 turns probing off.
 * - Asynchronous messages of the remote program (domain events) go to `onMessage` listeners. A
 *   listener's XdrError means the event body was malformed (a protocol error as above); any other
 *   exception from a listener is its own bug and is ignored.
 */
import type { ChildProcess } from "node:child_process";
import type { Duplex } from "node:stream";
import { ConnectionError, LibvirtError } from "./errors.js";
import { FrameAssembler, FramingError, OutboundQueue } from "./framing.js";
import {
  Feature,
  finishPacket,
  KEEPALIVE_PING,
  KEEPALIVE_PONG,
  KEEPALIVE_PROGRAM,
  KEEPALIVE_VERSION,
  MESSAGE_MAX,
  MessageStatus,
  MessageType,
  Proc,
  procName,
  REMOTE_PROGRAM,
  REMOTE_PROTOCOL_VERSION,
  readHeader,
  readRemoteError,
  startPacket,
} from "./protocol.js";
import { readIntRet, readUhyperRet, readVoid } from "./replies.js";
import { openTransport, type TransportOptions } from "./transport.js";
import { type ParsedUri, parseLibvirtUri } from "./uri.js";
import { XdrError, XdrReader, type XdrWriter } from "./xdr.js";

export { ConnectionError, LibvirtError } from "./errors.js";

export interface ClientOptions {
  /** Probe after this much silence; 0 turns keepalive and the liveness probe off. */
  keepaliveIntervalMs?: number;
  keepaliveCount?: number;
  callTimeoutMs?: number;
  /** Deadline of the calls that run a job on the host (JOB_PROCEDURES). */
  jobTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** Bytes we may have written that the daemon has not read yet; past this it is "stalled". */
  maxOutboundBytes?: number;
  /** The first call serial; for tests of the 2^32 wrap. */
  firstSerial?: number;
  tls?: TransportOptions["tls"];
}

/**
 * Outbound cap: the largest call we can send is one REMOTE_STRING_MAX string (a 4 MiB domain
 * XML) plus a header, so 8 MiB holds any single call plus thousands of small ones queued behind
 * libvirtd's max_client_requests, and bounds what a peer that never reads costs us.
 */
export const DEFAULT_MAX_OUTBOUND_BYTES = 8 * 1024 * 1024;

/**
 * Procedures that run a host-side job and may legitimately outlast callTimeoutMs: migration,
 * save/restore, snapshots, volume copy or preallocation, pool refresh, start (which may restore
 * a managed save) and destroy (which waits for a QEMU stuck in I/O to die).
 */
const JOB_PROCEDURES: ReadonlySet<number> = new Set([
  Proc.DomainDestroy,
  Proc.StorageVolCreateXML,
  Proc.StoragePoolRefresh,
  Proc.DomainMigratePerform3Params,
  Proc.DomainSaveFlags,
  Proc.DomainRestoreFlags,
  Proc.DomainManagedSave,
  Proc.DomainSnapshotCreateXML,
  Proc.DomainRevertToSnapshot,
  Proc.DomainSnapshotDelete,
  Proc.StorageVolCreateXMLFrom,
  Proc.DomainCreateWithFlags,
]);

/** Serials of aborted calls whose late replies are still expected (oldest forgotten first). */
const ABANDONED_MAX = 4096;

interface Pending {
  procedure: number;
  job: boolean;
  read: (r: XdrReader) => unknown;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  cleanup: () => void;
}

export type MessageListener = (procedure: number, body: XdrReader) => void;

export class LibvirtClient {
  readonly target: ParsedUri;
  private socket: Duplex | undefined;
  private child: ChildProcess | undefined;
  private serial: number;
  private readonly pending = new Map<number, Pending>();
  private readonly abandoned = new Set<number>();
  private frames = new FrameAssembler();
  private out: OutboundQueue | undefined;
  private lastReceived = 0;
  /**
   * Monotonic time (performance.now) from which the daemon counts as silent: the last bytes heard,
   * moved forward by any time this process itself could not listen (a stalled event loop, SIGSTOP).
   */
  private heardAt = 0;
  private lastLivenessTick = 0;
  private livenessTimer: NodeJS.Timeout | undefined;
  private probing = false;
  /** Whether the daemon takes keepalive messages (known after the handshake). */
  private keepaliveSupported = false;
  /** Pings waiting for the daemon's next PONG (ping()). */
  private readonly pongWaiters = new Set<{ resolve: () => void; reject: (e: Error) => void }>();
  private closedError: Error | undefined;
  private readonly messageListeners = new Set<MessageListener>();
  private readonly closeListeners = new Set<(e: Error) => void>();
  private readonly opts: Required<Omit<ClientOptions, "tls" | "firstSerial">> & Pick<ClientOptions, "tls">;

  constructor(uri: string | ParsedUri, opts: ClientOptions = {}) {
    this.target = typeof uri === "string" ? parseLibvirtUri(uri) : uri;
    this.opts = {
      keepaliveIntervalMs: opts.keepaliveIntervalMs ?? 1000,
      keepaliveCount: opts.keepaliveCount ?? 3,
      callTimeoutMs: opts.callTimeoutMs ?? 30_000,
      jobTimeoutMs: opts.jobTimeoutMs ?? 600_000,
      connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
      maxOutboundBytes: opts.maxOutboundBytes ?? DEFAULT_MAX_OUTBOUND_BYTES,
      tls: opts.tls,
    };
    this.serial = (opts.firstSerial ?? 1) >>> 0 || 1;
  }

  get connected(): boolean {
    return !!this.socket && !this.closedError;
  }

  /** When the last bytes arrived from the daemon (keepalive or any message). */
  get lastContact(): Date | undefined {
    return this.lastReceived ? new Date(this.lastReceived) : undefined;
  }

  /** Bytes received and held for a frame not yet complete (at most MESSAGE_MAX). */
  get bufferedInboundBytes(): number {
    return this.frames.buffered;
  }

  /** Bytes written that the daemon has not taken yet (at most maxOutboundBytes). */
  get bufferedOutboundBytes(): number {
    return this.out?.buffered ?? 0;
  }

  get pendingCalls(): number {
    return this.pending.size;
  }

  onMessage(l: MessageListener): () => void {
    this.messageListeners.add(l);
    return () => this.messageListeners.delete(l);
  }

  onClose(l: (e: Error) => void): () => void {
    this.closeListeners.add(l);
    return () => this.closeListeners.delete(l);
  }

  /**
   * Open the transport, ConnectOpen the driver, and start liveness probing. On any failure the
   * socket is closed and `connected` is false before the error is thrown.
   */
  async connect(signal?: AbortSignal): Promise<void> {
    const { sock, child } = await openTransport(this.target, this.opts, signal);
    this.socket = sock;
    this.child = child;
    this.closedError = undefined;
    this.lastReceived = Date.now();
    this.heardAt = performance.now();
    this.frames = new FrameAssembler();
    this.out = new OutboundQueue(sock, this.opts.maxOutboundBytes);
    sock.on("data", (b: Buffer) => this.onData(b));
    sock.on("error", (e: Error) =>
      this.failAndClose(new ConnectionError(`${this.target.uri}: ${e.message}`, "closed")),
    );
    sock.on("close", () => this.onSocketClose());
    try {
      await this.call(Proc.ConnectOpen, (w) => w.optString(this.target.name).uint(0), readVoid, signal);
      const keepalive = await this.call(
        Proc.ConnectSupportsFeature,
        (w) => w.int(Feature.ProgramKeepalive).uint(0),
        readIntRet,
        signal,
      );
      this.keepaliveSupported = keepalive === 1;
      this.startLiveness(this.keepaliveSupported);
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      this.failAndClose(
        err instanceof ConnectionError
          ? err
          : new ConnectionError(`${this.target.uri}: connection handshake failed: ${err.message}`, "connect"),
      );
      throw err;
    }
  }

  /** Send a call and decode its reply. */
  call<T>(
    procedure: number,
    write: (w: XdrWriter) => void,
    read: (r: XdrReader) => T,
    signal?: AbortSignal,
  ): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    const out = this.out;
    if (!this.socket || !out)
      return Promise.reject(new ConnectionError(`${this.target.uri}: not connected`, "closed"));
    if (signal?.aborted)
      return Promise.reject(new ConnectionError(`${procName(procedure)}: aborted`, "aborted"));
    const serial = this.nextSerial();
    let packet: Buffer;
    try {
      const w = startPacket({
        program: REMOTE_PROGRAM,
        version: REMOTE_PROTOCOL_VERSION,
        procedure,
        type: MessageType.Call,
        serial,
        status: MessageStatus.Ok,
      });
      write(w);
      packet = finishPacket(w);
      if (packet.length > MESSAGE_MAX)
        throw new XdrError(`the call is ${packet.length} bytes, over libvirt's ${MESSAGE_MAX}`);
    } catch (e) {
      return Promise.reject(
        new XdrError(`${this.target.uri}: ${procName(procedure)}: cannot encode: ${(e as Error).message}`),
      );
    }
    const job = JOB_PROCEDURES.has(procedure);
    const timeoutMs = job ? this.opts.jobTimeoutMs : this.opts.callTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        if (!this.forget(serial)) return;
        this.rememberAbandoned(serial);
        reject(new ConnectionError(`${procName(procedure)}: aborted`, "aborted"));
      };
      // Yield to I/O once before judging: after a stall of ours the reply may be sitting unread.
      const timer = setTimeout(() => setImmediate(() => this.onTimeout(serial, timeoutMs)), timeoutMs);
      this.pending.set(serial, {
        procedure,
        job,
        read,
        resolve: resolve as (v: unknown) => void,
        reject,
        cleanup: () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
        },
      });
      signal?.addEventListener("abort", onAbort, { once: true });
      if (!out.send(packet)) this.stalled();
    });
  }

  private nextSerial(): number {
    let s = this.serial;
    while (this.pending.has(s) || this.abandoned.has(s)) s = (s + 1) >>> 0 || 1;
    this.serial = (s + 1) >>> 0 || 1;
    return s;
  }

  /** Remove a pending call and stop its timer; false if it was no longer pending. */
  private forget(serial: number): Pending | undefined {
    const p = this.pending.get(serial);
    if (!p) return undefined;
    this.pending.delete(serial);
    p.cleanup();
    return p;
  }

  private rememberAbandoned(serial: number): void {
    this.abandoned.add(serial);
    if (this.abandoned.size > ABANDONED_MAX) {
      const oldest = this.abandoned.values().next().value as number;
      this.abandoned.delete(oldest);
    }
  }

  private onTimeout(serial: number, timeoutMs: number): void {
    const p = this.forget(serial);
    if (!p) return;
    const what = `${this.target.uri}: ${procName(p.procedure)}: no reply within ${timeoutMs} ms`;
    const jobRunning = [...this.pending.values()].some((q) => q.job);
    if (!p.job && jobRunning) {
      this.rememberAbandoned(serial);
      p.reject(new ConnectionError(`${what} (a job call of ours is still running)`, "timeout"));
      return;
    }
    p.reject(new ConnectionError(what, "timeout"));
    this.failAndClose(new ConnectionError(`${what}; closing the connection as wedged`, "timeout"));
  }

  private stalled(): void {
    this.failAndClose(
      new ConnectionError(
        `${this.target.uri}: the daemon is not reading: ${this.bufferedOutboundBytes} bytes we sent are ` +
          `still unread (limit ${this.opts.maxOutboundBytes}); closing the connection`,
        "stalled",
      ),
    );
  }

  private onData(b: Buffer): void {
    if (this.closedError) return;
    this.lastReceived = Date.now();
    this.heardAt = performance.now();
    let frames: Buffer[];
    try {
      frames = this.frames.push(b);
    } catch (e) {
      this.protocolFailure(e instanceof FramingError ? e.message : `framing: ${(e as Error).message}`);
      return;
    }
    for (const f of frames) {
      if (this.closedError) return;
      try {
        this.dispatch(f);
      } catch (e) {
        // Dispatch runs in the socket's 'data' handler: nothing may escape it.
        this.protocolFailure((e as Error).message);
      }
    }
  }

  /** Throws (XdrError or Error) for anything that is not a well-formed message we expect. */
  private dispatch(frame: Buffer): void {
    const r = new XdrReader(frame, 4);
    const h = readHeader(r);
    if (h.program === KEEPALIVE_PROGRAM) {
      if (h.version !== KEEPALIVE_VERSION || h.type !== MessageType.Message)
        throw new Error(`keepalive message with version ${h.version} and type ${h.type}`);
      if (h.procedure === KEEPALIVE_PING) this.sendKeepalive(KEEPALIVE_PONG);
      else if (h.procedure !== KEEPALIVE_PONG) throw new Error(`keepalive procedure ${h.procedure}`);
      else {
        const waiters = [...this.pongWaiters];
        this.pongWaiters.clear();
        for (const w of waiters) w.resolve();
      }
      return;
    }
    if (h.program !== REMOTE_PROGRAM)
      throw new Error(`a message for program 0x${h.program.toString(16)}, not libvirt's remote program`);
    if (h.version !== REMOTE_PROTOCOL_VERSION) throw new Error(`remote protocol version ${h.version}`);
    if (h.type === MessageType.Message) {
      if (h.status !== MessageStatus.Ok)
        throw new Error(`event ${procName(h.procedure)} with status ${h.status}`);
      for (const l of this.messageListeners) {
        try {
          l(h.procedure, new XdrReader(frame, r.pos));
        } catch (e) {
          if (e instanceof XdrError)
            throw new Error(`undecodable event ${procName(h.procedure)}: ${e.message}`);
          // Any other exception is the listener's own bug: it must not break the connection.
        }
      }
      return;
    }
    if (h.type !== MessageType.Reply)
      throw new Error(
        `message type ${h.type} (${procName(h.procedure)}, serial ${h.serial}): we make no such calls`,
      );
    const p = this.pending.get(h.serial);
    if (!p) {
      if (this.abandoned.delete(h.serial)) return; // the late reply of an aborted call
      throw new Error(
        `a reply with serial ${h.serial} (${procName(h.procedure)}), which no call of ours awaits`,
      );
    }
    if (h.procedure !== p.procedure)
      throw new Error(
        `the reply to serial ${h.serial} is for ${procName(h.procedure)}, but that call was ${procName(p.procedure)}`,
      );
    if (h.status === MessageStatus.Ok) {
      let value: unknown;
      try {
        value = p.read(r);
      } catch (e) {
        throw new Error(`undecodable reply to ${procName(p.procedure)}: ${(e as Error).message}`);
      }
      this.forget(h.serial);
      p.resolve(value);
      return;
    }
    if (h.status !== MessageStatus.Error)
      throw new Error(`reply to ${procName(p.procedure)} with status ${h.status}`);
    let e: ReturnType<typeof readRemoteError>;
    try {
      e = readRemoteError(r);
    } catch (err) {
      throw new Error(`undecodable error reply to ${procName(p.procedure)}: ${(err as Error).message}`);
    }
    this.forget(h.serial);
    p.reject(new LibvirtError(e.code, e.domain, e.message ?? `libvirt error ${e.code}`, h.procedure));
  }

  private protocolFailure(what: string): void {
    this.failAndClose(
      new ConnectionError(
        `${this.target.uri}: protocol error from the daemon: ${what}; closing the connection`,
        "protocol",
      ),
    );
  }

  private onSocketClose(): void {
    const partial = this.frames.partial;
    if (partial)
      this.protocolFailure(
        `the connection closed in the middle of a message (${partial.have} of ${partial.want || "?"} bytes)`,
      );
    else this.failAndClose(new ConnectionError(`${this.target.uri}: connection closed`, "closed"));
  }

  private sendKeepalive(proc: number): void {
    const w = startPacket({
      program: KEEPALIVE_PROGRAM,
      version: KEEPALIVE_VERSION,
      procedure: proc,
      type: MessageType.Message,
      serial: 0,
      status: MessageStatus.Ok,
    });
    if (this.out && !this.out.send(finishPacket(w))) this.stalled();
  }

  private startLiveness(keepaliveSupported: boolean): void {
    const { keepaliveIntervalMs: interval, keepaliveCount: count } = this.opts;
    if (interval <= 0) return;
    const how = keepaliveSupported ? "keepalive" : "keepalive unsupported, liveness probe";
    this.lastLivenessTick = performance.now();
    this.livenessTimer = setInterval(() => {
      const now = performance.now();
      // A tick that comes late means this process was not running: the daemon was not silent for
      // that long as far as we can tell, so the stall does not count as its silence.
      const late = now - this.lastLivenessTick - interval;
      this.lastLivenessTick = now;
      if (late > interval / 2) this.heardAt = Math.min(now, this.heardAt + late);
      const bound = interval * (count + 1);
      if (now - this.heardAt >= bound) {
        // Yield to I/O once: what arrived while we were busy is read before the verdict.
        setImmediate(() => {
          const silent = Math.round(performance.now() - this.heardAt);
          if (this.closedError || silent < bound) return;
          this.failAndClose(
            new ConnectionError(
              `${this.target.uri}: no keepalive answer for ${silent} ms (${how})`,
              "keepalive",
            ),
          );
        });
        return;
      }
      const silent = now - this.heardAt;
      if (silent < interval) return;
      if (keepaliveSupported) this.sendKeepalive(KEEPALIVE_PING);
      else if (!this.probing) {
        // Without keepalive any cheap call proves the daemon alive; its reply resets the silence.
        this.probing = true;
        this.call(Proc.ConnectGetLibVersion, () => undefined, readUhyperRet)
          .catch(() => undefined)
          .finally(() => {
            this.probing = false;
          });
      }
    }, interval);
    this.livenessTimer.unref();
  }

  /**
   * Is the daemon there? A keepalive PING answered by a PONG: libvirtd answers it in its event
   * loop, before and apart from its worker threads, so a daemon busy starting domains (every
   * worker taken) answers as fast as an idle one — the round trip measures the host, its network
   * and the daemon's event loop, not its workload. A daemon without keepalive is asked for its
   * version instead (a call, through its workers). Rejects when the connection closes or `signal`
   * aborts; no PONG within callTimeoutMs is a wedged connection, closed as a call timeout is.
   */
  ping(signal?: AbortSignal): Promise<void> {
    if (!this.connected || !this.keepaliveSupported)
      return this.call(Proc.ConnectGetLibVersion, () => undefined, readUhyperRet, signal).then(
        () => undefined,
      );
    const aborted = () => new ConnectionError(`${this.target.uri}: keepalive ping: aborted`, "aborted");
    if (signal?.aborted) return Promise.reject(aborted());
    return new Promise<void>((resolve, reject) => {
      const timeoutMs = this.opts.callTimeoutMs;
      const timer = setTimeout(() => {
        const what = `${this.target.uri}: keepalive ping: no answer within ${timeoutMs} ms`;
        w.reject(new ConnectionError(what, "timeout"));
        this.failAndClose(new ConnectionError(`${what}; closing the connection as wedged`, "timeout"));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.pongWaiters.delete(w);
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        done();
        reject(aborted());
      };
      const w = {
        resolve: () => {
          done();
          resolve();
        },
        reject: (e: Error) => {
          done();
          reject(e);
        },
      };
      this.pongWaiters.add(w);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.sendKeepalive(KEEPALIVE_PING);
    });
  }

  /** Declare the connection dead (once): reject pending calls, tell listeners, drop the socket. */
  private failAndClose(e: Error): void {
    if (this.closedError) return;
    this.closedError = e;
    const waiters = [...this.pongWaiters];
    this.pongWaiters.clear();
    for (const w of waiters) w.reject(e);
    if (this.livenessTimer) clearInterval(this.livenessTimer);
    this.livenessTimer = undefined;
    for (const [serial, p] of this.pending) {
      this.pending.delete(serial);
      p.cleanup();
      p.reject(e);
    }
    this.abandoned.clear();
    this.frames.clear();
    this.out?.clear();
    this.socket?.destroy();
    this.child?.kill("SIGTERM");
    for (const l of this.closeListeners) {
      try {
        l(e);
      } catch {
        // A listener's bug must not stop the others.
      }
    }
  }

  async close(): Promise<void> {
    if (this.socket && !this.closedError) {
      await this.call(Proc.ConnectClose, () => undefined, readVoid, AbortSignal.timeout(2000)).catch(
        () => undefined,
      );
    }
    this.failAndClose(new ConnectionError(`${this.target.uri}: closed by us`, "closed"));
    this.socket = undefined;
    this.child = undefined;
  }
}
