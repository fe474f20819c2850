/**
 * The RPC client against a hostile or broken daemon (a fake on 127.0.0.1): lying length words,
 * string and array lengths meant to wrap our arithmetic, frames cut short, garbage bodies,
 * replies nobody asked for, a daemon that never answers, one that stops reading while it keeps
 * pinging, one without keepalive that goes silent, and a 32 MiB reply. Every case must end with
 * a clear error naming the host, the socket closed (the fake sees 'close'), `connected` false,
 * pending calls rejected, the process alive and its memory bounded.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { LibvirtProvider } from "../../../../src/providers/libvirt/provider.js";
import { LibvirtApi } from "../../../../src/providers/libvirt/rpc/api.js";
import { ConnectionError, LibvirtClient } from "../../../../src/providers/libvirt/rpc/client.js";
import {
  type Header,
  KEEPALIVE_PING,
  KEEPALIVE_PROGRAM,
  MESSAGE_MAX,
  MessageStatus,
  MessageType,
  Proc,
  REMOTE_PROGRAM,
} from "../../../../src/providers/libvirt/rpc/protocol.js";
import { REPLY_DECODERS } from "../../../../src/providers/libvirt/rpc/replies.js";
import type { DomainEvent } from "../../../../src/providers/types.js";
import { heapUsed, rawFrame, replyHeader, type Session, startFakeDaemon } from "./fake-daemon.js";

const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

async function daemon(script: Parameters<typeof startFakeDaemon>[0] = {}) {
  const d = await startFakeDaemon(script);
  stops.push(() => d.stop());
  return d;
}

function client(uri: string, opts: ConstructorParameters<typeof LibvirtClient>[1] = {}) {
  const c = new LibvirtClient(uri, { keepaliveIntervalMs: 0, ...opts });
  stops.push(() => c.close());
  return c;
}

const hostname = (c: LibvirtClient) =>
  c.call(
    Proc.ConnectGetHostname,
    () => undefined,
    (r) => r.string(),
  );

/** Asserts the shape every hostile case must end in. */
async function expectClosedWithProtocolError(c: LibvirtClient, s: Session, err: unknown, what: RegExp) {
  expect(err).toBeInstanceOf(ConnectionError);
  expect((err as ConnectionError).reason).toBe("protocol");
  expect((err as Error).message).toContain("127.0.0.1");
  expect((err as Error).message).toMatch(what);
  expect(c.connected).toBe(false);
  expect(c.pendingCalls).toBe(0);
  expect(c.bufferedInboundBytes).toBe(0);
  await s.closed;
}

describe("hostile daemon: framing", () => {
  it.each([
    ["0xFFFFFFFF", 0xffffffff],
    ["0x7FFFFFFF", 0x7fffffff],
    ["MESSAGE_MAX + 1", MESSAGE_MAX + 1],
    ["0", 0],
    ["4 (no header)", 4],
    ["27 (short header)", 27],
  ])("refuses a length word of %s before buffering anything for it", async (_n, len) => {
    const d = await daemon({
      onCall: (_h, _b, s) => {
        const word = Buffer.alloc(4);
        word.writeUInt32BE(len >>> 0, 0);
        s.send(Buffer.concat([word, Buffer.alloc(4096, 0x41)]));
      },
    });
    const c = client(d.uri);
    await c.connect();
    const err = await hostname(c).catch((e: unknown) => e);
    await expectClosedWithProtocolError(c, await d.session(), err, /frame length \d+ is outside/);
  });

  it("reports a frame cut short by the peer closing, and rejects the call", async () => {
    const d = await daemon({
      onCall: (h, _b, s) => {
        const full = s.reply(h, MessageStatus.Ok, (w) => w.string("x".repeat(200)));
        s.sock.end(full.subarray(0, 100));
      },
    });
    const c = client(d.uri);
    await c.connect();
    const err = await hostname(c).catch((e: unknown) => e);
    await expectClosedWithProtocolError(
      c,
      await d.session(),
      err,
      /middle of a message \(100 of 232 bytes\)/,
    );
  });

  it("refuses a complete frame whose body is shorter than the reply it claims to be", async () => {
    const d = await daemon({ onCall: (h, _b, s) => s.send(rawFrame(replyHeader(h), Buffer.from([0, 0]))) });
    const c = client(d.uri);
    await c.connect();
    const err = await hostname(c).catch((e: unknown) => e);
    await expectClosedWithProtocolError(c, await d.session(), err, /undecodable reply to ConnectGetHostname/);
  });
});

describe("hostile daemon: lengths meant to wrap", () => {
  it.each([0xffffffe5, 0x7ffffffd, 0x7ffffffe, 0x7fffffff, 0xfffffffd, 0xfffffffe, 0xffffffff])(
    "a ListAllDomains reply with a 64 KiB body and a name of length 0x%s fails cleanly, memory bounded",
    async (len) => {
      const d = await daemon({
        onCall: (h, _b, s) => {
          const body = Buffer.alloc(64 * 1024, 0x5a);
          body.writeUInt32BE(10_000, 0); // domains (the old decoder re-read the body for each)
          body.writeUInt32BE(len, 4); // its name's length
          s.send(rawFrame(replyHeader(h), body));
        },
      });
      const c = client(d.uri);
      await c.connect();
      const before = heapUsed();
      const err = await new LibvirtApi(c).listAllDomains().catch((e: unknown) => e);
      await expectClosedWithProtocolError(c, await d.session(), err, /string of \d+ bytes exceeds its limit/);
      // Generous: a wrapped position used to loop until the heap was exhausted (GiBs).
      expect(heapUsed() - before).toBeLessThan(64 * 1024 * 1024);
    },
  );

  it("an array count larger than the body can hold fails before allocating", async () => {
    const d = await daemon({
      onCall: (h, _b, s) => {
        const body = Buffer.alloc(64);
        body.writeUInt32BE(16384, 0); // within REMOTE_DOMAIN_LIST_MAX, but 64 bytes cannot hold them
        s.send(rawFrame(replyHeader(h), body));
      },
    });
    const c = client(d.uri);
    await c.connect();
    const err = await new LibvirtApi(c).listAllDomains().catch((e: unknown) => e);
    await expectClosedWithProtocolError(c, await d.session(), err, /array of 16384 elements needs/);
  });

  it("an array count over REMOTE_DOMAIN_LIST_MAX is refused", async () => {
    const d = await daemon({
      onCall: (h, _b, s) => {
        const body = Buffer.alloc(16);
        body.writeUInt32BE(16385, 0);
        s.send(rawFrame(replyHeader(h), body));
      },
    });
    const c = client(d.uri);
    await c.connect();
    const err = await new LibvirtApi(c).listAllDomains().catch((e: unknown) => e);
    await expectClosedWithProtocolError(
      c,
      await d.session(),
      err,
      /array of 16385 elements exceeds its limit 16384/,
    );
  });

  it("a garbage lifecycle event (name length wrapping to 0 padding) is no 'started' event", async () => {
    // Old arithmetic: (0xFFFFFFFD + 3) & ~3 == 0, so the name swallowed the rest of the body and
    // the following fields were read again from inside it: a "started" event for a binary name.
    let session: Session | undefined;
    const d = await daemon({ onReady: (s) => (session = s) });
    const p = new LibvirtProvider(d.uri, { keepaliveIntervalMs: 0 });
    stops.push(() => p.close());
    const events: DomainEvent[] = [];
    p.onDomainEvent((e) => events.push(e));
    const health: string[] = [];
    p.onHealthChange((h) => health.push(h.error ?? "ok"));
    await p.connect();
    const body = Buffer.alloc(64, 0);
    body.writeInt32BE(1, 0); // callbackID
    body.writeUInt32BE(0xfffffffd, 4); // name length
    body.fill(0xee, 8, 24); // "uuid"
    body.writeInt32BE(7, 24); // id
    body.writeInt32BE(2, 28); // event: started
    body.writeInt32BE(0, 32); // detail: booted
    const s = session as Session;
    s.send(
      rawFrame(
        {
          program: REMOTE_PROGRAM,
          version: 1,
          procedure: Proc.DomainEventCallbackLifecycle,
          type: MessageType.Message,
          serial: 0,
          status: MessageStatus.Ok,
        },
        body,
      ),
    );
    await s.closed;
    expect(events).toEqual([]);
    expect(p.health().connected).toBe(false);
    expect(health.at(-1)).toMatch(/127\.0\.0\.1.*undecodable event DomainEventCallbackLifecycle/);
  });
});

describe("hostile daemon: replies that lie", () => {
  const cases: [string, (h: Header, s: Session) => void, RegExp][] = [
    [
      "an unknown serial",
      (h, s) => s.send(s.reply({ ...h, serial: 999_999 })),
      /reply with serial 999999 .* which no call of ours awaits/,
    ],
    [
      "the wrong procedure",
      (h, s) =>
        s.send(s.reply({ ...h, procedure: Proc.ConnectGetVersion }, MessageStatus.Ok, (w) => w.uhyper(1))),
      /is for ConnectGetVersion \(4\), but that call was ConnectGetHostname/,
    ],
    ["another program", (h, s) => s.send(s.reply({ ...h, program: 0x12345678 })), /program 0x12345678/],
    ["another protocol version", (h, s) => s.send(s.reply({ ...h, version: 9 })), /protocol version 9/],
    [
      "a stream message",
      (h, s) => s.send(rawFrame({ ...h, type: MessageType.Stream, status: MessageStatus.Continue })),
      /message type 3/,
    ],
    [
      "status 7",
      (h, s) => s.send(rawFrame({ ...h, type: MessageType.Reply, status: 7 as MessageStatus })),
      /status 7/,
    ],
    [
      "an error reply that does not decode",
      (h, s) => s.send(rawFrame(replyHeader(h, MessageStatus.Error), Buffer.from([0, 0, 0, 1]))),
      /undecodable error reply/,
    ],
  ];
  it.each(cases)("%s closes the connection with a clear error", async (_name, answer, what) => {
    const d = await daemon({ onCall: (h, _b, s) => answer(h, s) });
    const c = client(d.uri);
    await c.connect();
    const err = await hostname(c).catch((e: unknown) => e);
    await expectClosedWithProtocolError(c, await d.session(), err, what);
  });

  it("seeded garbage bodies for every reply shape: a value or a protocol error, never a crash", async () => {
    let seed = 42;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const procs = [
      Proc.ConnectListAllDomains,
      Proc.ConnectGetAllDomainStats,
      Proc.NetworkGetDhcpLeases,
      Proc.DomainGetInfo,
      Proc.NodeGetInfo,
    ];
    for (let round = 0; round < 25; round++) {
      const proc = procs[round % procs.length] as number;
      const body = Buffer.alloc(rand() % 512);
      for (let i = 0; i < body.length; i++) body[i] = rand() & 0xff;
      // Some rounds plant a huge length where a count or string length would be read.
      if (round % 2 && body.length >= 8) body.writeUInt32BE(0xfffffff0 + (round % 16), 4);
      const d = await daemon({ onCall: (h, _b, s) => s.send(rawFrame(replyHeader(h), body)) });
      const c = client(d.uri);
      await c.connect();
      const decode = REPLY_DECODERS.get(proc);
      if (!decode) throw new Error(`no decoder for ${proc}`);
      const outcome = await c
        .call(proc, () => undefined, decode)
        .then(
          () => "value",
          (e: unknown) => e,
        );
      expect(
        outcome === "value" || (outcome instanceof ConnectionError && outcome.reason === "protocol"),
      ).toBe(true);
    }
  });
});

describe("hostile daemon: silence and stalls", () => {
  it("a daemon that accepts and never answers ConnectOpen: connect fails, socket closed", async () => {
    const d = await daemon({ answerOpen: false });
    const c = client(d.uri, { callTimeoutMs: 200 });
    const err = await c.connect().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as ConnectionError).reason).toBe("timeout");
    expect((err as Error).message).toMatch(/127\.0\.0\.1.*ConnectOpen \(1\): no reply within 200 ms/);
    expect(c.connected).toBe(false);
    await (await d.session()).closed;
  });

  it("keepalive unsupported, then silent: a liveness probe declares it dead", async () => {
    const d = await daemon({ keepalive: 0, onCall: () => undefined });
    // An interval that a loaded machine's event loop still keeps: a first tick later than
    // interval * (count + 1) declares the daemon dead before any probe was sent.
    const c = client(d.uri, { keepaliveIntervalMs: 250, keepaliveCount: 2, callTimeoutMs: 60_000 });
    const closed = new Promise<Error>((res) => c.onClose(res));
    await c.connect();
    const s = await d.session();
    const err = await closed;
    expect(err.message).toMatch(
      /127\.0\.0\.1:\d+\/system: no keepalive answer .*keepalive unsupported, liveness probe/,
    );
    expect(c.connected).toBe(false);
    // Everything the client sent has reached the fake once it saw the close.
    await s.closed;
    // The probe was a real call (ConnectGetLibVersion), not a keepalive the daemon lacks.
    expect(s.received.some((h) => h.procedure === Proc.ConnectGetLibVersion)).toBe(true);
  });

  it("a daemon that stops reading but keeps pinging: outbound bytes stay capped, then closed", async () => {
    const cap = 1024 * 1024;
    let pinger: NodeJS.Timeout | undefined;
    const d = await daemon({
      onReady: (s) => {
        s.sock.pause();
        pinger = setInterval(() => s.ping(), 2);
      },
    });
    stops.push(() => clearInterval(pinger));
    const c = client(d.uri, { maxOutboundBytes: cap, callTimeoutMs: 60_000 });
    await c.connect();
    const xml = `<domain>${"x".repeat(256 * 1024)}</domain>`;
    const before = heapUsed();
    const calls: Promise<unknown>[] = [];
    let maxBuffered = 0;
    // Kernel buffers on loopback absorb a few MiB first; 400 x 256 KiB = 100 MiB is far beyond.
    for (let i = 0; i < 400 && c.connected; i++) {
      calls.push(
        c
          .call(
            Proc.DomainDefineXMLFlags,
            (w) => w.string(xml).uint(0),
            () => undefined,
          )
          .catch((e) => e),
      );
      maxBuffered = Math.max(maxBuffered, c.bufferedOutboundBytes);
      if (i % 8 === 7) await new Promise((r) => setImmediate(r));
    }
    const results = await Promise.all(calls);
    expect(c.connected).toBe(false);
    expect(maxBuffered).toBeLessThanOrEqual(cap);
    const stalled = results.find((e): e is ConnectionError => e instanceof ConnectionError);
    expect(stalled?.reason).toBe("stalled");
    expect(stalled?.message).toMatch(/127\.0\.0\.1:\d+\/system: the daemon is not reading/);
    expect(heapUsed() - before).toBeLessThan(64 * 1024 * 1024);
    await (await d.session()).closed;
  });
});

describe("recovery", () => {
  it("a call timeout closes the connection and the provider's next connect opens a fresh one", async () => {
    let answer = false;
    const d = await daemon({
      onCall: (h, _b, s) => {
        if (answer) s.send(s.reply(h, MessageStatus.Ok, (w) => w.uhyper(9_000_000)));
      },
      // The heartbeat's ping is a keepalive round trip (rpc/ping.test.ts): unanswered like a call.
      onKeepalive: (h, s) => {
        if (answer && h.procedure === KEEPALIVE_PING) s.pong();
      },
    });
    const p = new LibvirtProvider(d.uri, { keepaliveIntervalMs: 0, callTimeoutMs: 200 });
    stops.push(() => p.close());
    await p.connect();
    await expect(p.ping()).rejects.toMatchObject({ code: "Timeout" });
    expect(p.health().connected).toBe(false);
    await d.sessions[0]?.closed;
    answer = true;
    await p.connect();
    await expect(p.ping()).resolves.toBeUndefined();
    expect(d.sessions).toHaveLength(2);
  });

  it("a quick call timing out behind one of our running job calls fails alone", async () => {
    // libvirtd may hold our further requests while our own long jobs occupy its workers
    // (max_client_requests): that is no sign of a wedged connection.
    const d = await daemon({ onCall: () => undefined });
    const c = client(d.uri, { callTimeoutMs: 200, jobTimeoutMs: 60_000 });
    await c.connect();
    const job = c
      .call(
        Proc.DomainMigratePerform3Params,
        () => undefined,
        () => undefined,
      )
      .catch((e) => e);
    await expect(hostname(c)).rejects.toMatchObject({
      reason: "timeout",
      message: expect.stringContaining("a job call of ours is still running"),
    });
    expect(c.connected).toBe(true);
    await c.close();
    expect(await job).toMatchObject({ reason: "closed" });
  });

  it("a daemon that reads late gets every queued call, in order, once it drains", async () => {
    const d = await daemon({
      onReady: (s) => {
        s.sock.pause();
        setTimeout(() => s.sock.resume(), 300);
      },
      onCall: (h, b, s) => s.send(s.reply(h, MessageStatus.Ok, (w) => w.string(String(b.string().length)))),
    });
    const c = client(d.uri, { maxOutboundBytes: 64 * 1024 * 1024 });
    await c.connect();
    const calls: Promise<string>[] = [];
    let maxBuffered = 0;
    // 80 x 256 KiB = 20 MiB: more than loopback's socket buffers, so frames wait for 'drain'.
    for (let i = 0; i < 80; i++) {
      const x = "y".repeat(256 * 1024 + i);
      calls.push(
        c.call(
          Proc.DomainDefineXMLFlags,
          (w) => w.string(x),
          (r) => r.string(),
        ),
      );
      maxBuffered = Math.max(maxBuffered, c.bufferedOutboundBytes);
    }
    expect(maxBuffered).toBeGreaterThan(1024 * 1024);
    expect(await Promise.all(calls)).toEqual(Array.from({ length: 80 }, (_, i) => String(256 * 1024 + i)));
    expect(c.bufferedOutboundBytes).toBe(0);
    expect(c.connected).toBe(true);
  });

  it("pongs to a daemon that pings but never reads stay capped, then the connection closes", async () => {
    const cap = 64 * 1024;
    const d = await daemon({
      onReady: (s) => {
        s.sock.pause();
        // Far more pongs than loopback's socket buffers hold: 20 batches of 20,000 pings.
        const batch = Buffer.concat(
          Array.from({ length: 20_000 }, () =>
            rawFrame({
              program: KEEPALIVE_PROGRAM,
              version: 1,
              procedure: KEEPALIVE_PING,
              type: MessageType.Message,
              serial: 0,
              status: 0,
            }),
          ),
        );
        for (let i = 0; i < 20; i++) s.send(batch);
      },
    });
    const c = client(d.uri, { maxOutboundBytes: cap });
    let maxBuffered = 0;
    const sampler = setInterval(() => {
      maxBuffered = Math.max(maxBuffered, c.bufferedOutboundBytes);
    }, 1);
    stops.push(() => clearInterval(sampler));
    const closed = new Promise<Error>((res) => c.onClose(res));
    await c.connect();
    const err = await closed;
    expect(err).toMatchObject({ reason: "stalled" });
    expect(maxBuffered).toBeLessThanOrEqual(cap);
    expect(c.connected).toBe(false);
    await (await d.session()).closed;
  });
});

describe("big replies and the serial wrap", () => {
  it("reassembles a 32 MiB reply linearly and keeps the event loop turning", async () => {
    const names = 16384;
    const nameLen = 1960;
    const d = await daemon({
      onCall: (h, _b, s) => {
        const frame = s.reply(h, MessageStatus.Ok, (w) => {
          w.uint(names);
          for (let i = 0; i < names; i++)
            w.string(String(i).padStart(nameLen, "d"))
              .fixedOpaque(Buffer.alloc(16, i & 0xff), 16)
              .int(i);
          w.uint(names);
        });
        expect(frame.length).toBeGreaterThan(31 * 1024 * 1024);
        expect(frame.length).toBeLessThanOrEqual(MESSAGE_MAX);
        for (let at = 0; at < frame.length; at += 64 * 1024) s.send(frame.subarray(at, at + 64 * 1024));
      },
    });
    const c = client(d.uri);
    await c.connect();
    let copied = 0;
    const concat = Buffer.concat;
    const concatSpy = vi.spyOn(Buffer, "concat").mockImplementation((list, total) => {
      copied += total ?? list.reduce((n, b) => n + b.length, 0);
      return concat(list, total);
    });
    const copy = Buffer.prototype.copy;
    const countingCopy = function (this: Buffer, target: Uint8Array, ts?: number, ss?: number, se?: number) {
      const n = copy.call(this, target, ts, ss, se);
      copied += n;
      return n;
    };
    const copySpy = vi.spyOn(Buffer.prototype, "copy").mockImplementation(countingCopy as never);
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 1);
    try {
      const doms = await new LibvirtApi(c).listAllDomains();
      expect(doms).toHaveLength(names);
      expect(doms[names - 1]?.name).toBe(String(names - 1).padStart(nameLen, "d"));
    } finally {
      clearInterval(ticker);
      concatSpy.mockRestore();
      copySpy.mockRestore();
    }
    // Linear: the frame is joined once (about 32 MiB copied), not once per 64 KiB chunk (~8 GiB).
    expect(copied).toBeLessThan(3 * MESSAGE_MAX);
    expect(ticks).toBeGreaterThan(0);
    expect(c.connected).toBe(true);
  });

  it("keys pending calls by the wrapped 32-bit serial across 2^32", async () => {
    const d = await daemon({
      onCall: (h, _b, s) => s.send(s.reply(h, MessageStatus.Ok, (w) => w.string(`s${h.serial}`))),
    });
    const c = client(d.uri, { firstSerial: 0xffffffff - 2 });
    await c.connect(); // uses two serials: ConnectOpen, SupportsFeature
    const got = [await hostname(c), await hostname(c), await hostname(c)];
    expect(got).toEqual(["s4294967295", "s1", "s2"]);
    const serials = (await d.session()).received.map((h) => h.serial);
    expect(serials.slice(0, 5)).toEqual([0xfffffffd, 0xfffffffe, 0xffffffff, 1, 2]);
    expect(c.connected).toBe(true);
  });
});
