/**
 * A connection to one libvirtd over its remote protocol.
 *
 * Contracts:
 * - Many calls in flight at once, matched to replies by serial.
 * - Every call has a deadline (callTimeoutMs) and honours an AbortSignal; an aborted call's late
 *   reply is dropped.
 * - A reply with status Error becomes a LibvirtError carrying libvirt's code, domain and message.
 * - Keepalive (its own program): we answer the daemon's pings, and when nothing at all arrives for
 *   interval * (count + 1) the connection is declared dead: every pending call fails, `health`
 *   turns disconnected, and `onClose` listeners hear why. Reconnection is the caller's choice
 *   (the provider reconnects with backoff).
 * - Asynchronous messages of the remote program (domain events) go to `onMessage` listeners.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { homedir } from "node:os";
import { join } from "node:path";
import { Duplex } from "node:stream";
import { connect as tlsConnect } from "node:tls";
import {
  Feature,
  finishPacket,
  HEADER_SIZE,
  KEEPALIVE_PING,
  KEEPALIVE_PONG,
  KEEPALIVE_PROGRAM,
  KEEPALIVE_VERSION,
  MESSAGE_MAX,
  MessageStatus,
  MessageType,
  Proc,
  REMOTE_PROGRAM,
  REMOTE_PROTOCOL_VERSION,
  readHeader,
  readRemoteError,
  startPacket,
} from "./protocol.js";
import { type ParsedUri, parseLibvirtUri } from "./uri.js";
import { XdrReader, type XdrWriter } from "./xdr.js";

export class LibvirtError extends Error {
  constructor(
    readonly code: number,
    readonly domain: number,
    message: string,
    readonly procedure: number,
  ) {
    super(message);
    this.name = "LibvirtError";
  }
}

/** The connection itself failed (closed, timed out, keepalive lost, aborted). */
export class ConnectionError extends Error {
  constructor(
    message: string,
    readonly reason: "closed" | "timeout" | "keepalive" | "aborted" | "connect" | "protocol",
  ) {
    super(message);
    this.name = "ConnectionError";
  }
}

export interface ClientOptions {
  keepaliveIntervalMs?: number;
  keepaliveCount?: number;
  callTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** TLS material; defaults are libvirt's locations (/etc/pki, ~/.pki/libvirt) or ?pkipath=. */
  tls?: {
    ca?: Buffer | string;
    cert?: Buffer | string;
    key?: Buffer | string;
    rejectUnauthorized?: boolean;
    servername?: string;
  };
}

interface Pending {
  resolve: (r: XdrReader) => void;
  reject: (e: Error) => void;
  procedure: number;
  timer: NodeJS.Timeout;
  cleanup: () => void;
}

export type MessageListener = (procedure: number, body: XdrReader) => void;

export class LibvirtClient {
  readonly target: ParsedUri;
  private socket: Duplex | undefined;
  private child: ChildProcess | undefined;
  private serial = 1;
  private readonly pending = new Map<number, Pending>();
  private chunks: Buffer[] = [];
  private buffered = 0;
  private lastReceived = 0;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private closedError: Error | undefined;
  private readonly messageListeners = new Set<MessageListener>();
  private readonly closeListeners = new Set<(e: Error) => void>();
  private readonly opts: Required<Omit<ClientOptions, "tls">> & Pick<ClientOptions, "tls">;

  constructor(uri: string | ParsedUri, opts: ClientOptions = {}) {
    this.target = typeof uri === "string" ? parseLibvirtUri(uri) : uri;
    this.opts = {
      keepaliveIntervalMs: opts.keepaliveIntervalMs ?? 1000,
      keepaliveCount: opts.keepaliveCount ?? 3,
      callTimeoutMs: opts.callTimeoutMs ?? 30_000,
      connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
      tls: opts.tls,
    };
  }

  get connected(): boolean {
    return !!this.socket && !this.closedError;
  }

  /** When the last bytes arrived from the daemon (keepalive or any message). */
  get lastContact(): Date | undefined {
    return this.lastReceived ? new Date(this.lastReceived) : undefined;
  }

  onMessage(l: MessageListener): () => void {
    this.messageListeners.add(l);
    return () => this.messageListeners.delete(l);
  }

  onClose(l: (e: Error) => void): () => void {
    this.closeListeners.add(l);
    return () => this.closeListeners.delete(l);
  }

  /** Open the transport, ConnectOpen the driver, and start keepalive when the daemon supports it. */
  async connect(signal?: AbortSignal): Promise<void> {
    this.socket = await this.openTransport(signal);
    this.closedError = undefined;
    this.lastReceived = Date.now();
    this.socket.on("data", (b: Buffer) => this.onData(b));
    this.socket.on("error", (e: Error) =>
      this.fail(new ConnectionError(`${this.target.uri}: ${e.message}`, "closed")),
    );
    this.socket.on("close", () =>
      this.fail(new ConnectionError(`${this.target.uri}: connection closed`, "closed")),
    );
    await this.call(
      Proc.ConnectOpen,
      (w) => w.optString(this.target.name).uint(0),
      () => undefined,
      signal,
    );
    const keepalive = await this.call(
      Proc.ConnectSupportsFeature,
      (w) => w.int(Feature.ProgramKeepalive).uint(0),
      (r) => r.int(),
      signal,
    );
    if (keepalive && this.opts.keepaliveIntervalMs > 0) this.startKeepalive();
  }

  private openTransport(signal?: AbortSignal): Promise<Duplex> {
    const t = this.target;
    return new Promise<Duplex>((resolve, reject) => {
      let sock: Duplex;
      let readyEvent = "connect";
      // The abort listener must go once the transport is up: the signal belongs to whoever
      // asked for the connection (one reconcile) and aborting it later must not cut the
      // connection every other caller now shares.
      const onAbort = () => fail(new ConnectionError("aborted", "aborted"));
      const fail = (e: Error) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        sock?.destroy();
        reject(
          e instanceof ConnectionError
            ? e
            : new ConnectionError(`${t.uri}: cannot connect: ${e.message}`, "connect"),
        );
      };
      const timer = setTimeout(
        () =>
          fail(
            new ConnectionError(`${t.uri}: no connection within ${this.opts.connectTimeoutMs} ms`, "timeout"),
          ),
        this.opts.connectTimeoutMs,
      );
      if (signal?.aborted) return fail(new ConnectionError("aborted", "aborted"));
      signal?.addEventListener("abort", onAbort, { once: true });
      const done = (s: Duplex) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        sock.removeListener("error", fail);
        resolve(s);
      };
      switch (t.transport) {
        case "unix":
          sock = netConnect(t.socket);
          break;
        case "tcp":
          sock = netConnect({ host: t.host, port: t.port ?? 16509, noDelay: true });
          break;
        case "tls": {
          sock = tlsConnect({
            host: t.host,
            port: t.port ?? 16514,
            ...this.tlsMaterial(),
            noDelay: true,
          } as never);
          readyEvent = "secureConnect";
          break;
        }
        case "ssh": {
          sock = this.sshTunnel();
          return done(sock);
        }
      }
      sock.once(readyEvent, () => {
        if (t.transport !== "tls") {
          done(sock);
          return;
        }
        // After the TLS handshake libvirtd checks our certificate and sends one byte: 1 = accepted.
        const onReadable = () => {
          const b = sock.read(1) as Buffer | null;
          if (!b) return;
          sock.removeListener("readable", onReadable);
          if (b[0] !== 1) {
            fail(
              new ConnectionError(
                `${t.uri}: the server rejected our client certificate (or its host check failed)`,
                "connect",
              ),
            );
            return;
          }
          done(sock);
        };
        sock.on("readable", onReadable);
      });
      sock.once("error", fail);
    });
  }

  private tlsMaterial(): {
    ca: Buffer | string;
    cert: Buffer | string;
    key: Buffer | string;
    rejectUnauthorized: boolean;
    servername?: string;
  } {
    const t = this.target;
    const o = this.opts.tls ?? {};
    const pki = t.params.pkipath;
    const read = (...paths: string[]) => {
      for (const p of paths) {
        try {
          return readFileSync(p);
        } catch {}
      }
      throw new ConnectionError(`${t.uri}: TLS needs ${paths.join(" or ")}`, "connect");
    };
    const home = join(homedir(), ".pki", "libvirt");
    return {
      ca: o.ca ?? read(...(pki ? [join(pki, "cacert.pem")] : ["/etc/pki/CA/cacert.pem"])),
      cert:
        o.cert ??
        read(
          ...(pki
            ? [join(pki, "clientcert.pem")]
            : [join(home, "clientcert.pem"), "/etc/pki/libvirt/clientcert.pem"]),
        ),
      key:
        o.key ??
        read(
          ...(pki
            ? [join(pki, "clientkey.pem")]
            : [join(home, "clientkey.pem"), "/etc/pki/libvirt/private/clientkey.pem"]),
        ),
      rejectUnauthorized: o.rejectUnauthorized ?? t.params.no_verify !== "1",
      ...(o.servername
        ? { servername: o.servername }
        : t.host && !/^[\d.]+$/.test(t.host)
          ? { servername: t.host }
          : {}),
    };
  }

  /** Like libvirt's ssh transport: ssh to the host and bridge stdio to the daemon's unix socket. */
  private sshTunnel(): Duplex {
    const t = this.target;
    const args = ["-T", "-e", "none", "-o", "BatchMode=yes"];
    if (t.port) args.push("-p", String(t.port));
    if (t.user) args.push("-l", t.user);
    if (t.params.keyfile) args.push("-i", t.params.keyfile);
    if (t.params.known_hosts) args.push("-o", `UserKnownHostsFile=${t.params.known_hosts}`);
    const nc = t.params.netcat ?? "nc";
    args.push(t.host as string, "--", `${nc} -U ${t.socket}`);
    const child = spawn("ssh", args, { stdio: ["pipe", "pipe", "pipe"] });
    this.child = child;
    let stderr = "";
    child.stderr?.on("data", (b: Buffer) => {
      stderr += b.toString();
    });
    const duplex = Duplex.from({ readable: child.stdout, writable: child.stdin }) as Duplex;
    child.once("exit", (code) =>
      duplex.destroy(new Error(`ssh exited with ${code}${stderr ? `: ${stderr.trim()}` : ""}`)),
    );
    return duplex;
  }

  /** Send a call and decode its reply. */
  call<T>(
    procedure: number,
    write: (w: XdrWriter) => void,
    read: (r: XdrReader) => T,
    signal?: AbortSignal,
  ): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    const sock = this.socket;
    if (!sock) return Promise.reject(new ConnectionError(`${this.target.uri}: not connected`, "closed"));
    if (signal?.aborted)
      return Promise.reject(new ConnectionError(`procedure ${procedure}: aborted`, "aborted"));
    const serial = this.serial++;
    const w = startPacket({
      program: REMOTE_PROGRAM,
      version: REMOTE_PROTOCOL_VERSION,
      procedure,
      type: MessageType.Call,
      serial,
      status: MessageStatus.Ok,
    });
    write(w);
    const packet = finishPacket(w);
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        const p = this.pending.get(serial);
        if (!p) return;
        this.pending.delete(serial);
        p.cleanup();
        reject(new ConnectionError(`procedure ${procedure}: aborted`, "aborted"));
      };
      const timer = setTimeout(() => {
        this.pending.delete(serial);
        signal?.removeEventListener("abort", onAbort);
        reject(
          new ConnectionError(
            `${this.target.uri}: procedure ${procedure}: no reply within ${this.opts.callTimeoutMs} ms`,
            "timeout",
          ),
        );
      }, this.opts.callTimeoutMs);
      this.pending.set(serial, {
        procedure,
        timer,
        cleanup: () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
        },
        resolve: (r) => {
          try {
            resolve(read(r));
          } catch (e) {
            reject(
              new ConnectionError(
                `${this.target.uri}: procedure ${procedure}: bad reply: ${(e as Error).message}`,
                "protocol",
              ),
            );
          }
        },
        reject,
      });
      signal?.addEventListener("abort", onAbort, { once: true });
      sock.write(packet);
    });
  }

  private onData(b: Buffer): void {
    this.lastReceived = Date.now();
    this.chunks.push(b);
    this.buffered += b.length;
    while (this.buffered >= 4) {
      let buf =
        this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.buffered);
      const len = buf.readUInt32BE(0);
      if (len < 4 + HEADER_SIZE || len > MESSAGE_MAX) {
        this.fail(new ConnectionError(`${this.target.uri}: bad packet length ${len}`, "protocol"));
        this.socket?.destroy();
        return;
      }
      if (this.buffered < len) {
        this.chunks = [buf];
        return;
      }
      const packet = buf.subarray(0, len);
      buf = buf.subarray(len);
      this.chunks = buf.length ? [buf] : [];
      this.buffered = buf.length;
      this.dispatch(packet);
    }
  }

  private dispatch(packet: Buffer): void {
    const r = new XdrReader(packet, 4);
    const h = readHeader(r);
    if (h.program === KEEPALIVE_PROGRAM) {
      if (h.procedure === KEEPALIVE_PING) this.sendKeepalive(KEEPALIVE_PONG);
      return;
    }
    if (h.program !== REMOTE_PROGRAM) return;
    if (h.type === MessageType.Message) {
      for (const l of this.messageListeners) {
        try {
          l(h.procedure, new XdrReader(packet, r.pos));
        } catch {
          // A listener's bug must not break the connection.
        }
      }
      return;
    }
    const p = this.pending.get(h.serial);
    if (!p) return;
    this.pending.delete(h.serial);
    p.cleanup();
    if (h.status === MessageStatus.Error) {
      try {
        const e = readRemoteError(r);
        p.reject(new LibvirtError(e.code, e.domain, e.message ?? `libvirt error ${e.code}`, h.procedure));
      } catch (err) {
        p.reject(new ConnectionError(`undecodable error reply: ${(err as Error).message}`, "protocol"));
      }
      return;
    }
    p.resolve(r);
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
    this.socket?.write(finishPacket(w));
  }

  private startKeepalive(): void {
    const { keepaliveIntervalMs: interval, keepaliveCount: count } = this.opts;
    this.keepaliveTimer = setInterval(() => {
      const silent = Date.now() - this.lastReceived;
      if (silent >= interval * (count + 1)) {
        this.fail(
          new ConnectionError(`${this.target.uri}: no keepalive answer for ${silent} ms`, "keepalive"),
        );
        this.socket?.destroy();
        return;
      }
      if (silent >= interval) this.sendKeepalive(KEEPALIVE_PING);
    }, interval);
    this.keepaliveTimer.unref();
  }

  private fail(e: Error): void {
    if (this.closedError) return;
    this.closedError = e;
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    for (const [serial, p] of this.pending) {
      this.pending.delete(serial);
      p.cleanup();
      p.reject(e);
    }
    for (const l of this.closeListeners) l(e);
  }

  async close(): Promise<void> {
    if (this.socket && !this.closedError) {
      await this.call(
        Proc.ConnectClose,
        () => undefined,
        () => undefined,
        AbortSignal.timeout(2000),
      ).catch(() => undefined);
    }
    this.fail(new ConnectionError(`${this.target.uri}: closed by us`, "closed"));
    this.socket?.destroy();
    this.child?.kill("SIGTERM");
    this.socket = undefined;
  }
}
