/**
 * A scriptable fake libvirtd on 127.0.0.1 (TCP, port 0) for hostile-input tests. It parses our
 * calls with its own minimal framing (not the client's), answers the handshake and the calls a
 * provider makes while connecting unless told otherwise, and hands every other call to the
 * test's script, which may answer with anything at all: raw bytes, lying headers, nothing.
 */
import { createServer, type Server, type Socket } from "node:net";
import {
  finishPacket,
  type Header,
  KEEPALIVE_PING,
  KEEPALIVE_PONG,
  KEEPALIVE_PROGRAM,
  MessageStatus,
  MessageType,
  Proc,
  REMOTE_PROGRAM,
  startPacket,
} from "../../../../src/providers/libvirt/rpc/protocol.js";
import { XdrReader, XdrWriter } from "../../../../src/providers/libvirt/rpc/xdr.js";

export interface Session {
  sock: Socket;
  /** Calls received, in order (keepalive messages included). */
  received: Header[];
  /** Resolves when the client's side of this connection closed (the server saw 'close'). */
  closed: Promise<void>;
  /** A well-formed reply to `h` (our own encoder, big-endian by hand for the header). */
  reply(h: Header, status?: MessageStatus, body?: (w: XdrWriter) => void): Buffer;
  send(b: Buffer): void;
  ping(): void;
  /** A keepalive PONG (the answer to a client's PING). */
  pong(): void;
}

export interface Script {
  /** SupportsFeature(keepalive) answer; default 1. */
  keepalive?: 0 | 1;
  /** Answer ConnectOpen at all; default true. */
  answerOpen?: boolean;
  /** Called for each remote-program call the fake does not answer itself. */
  onCall?(h: Header, body: XdrReader, s: Session): void;
  /** The callback id answered to a domain event registration for `eventId`; default 1. */
  eventCallbackId?(eventId: number): number;
  /** Called for each keepalive message the client sends (PING or PONG); default: a PING gets a PONG. */
  onKeepalive?(h: Header, s: Session): void;
  /** Called once the handshake (ConnectOpen + SupportsFeature) has been answered. */
  onReady?(s: Session): void;
}

/** Encode a frame by hand: `length` overrides the length word (to lie about it). */
export function rawFrame(h: Header, body: Buffer = Buffer.alloc(0), length?: number): Buffer {
  const b = Buffer.alloc(28 + body.length);
  b.writeUInt32BE(length ?? b.length, 0);
  b.writeUInt32BE(h.program >>> 0, 4);
  b.writeUInt32BE(h.version >>> 0, 8);
  b.writeInt32BE(h.procedure | 0, 12);
  b.writeInt32BE(h.type | 0, 16);
  b.writeUInt32BE(h.serial >>> 0, 20);
  b.writeInt32BE(h.status | 0, 24);
  body.copy(b, 28);
  return b;
}

function keepaliveFrame(procedure: number): Buffer {
  return rawFrame({
    program: KEEPALIVE_PROGRAM,
    version: 1,
    procedure,
    type: MessageType.Message,
    serial: 0,
    status: 0,
  });
}

export function replyHeader(h: Header, status = MessageStatus.Ok): Header {
  return { ...h, type: MessageType.Reply, status };
}

export async function startFakeDaemon(script: Script = {}) {
  const sessions: Session[] = [];
  const server: Server = createServer((sock) => {
    let closedResolve: () => void = () => undefined;
    const s: Session = {
      sock,
      received: [],
      closed: new Promise<void>((r) => {
        closedResolve = r;
      }),
      reply(h, status = MessageStatus.Ok, body) {
        const w = startPacket(replyHeader(h, status), new XdrWriter());
        body?.(w);
        return Buffer.from(finishPacket(w));
      },
      send(b) {
        if (!sock.destroyed) sock.write(b);
      },
      ping() {
        s.send(keepaliveFrame(KEEPALIVE_PING));
      },
      pong() {
        s.send(keepaliveFrame(KEEPALIVE_PONG));
      },
    };
    sessions.push(s);
    sock.on("close", () => closedResolve());
    sock.on("error", () => undefined);
    let buf = Buffer.alloc(0);
    sock.on("data", (d) => {
      buf = buf.length ? Buffer.concat([buf, d]) : d;
      while (buf.length >= 4 && buf.length >= buf.readUInt32BE(0)) {
        const len = buf.readUInt32BE(0);
        const packet = buf.subarray(0, len);
        buf = buf.subarray(len);
        const h: Header = {
          program: packet.readUInt32BE(4),
          version: packet.readUInt32BE(8),
          procedure: packet.readInt32BE(12),
          type: packet.readInt32BE(16),
          serial: packet.readUInt32BE(20),
          status: packet.readInt32BE(24),
        };
        s.received.push(h);
        if (h.program === KEEPALIVE_PROGRAM) {
          // As libvirtd does: a PING is answered with a PONG, unless the script says otherwise.
          if (script.onKeepalive) script.onKeepalive(h, s);
          else if (h.procedure === KEEPALIVE_PING) s.pong();
        }
        if (h.program !== REMOTE_PROGRAM) continue;
        const body = new XdrReader(Buffer.from(packet), 28);
        if (h.procedure === Proc.ConnectOpen) {
          if (script.answerOpen !== false) s.send(s.reply(h));
        } else if (h.procedure === Proc.ConnectSupportsFeature) {
          s.send(s.reply(h, MessageStatus.Ok, (w) => w.int(script.keepalive ?? 1)));
          script.onReady?.(s);
        } else if (h.procedure === Proc.ConnectDomainEventCallbackRegisterAny) {
          const id = script.eventCallbackId?.(body.int()) ?? 1;
          s.send(s.reply(h, MessageStatus.Ok, (w) => w.int(id)));
        } else if (h.procedure === Proc.ConnectNetworkEventRegisterAny)
          s.send(s.reply(h, MessageStatus.Ok, (w) => w.int(2)));
        else if (h.procedure === Proc.ConnectGetCapabilities)
          s.send(s.reply(h, MessageStatus.Ok, (w) => w.string("<capabilities/>")));
        else if (h.procedure === Proc.ConnectClose) s.send(s.reply(h));
        else script.onCall?.(h, body, s);
      }
    });
  });
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  const addr = server.address();
  if (!addr || typeof addr === "string") throw new Error("no port");
  return {
    uri: `qemu+tcp://127.0.0.1:${addr.port}/system`,
    sessions,
    /** The first session, once a client has connected. */
    async session(): Promise<Session> {
      for (let i = 0; i < 1000 && !sessions[0]; i++) await new Promise((r) => setTimeout(r, 5));
      const s = sessions[0];
      if (!s) throw new Error("no client connected to the fake daemon");
      return s;
    },
    async stop(): Promise<void> {
      for (const s of sessions) s.sock.destroy();
      await new Promise<void>((res) => server.close(() => res()));
    },
  };
}

/** Heap in use, after a full GC when the process allows it (node --expose-gc). */
export function heapUsed(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  return process.memoryUsage().heapUsed;
}
