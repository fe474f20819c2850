/**
 * The Lease elector's retry loop against a scripted API server on loopback: thousands of retry
 * periods must not leave listeners behind on the caller's long-lived signal (one per retry was
 * 43,000 a day at the default 2 s period, and Node's MaxListenersExceededWarning).
 */
import { getEventListeners } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { LeaseLeaderElector } from "../../../src/store/kube/index.js";
import { eventuallyWith } from "../../support/eventually.js";

let server: Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** A fake coordination API: `handle` answers each request; the number answered is counted. */
async function fakeApi(
  handle: (req: IncomingMessage, body: string, res: ServerResponse) => void,
): Promise<{ kc: KubeConfig; requests: () => number }> {
  let count = 0;
  server = createServer((req, res) => {
    let body = "";
    req.on("data", (b: Buffer) => {
      body += b.toString();
    });
    req.on("end", () => {
      count++;
      handle(req, body, res);
    });
  });
  await new Promise<void>((r) => server?.listen(0, "127.0.0.1", () => r()));
  const { port } = server.address() as AddressInfo;
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "fake", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: "u" }],
    contexts: [{ name: "c", cluster: "fake", user: "u" }],
    currentContext: "c",
  });
  return { kc, requests: () => count };
}

function json(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

const eventually = eventuallyWith({ timeoutMs: 30_000, everyMs: 5 });

describe("LeaseLeaderElector when it cannot take the Lease", () => {
  it("says so at warn level once per distinct error, naming a missing namespace, not at every retry", async () => {
    // What the API server answers for a Lease in a namespace that does not exist.
    const api = await fakeApi((req, _body, res) =>
      json(res, 404, {
        kind: "Status",
        apiVersion: "v1",
        status: "Failure",
        reason: "NotFound",
        code: 404,
        message:
          req.method === "POST"
            ? 'namespaces "virtwarden-system" not found'
            : 'leases.coordination.k8s.io "l" not found',
        details: {
          name: req.method === "POST" ? "virtwarden-system" : "l",
          kind: req.method === "POST" ? "namespaces" : "leases",
        },
      }),
    );
    const lines: { level: number; msg: string }[] = [];
    const logger = pino(
      { level: "debug" },
      { write: (l: string) => lines.push(JSON.parse(l) as { level: number; msg: string }) },
    );
    const elector = new LeaseLeaderElector({
      kubeConfig: api.kc,
      namespace: "virtwarden-system",
      name: "l",
      identity: "me",
      retryPeriodMs: 1,
      logger,
    });
    const stop = new AbortController();
    let led = false;
    const done = elector.run(
      stop.signal,
      () => {
        led = true;
      },
      () => undefined,
    );
    await eventually(() => api.requests() >= 40, "20 attempts");
    stop.abort();
    await done;
    expect(led).toBe(false);
    const warned = lines.filter((l) => l.level === 40);
    expect(warned).toHaveLength(1);
    expect(warned[0]?.msg).toMatch(
      /namespace virtwarden-system does not exist \(create it, or pass --namespace\)/,
    );
    expect(lines.filter((l) => l.level === 20 && l.msg === "lease attempt failed").length).toBeGreaterThan(5);
  });
});

describe("LeaseLeaderElector retry loop", () => {
  it("a standby retrying many times leaves no abort listeners on the caller's signal", async () => {
    // Every attempt fails (the API server answers 500): the elector sleeps and retries forever.
    const api = await fakeApi((_req, _body, res) => json(res, 500, { kind: "Status", code: 500 }));
    const elector = new LeaseLeaderElector({
      kubeConfig: api.kc,
      namespace: "default",
      name: "l",
      identity: "me",
      retryPeriodMs: 1,
    });
    const stop = new AbortController();
    const before = getEventListeners(stop.signal, "abort").length;
    let led = false;
    const done = elector.run(
      stop.signal,
      () => {
        led = true;
      },
      () => undefined,
    );
    let peak = 0;
    await eventually(() => {
      peak = Math.max(peak, getEventListeners(stop.signal, "abort").length);
      return api.requests() >= 300;
    }, "300 failed attempts");
    stop.abort();
    await done;
    expect(led).toBe(false);
    // At most the one sleep in progress holds a listener; 300 retries must not leave 300.
    expect(peak - before).toBeLessThanOrEqual(1);
  }, 60_000);

  it("a leader renewing many times leaves no abort listeners on the caller's signal", async () => {
    let lease: Record<string, unknown> | undefined;
    let rv = 0;
    const api = await fakeApi((req, body, res) => {
      if (req.method === "GET") {
        if (!lease) return json(res, 404, { kind: "Status", code: 404, reason: "NotFound" });
        return json(res, 200, lease);
      }
      // POST (create) or PUT (renew): store it with a new resourceVersion.
      const l = JSON.parse(body) as { metadata: Record<string, unknown> };
      rv++;
      lease = { ...l, metadata: { ...l.metadata, resourceVersion: String(rv) } };
      return json(res, req.method === "POST" ? 201 : 200, lease);
    });
    const elector = new LeaseLeaderElector({
      kubeConfig: api.kc,
      namespace: "default",
      name: "l",
      identity: "me",
      retryPeriodMs: 1,
      renewDeadlineMs: 60_000,
      leaseDurationMs: 120_000,
    });
    const stop = new AbortController();
    const before = getEventListeners(stop.signal, "abort").length;
    let leaderSignal: AbortSignal | undefined;
    let stopped = false;
    const done = elector.run(
      stop.signal,
      (s) => {
        leaderSignal = s;
      },
      () => {
        stopped = true;
      },
    );
    let peak = 0;
    await eventually(() => {
      peak = Math.max(peak, getEventListeners(stop.signal, "abort").length);
      return rv >= 300;
    }, "300 renewals");
    expect(leaderSignal?.aborted).toBe(false);
    stop.abort();
    await done;
    expect(stopped).toBe(true);
    expect(leaderSignal?.aborted).toBe(true);
    expect(peak - before).toBeLessThanOrEqual(1);
  }, 60_000);

  it("a leader whose renewals are black-holed loses leadership by its renew deadline, not never", async () => {
    // The API server answers until we lead, then holds every renewal open forever (neither
    // answering nor refusing: a black-hole partition). onStoppedLeading must fire by the renew
    // deadline while a renewal is still held, and the held request must be aborted by the client.
    let lease: Record<string, unknown> | undefined;
    let rv = 0;
    let blackHole = false;
    const held: ServerResponse[] = [];
    let heldClosedByClient = 0;
    const api = await fakeApi((req, body, res) => {
      if (blackHole) {
        held.push(res);
        res.on("close", () => {
          if (!res.writableEnded) heldClosedByClient++;
        });
        return;
      }
      if (req.method === "GET") {
        if (!lease) return json(res, 404, { kind: "Status", code: 404, reason: "NotFound" });
        return json(res, 200, lease);
      }
      const l = JSON.parse(body) as { metadata: Record<string, unknown> };
      rv++;
      lease = { ...l, metadata: { ...l.metadata, resourceVersion: String(rv) } };
      return json(res, req.method === "POST" ? 201 : 200, lease);
    });
    const elector = new LeaseLeaderElector({
      kubeConfig: api.kc,
      namespace: "default",
      name: "l",
      identity: "me",
      retryPeriodMs: 50,
      renewDeadlineMs: 400,
      leaseDurationMs: 60_000,
    });
    const stop = new AbortController();
    const before = getEventListeners(stop.signal, "abort").length;
    let leaderSignal: AbortSignal | undefined;
    let lostWhileHeld: number | undefined;
    let stopped = false;
    const done = elector.run(
      stop.signal,
      (s) => {
        leaderSignal = s;
      },
      () => {
        // Counted at the moment of loss: how many held renewals had not been answered yet.
        lostWhileHeld = held.filter((r) => !r.writableEnded).length;
        stopped = true;
      },
    );
    await eventually(() => leaderSignal !== undefined && rv >= 2, "leading and renewed once");
    blackHole = true;
    // Bounded generously: before the fix this never happened (the renewal awaited forever).
    await eventually(() => stopped, "leadership lost while renewals hang", 20_000);
    expect(leaderSignal?.aborted).toBe(true);
    // The loss did not wait for the API server: the server had answered none of the held requests.
    // (Under load the renewal may not even have reached it by the deadline: then none is held.)
    expect(lostWhileHeld).toBe(held.length);
    expect(held.every((r) => !r.writableEnded)).toBe(true);
    // run() returns on its own after the loss (no caller abort needed), leaving no listeners.
    await done;
    expect(stop.signal.aborted).toBe(false);
    expect(getEventListeners(stop.signal, "abort").length).toBe(before);
    // The client aborted every hung renewal rather than leaving its socket open.
    await eventually(() => heldClosedByClient === held.length, "held renewals aborted by the client", 20_000);
  }, 60_000);
});
