/**
 * The client's own stalls are not the daemon's silence: when this process cannot run (a long
 * synchronous job, a descheduled process, SIGSTOP) the liveness timer fires late, before the
 * bytes the daemon sent meanwhile have been read. Such a stall must not close a healthy
 * connection, while a daemon that really stops answering is still declared dead. Against a real
 * libvirtd (test driver) in its own process, so that blocking our event loop does not block it.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectionError, LibvirtClient } from "../../../../src/providers/libvirt/rpc/client.js";
import { Proc } from "../../../../src/providers/libvirt/rpc/protocol.js";
import { startTestDriverDaemon, type TestDriverDaemon } from "../../../support/testbed/index.js";

let daemon: TestDriverDaemon;
beforeAll(async () => {
  daemon = await startTestDriverDaemon();
});
afterAll(async () => {
  await daemon?.stop();
});

const hostname = (c: LibvirtClient) =>
  c.call(
    Proc.ConnectGetHostname,
    () => undefined,
    (r) => r.string(),
  );

/** libvirtd itself: the daemon's pid is the tini it runs under. */
function libvirtdPid(): number {
  const kids = readFileSync(`/proc/${daemon.pid}/task/${daemon.pid}/children`, "utf8").trim().split(/\s+/);
  const pid = Number(kids[0]);
  expect(readFileSync(`/proc/${pid}/comm`, "utf8").trim()).toBe("libvirtd");
  return pid;
}

/** Keep this process from running any callback for `ms` (what a starved controller looks like). */
function blockEventLoop(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy: no timer, no I/O callback runs meanwhile
  }
}

describe("LibvirtClient liveness across our own stalls", () => {
  it("a 3 s stall of this process does not close a connection whose daemon kept answering", async () => {
    // Probe every 200 ms, dead after 600 ms of silence: the stall is five times that.
    const c = new LibvirtClient(daemon.uri, { keepaliveIntervalMs: 200, keepaliveCount: 2 });
    const closed: Error[] = [];
    c.onClose((e) => closed.push(e));
    try {
      await c.connect();
      expect(await hostname(c)).toBeTruthy();
      for (let i = 0; i < 3; i++) {
        blockEventLoop(3000);
        // Let the late timers, the pings and their answers run for a few probe intervals.
        await new Promise((r) => setTimeout(r, 1000));
        expect(closed.map((e) => e.message)).toEqual([]);
        expect(c.connected).toBe(true);
        expect(await hostname(c)).toBeTruthy();
      }
    } finally {
      await c.close();
    }
  });

  it("a daemon stopped for real (SIGSTOP) is still declared dead, stall or not", async () => {
    const c = new LibvirtClient(daemon.uri, { keepaliveIntervalMs: 200, keepaliveCount: 2 });
    const closed = new Promise<Error>((res) => c.onClose(res));
    let stopped = 0;
    try {
      await c.connect();
      stopped = libvirtdPid();
      process.kill(stopped, "SIGSTOP");
      blockEventLoop(1000);
      const err = await closed;
      expect(err).toBeInstanceOf(ConnectionError);
      expect(err.message).toMatch(/no keepalive answer for \d+ ms/);
      expect(c.connected).toBe(false);
    } finally {
      if (stopped) process.kill(stopped, "SIGCONT");
      await c.close();
    }
  });
});
