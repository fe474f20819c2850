/**
 * The RPC client against a scripted fake daemon on a unix socket: serial matching with many calls
 * in flight answered out of order, packets split byte by byte and merged, error replies, the
 * daemon's keepalive pings, and pending calls failing when the connection drops.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  ConnectionError,
  LibvirtClient,
  LibvirtError,
} from "../../../../src/providers/libvirt/rpc/client.js";
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
  readHeader,
  startPacket,
} from "../../../../src/providers/libvirt/rpc/protocol.js";
import { XdrReader, type XdrWriter } from "../../../../src/providers/libvirt/rpc/xdr.js";

interface Call {
  header: Header;
  body: XdrReader;
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A fake libvirtd: answers ConnectOpen and SupportsFeature itself, hands other calls to `onCall`. */
async function fakeDaemon(
  onCall: (
    c: Call,
    reply: (status: MessageStatus, body?: (w: XdrWriter) => void) => Buffer,
    sock: Socket,
  ) => void,
) {
  const dir = mkdtempSync(join(tmpdir(), "vw-fake-"));
  const path = join(dir, "sock");
  const received: Header[] = [];
  let client: Socket | undefined;
  const server: Server = createServer((sock) => {
    client = sock;
    let buf = Buffer.alloc(0);
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= buf.readUInt32BE(0)) {
        const len = buf.readUInt32BE(0);
        const packet = buf.subarray(0, len);
        buf = buf.subarray(len);
        const r = new XdrReader(packet, 4);
        const header = readHeader(r);
        received.push(header);
        const reply = (status: MessageStatus, body?: (w: XdrWriter) => void) => {
          const w = startPacket({ ...header, type: MessageType.Reply, status });
          body?.(w);
          return Buffer.from(finishPacket(w));
        };
        if (header.program !== REMOTE_PROGRAM) continue;
        if (header.procedure === Proc.ConnectOpen) sock.write(reply(MessageStatus.Ok));
        else if (header.procedure === Proc.ConnectSupportsFeature)
          sock.write(reply(MessageStatus.Ok, (w) => w.int(1)));
        else onCall({ header, body: r }, reply, sock);
      }
    });
  });
  await new Promise<void>((res) => server.listen(path, res));
  cleanups.push(() => {
    server.close();
    client?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  return { uri: `test+unix:///default?socket=${path}`, received, client: () => client as Socket };
}

describe("LibvirtClient framing and dispatch", () => {
  it("matches out-of-order replies to their calls by serial, split and merged", async () => {
    const pending: Buffer[] = [];
    const d = await fakeDaemon((c, reply, sock) => {
      const n = c.body.string();
      pending.push(reply(MessageStatus.Ok, (w) => w.string(`host-${n}`)));
      if (pending.length === 50) {
        const all = Buffer.concat(pending.reverse());
        // Half the replies byte by byte, the other half in one merged write.
        const half = Math.floor(all.length / 2);
        for (let i = 0; i < half; i++) sock.write(all.subarray(i, i + 1));
        sock.write(all.subarray(half));
      }
    });
    const c = new LibvirtClient(d.uri, { keepaliveIntervalMs: 0 });
    cleanups.push(() => void c.close());
    await c.connect();
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        c.call(
          Proc.ConnectGetHostname,
          (w) => w.string(String(i)),
          (r) => r.string(),
        ),
      ),
    );
    expect(results).toEqual(Array.from({ length: 50 }, (_, i) => `host-${i}`));
  });

  it("turns an error reply into a LibvirtError with code, domain and message", async () => {
    const d = await fakeDaemon((_c, reply, sock) => {
      sock.write(
        reply(MessageStatus.Error, (w) => {
          w.int(42).int(10).optString("Domain not found: no domain with matching name 'x'").int(2);
          w.int(0).optString(undefined).optString(undefined).optString(undefined).int(0).int(0).int(0);
        }),
      );
    });
    const c = new LibvirtClient(d.uri, { keepaliveIntervalMs: 0 });
    cleanups.push(() => void c.close());
    await c.connect();
    const err = await c
      .call(
        Proc.DomainLookupByName,
        (w) => w.string("x"),
        () => undefined,
      )
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect(err).toMatchObject({ code: 42, domain: 10, message: expect.stringContaining("no domain") });
  });

  it("answers the daemon's keepalive pings with pongs", async () => {
    const d = await fakeDaemon(() => undefined);
    const c = new LibvirtClient(d.uri, { keepaliveIntervalMs: 0 });
    cleanups.push(() => void c.close());
    await c.connect();
    const w = startPacket({
      program: KEEPALIVE_PROGRAM,
      version: 1,
      procedure: KEEPALIVE_PING,
      type: MessageType.Message,
      serial: 0,
      status: 0,
    });
    d.client().write(Buffer.from(finishPacket(w)));
    for (let i = 0; i < 100 && !d.received.some((h) => h.program === KEEPALIVE_PROGRAM); i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(d.received.find((h) => h.program === KEEPALIVE_PROGRAM)?.procedure).toBe(KEEPALIVE_PONG);
  });

  it("fails pending calls when the connection drops, and reports why", async () => {
    const d = await fakeDaemon((_c, _reply, sock) => sock.destroy());
    const c = new LibvirtClient(d.uri, { keepaliveIntervalMs: 0 });
    const closed: Error[] = [];
    c.onClose((e) => closed.push(e));
    await c.connect();
    await expect(
      c.call(
        Proc.ConnectGetHostname,
        () => undefined,
        (r) => r.string(),
      ),
    ).rejects.toBeInstanceOf(ConnectionError);
    expect(c.connected).toBe(false);
    expect(closed).toHaveLength(1);
  });

  it("keeps the connection when the signal it was opened with aborts later", async () => {
    // A reconcile opens the shared connection with its own deadline; that deadline passing
    // afterwards must not cut the connection from under every other caller.
    const d = await fakeDaemon((_c, reply, sock) =>
      sock.write(reply(MessageStatus.Ok, (w) => w.string("h1"))),
    );
    const c = new LibvirtClient(d.uri, { keepaliveIntervalMs: 0 });
    cleanups.push(() => void c.close());
    const opener = new AbortController();
    await c.connect(opener.signal);
    opener.abort();
    await new Promise((r) => setTimeout(r, 20));
    expect(c.connected).toBe(true);
    await expect(
      c.call(
        Proc.ConnectGetHostname,
        () => undefined,
        (r) => r.string(),
      ),
    ).resolves.toBe("h1");
  });

  it("gives up on a call after its deadline and closes the wedged connection", async () => {
    // A call unanswered past its deadline means the daemon or the link is wedged: the client
    // closes the connection (the provider reconnects) instead of letting calls pile up behind it.
    const d = await fakeDaemon(() => undefined);
    const c = new LibvirtClient(d.uri, { keepaliveIntervalMs: 0, callTimeoutMs: 100 });
    cleanups.push(() => void c.close());
    const closed: Error[] = [];
    c.onClose((e) => closed.push(e));
    await c.connect();
    const serverSawClose = new Promise<void>((res) => d.client().once("close", () => res()));
    await expect(
      c.call(
        Proc.ConnectGetHostname,
        () => undefined,
        (r) => r.string(),
      ),
    ).rejects.toMatchObject({ reason: "timeout", message: expect.stringContaining("ConnectGetHostname") });
    expect(c.connected).toBe(false);
    expect(closed[0]?.message).toMatch(/closing the connection/);
    await serverSawClose;
  });

  it("drops the late reply of an aborted call and keeps the connection", async () => {
    let late: (() => void) | undefined;
    const d = await fakeDaemon((c, reply, sock) => {
      if (c.header.procedure === Proc.ConnectGetHostname)
        late = () => sock.write(reply(MessageStatus.Ok, (w) => w.string("late")));
      else sock.write(reply(MessageStatus.Ok, (w) => w.uhyper(9_000_000)));
    });
    const c = new LibvirtClient(d.uri, { keepaliveIntervalMs: 0 });
    cleanups.push(() => void c.close());
    await c.connect();
    const ac = new AbortController();
    const call = c.call(
      Proc.ConnectGetHostname,
      () => undefined,
      (r) => r.string(),
      ac.signal,
    );
    for (let i = 0; i < 200 && !late; i++) await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    await expect(call).rejects.toMatchObject({ reason: "aborted" });
    late?.();
    await expect(
      c.call(
        Proc.ConnectGetLibVersion,
        () => undefined,
        (r) => r.uhyper(),
      ),
    ).resolves.toBe(9_000_000);
    expect(c.connected).toBe(true);
  });
});
