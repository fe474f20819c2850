/**
 * The controller's own stalls, for real: the event loop blocked synchronously while a peer on
 * loopback answers. A deadline that passed during the block must not be taken for silence when
 * the answer sits in the socket (settlesWithin, probeHost), and the monitor must see the block.
 * The blocks are busy-waits of known length; assertions are on outcomes, not on durations taken.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { LoopStallMonitor, loopStalls, settlesWithin } from "../../../src/controller/loop-stall.js";
import { probeHost, probeTarget } from "../../../src/reconcilers/host/reachability.js";

const servers: Server[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

/** Block the event loop (a long synchronous job, or a process not scheduled) for `ms`. */
function blockLoop(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    /* busy */
  }
}

/** A loopback server that echoes a line back after `delayMs`. */
async function echoServer(delayMs: number): Promise<number> {
  const srv = createServer((c) => {
    sockets.push(c);
    c.on("data", (b) => setTimeout(() => c.write(b), delayMs));
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return (srv.address() as { port: number }).port;
}

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.pid && c.exitCode === null) process.kill(c.pid, "SIGKILL");
});

/** The same, in another process: it answers while this one is blocked. */
async function echoProcess(delayMs: number): Promise<number> {
  const code = `const s=require("node:net").createServer(c=>c.on("data",b=>setTimeout(()=>c.write(b),${delayMs})));
s.listen(0,"127.0.0.1",()=>console.log(s.address().port));`;
  const child = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  children.push(child);
  const line = await new Promise<string>((r) => child.stdout?.once("data", (b: Buffer) => r(b.toString())));
  return Number(line.trim());
}

async function connectTo(port: number): Promise<Socket> {
  const { connect } = await import("node:net");
  const s = connect({ host: "127.0.0.1", port });
  sockets.push(s);
  await new Promise<void>((r, j) => s.once("connect", r).once("error", j));
  return s;
}

describe("LoopStallMonitor", () => {
  it("records a gap in the loop as a stall, beyond one tick and the jitter allowance", () => {
    let t = 0;
    const m = new LoopStallMonitor(() => t);
    for (t = 50; t <= 500; t += 50) m.observe();
    t = 6500; // SIGSTOP for 6 s
    m.observe();
    for (t = 6550; t <= 7000; t += 50) m.observe();
    expect(m.stalledMs(0, 7000)).toBe(6500 - 550);
    expect(m.stalledMs(0, 500)).toBe(0);
    expect(m.stalledMs(1000, 2000)).toBe(1000);
    expect(m.stalledMs(6600, 7000)).toBe(0);
  });

  it("ordinary lateness is jitter, not a stall", () => {
    let t = 0;
    const m = new LoopStallMonitor(() => t);
    for (let i = 1; i <= 100; i++) {
      t = i * 50 + (i % 3) * 7; // late by up to 14 ms
      m.observe();
    }
    expect(m.stalledMs(0, t)).toBe(0);
  });

  it("the process's monitor sees a real block of the event loop", async () => {
    const m = loopStalls();
    await new Promise((r) => setTimeout(r, 120));
    const from = performance.now();
    blockLoop(600);
    // Asked right after the block, before the monitor's own tick has run again.
    const seen = m.stalledMs(from);
    // At least the block minus one tick and the jitter allowance (50 + 20 ms).
    expect(seen).toBeGreaterThanOrEqual(600 - 70);
  });
});

describe("a deadline passed while the loop was blocked", () => {
  it("settlesWithin: the reply that arrived during the block counts", async () => {
    const port = await echoProcess(20);
    const s = await connectTo(port);
    const reply = new Promise<void>((r) => s.once("data", () => r()));
    s.write("ping\n");
    const judged = settlesWithin(reply, 100);
    blockLoop(800); // the reply arrives ~20 ms in; the 100 ms deadline passes while blocked
    expect(await judged).toBe(true);
  });

  it("control: a naive deadline (no yield to I/O) takes the same reply for silence", async () => {
    const port = await echoProcess(20);
    const s = await connectTo(port);
    let answered = false;
    s.once("data", () => {
      answered = true;
    });
    s.write("ping\n");
    const naive = new Promise<boolean>((r) => setTimeout(() => r(answered), 100));
    blockLoop(800);
    expect(await naive).toBe(false);
    await new Promise((r) => setImmediate(r));
    expect(answered).toBe(true);
  });

  it("settlesWithin: nothing arrived, so the window is missed (and the late reply is handled)", async () => {
    const port = await echoServer(1500);
    const s = await connectTo(port);
    const reply = new Promise<void>((r) => s.once("data", () => r()));
    s.write("ping\n");
    expect(await settlesWithin(reply, 100)).toBe(false);
    await reply;
  });

  it("settlesWithin: a failure inside the window is the failure", async () => {
    await expect(settlesWithin(Promise.reject(new Error("refused")), 1000)).rejects.toThrow("refused");
  });

  it("probeHost: a connect accepted during the block is alive, not silent", async () => {
    const port = await echoServer(0);
    const probe = probeHost({ kind: "tcp", host: "127.0.0.1", port }, 50);
    blockLoop(500);
    expect(await probe).toBe("alive");
  });

  it("probeHost: a refused connect (daemon down, kernel up) is alive", async () => {
    const port = await echoServer(0);
    const srv = servers.pop() as Server;
    await new Promise((r) => srv.close(r));
    expect(await probeHost({ kind: "tcp", host: "127.0.0.1", port }, 2000)).toBe("alive");
  });
});

describe("probeTarget", () => {
  it.each([
    ["qemu+tcp://10.200.1.10/system", { kind: "tcp", host: "10.200.1.10", port: 16509 }],
    ["qemu+tcp://10.200.1.10:1234/system", { kind: "tcp", host: "10.200.1.10", port: 1234 }],
    ["qemu+tls://kvm-01.example/system?pkipath=/x", { kind: "tcp", host: "kvm-01.example", port: 16514 }],
    ["qemu://kvm-01/system", { kind: "tcp", host: "kvm-01", port: 16514 }],
    ["qemu+ssh://root@kvm-01:2222/system", { kind: "tcp", host: "kvm-01", port: 2222 }],
    ["qemu+ssh://root@kvm-01/system", { kind: "tcp", host: "kvm-01", port: 22 }],
    ["qemu+tcp://[fd00::1]:16600/system", { kind: "tcp", host: "fd00::1", port: 16600 }],
    ["qemu+unix:///system?socket=/run/x.sock", { kind: "local" }],
    ["qemu:///system", { kind: "local" }],
    ["sim://h1", undefined],
    ["test:///default", undefined],
    ["not a uri", undefined],
  ])("%s", (uri, want) => {
    expect(probeTarget(uri)).toEqual(want);
  });
});
