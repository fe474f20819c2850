/**
 * The heartbeat's ping is a keepalive round trip (client.ping): libvirtd answers PING with PONG
 * in its event loop, apart from its worker threads, so a daemon whose workers are all taken
 * (starting a failed host's guests) still answers at once. The fake daemon here is that daemon:
 * it answers the handshake and keepalive, and never answers a remote call.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ConnectionError, LibvirtClient } from "../../../../src/providers/libvirt/rpc/client.js";
import {
  KEEPALIVE_PING,
  KEEPALIVE_PROGRAM,
  Proc,
  REMOTE_PROGRAM,
} from "../../../../src/providers/libvirt/rpc/protocol.js";
import { type Script, startFakeDaemon } from "./fake-daemon.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function connected(script: Script) {
  const d = await startFakeDaemon(script);
  const c = new LibvirtClient(d.uri, { keepaliveIntervalMs: 0 });
  cleanups.push(() => d.stop());
  cleanups.push(() => c.close().catch(() => undefined));
  await c.connect();
  return { d, c, s: await d.session() };
}

describe("ping: a keepalive round trip", () => {
  it("is answered by a PONG while no remote call is (every worker busy)", async () => {
    const { c, s } = await connected({
      onKeepalive: (h, sess) => {
        if (h.procedure === KEEPALIVE_PING) sess.pong();
      },
      onCall: () => undefined, // workers busy: no remote call is ever answered
    });
    const before = s.received.length;
    await c.ping(AbortSignal.timeout(2000));
    const sent = s.received.slice(before);
    expect(sent.map((h) => [h.program, h.procedure])).toEqual([[KEEPALIVE_PROGRAM, KEEPALIVE_PING]]);
    // A second ping is a second round trip, not the first one's PONG again.
    await c.ping(AbortSignal.timeout(2000));
    expect(s.received.slice(before).filter((h) => h.program === KEEPALIVE_PROGRAM)).toHaveLength(2);
  });

  it("waits for the PONG: a daemon that does not answer fails the ping when its signal aborts", async () => {
    const { c, s } = await connected({ onKeepalive: () => undefined });
    const started = performance.now();
    const err = await c.ping(AbortSignal.timeout(150)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect(String(err)).toMatch(/aborted/);
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    // The abandoned ping's late PONG is harmless, and the connection is still usable.
    s.pong();
    await new Promise((r) => setTimeout(r, 50));
    expect(c.connected).toBe(true);
  });

  it("no PONG within the call timeout: the connection is closed as wedged", async () => {
    const d = await startFakeDaemon({ onKeepalive: () => undefined });
    const c = new LibvirtClient(d.uri, { keepaliveIntervalMs: 0, callTimeoutMs: 200 });
    cleanups.push(() => d.stop());
    cleanups.push(() => c.close().catch(() => undefined));
    await c.connect();
    await expect(c.ping()).rejects.toMatchObject({ reason: "timeout" });
    expect(c.connected).toBe(false);
  });

  it("fails at once when the connection drops while it waits", async () => {
    const { c, s } = await connected({ onKeepalive: (_h, sess) => sess.sock.destroy() });
    expect(s).toBeDefined();
    await expect(c.ping(AbortSignal.timeout(5000))).rejects.toBeInstanceOf(ConnectionError);
    expect(c.connected).toBe(false);
  });

  it("is a version call where the daemon has no keepalive", async () => {
    const { c, s } = await connected({
      keepalive: 0,
      onCall: (h, _body, sess) => {
        if (h.procedure === Proc.ConnectGetLibVersion)
          sess.send(sess.reply(h, 0, (w) => w.uhyper(BigInt(10_000_000))));
      },
    });
    const before = s.received.length;
    await c.ping(AbortSignal.timeout(2000));
    expect(s.received.slice(before).map((h) => [h.program, h.procedure])).toEqual([
      [REMOTE_PROGRAM, Proc.ConnectGetLibVersion],
    ]);
  });
});
