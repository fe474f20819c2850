/**
 * Is the host there below libvirt? A TCP connect to the port its libvirt URI names, independent
 * of the libvirt connection: a host whose kernel answers (the connect is accepted, or refused
 * because libvirtd is down or restarting) is alive even when libvirt does not answer; a host that
 * answers nothing at all (no SYN-ACK, no RST within the window; host or network unreachable) is
 * silent — powered off, crashed, or cut off. This is the "management unreachable" vs "host dead"
 * distinction Pacemaker and oVirt make before fencing (heartbeat.ts uses it).
 *
 * - Endpoints: qemu+tcp (16509), qemu+tls and bare qemu://host (16514), ssh transports (22). A
 *   unix-socket URI (or no host) is this machine: alive as long as the controller runs. Other
 *   schemes (sim://, test:///) have no network endpoint: undefined.
 * - Errors that say nothing about the host (DNS failures, local resource limits) are "none".
 * - A window that passed is concluded only after the loop has processed queued I/O once, so an
 *   answer that arrived while the controller was stalled is not taken for silence.
 */
import { connect as netConnect } from "node:net";
import { yieldToIO } from "../../controller/loop-stall.js";
import type { NetworkEvidence } from "./heartbeat.js";

export type ProbeTarget = { kind: "local" } | { kind: "tcp"; host: string; port: number };

const DEFAULT_PORTS: Record<string, number> = { tcp: 16509, tls: 16514, ssh: 22, libssh: 22, libssh2: 22 };

/** Where a network-level probe of this libvirt URI goes; undefined when it has no network endpoint. */
export function probeTarget(uri: string): ProbeTarget | undefined {
  const m = /^([a-z0-9]+)(?:\+([a-z0-9]+))?:\/\/([^/?#]*)/i.exec(uri);
  if (!m) return undefined;
  const driver = (m[1] ?? "").toLowerCase();
  if (driver === "sim" || driver === "test" || driver === "mock") return undefined;
  const transport = (m[2] ?? "").toLowerCase();
  const authority = m[3] ?? "";
  const hostPort = authority.slice(authority.lastIndexOf("@") + 1);
  if (transport === "unix" || transport === "ext" || hostPort === "") return { kind: "local" };
  const port = transport === "" ? DEFAULT_PORTS.tls : DEFAULT_PORTS[transport];
  if (port === undefined) return undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(hostPort);
  const [host, explicit] = v6
    ? [v6[1] as string, v6[2]]
    : [hostPort.replace(/:\d*$/, ""), /:(\d+)$/.exec(hostPort)?.[1]];
  if (!host) return { kind: "local" };
  return { kind: "tcp", host, port: explicit ? Number(explicit) : port };
}

const SILENT = new Set(["ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN"]);

/** Probe the host at the network level within `windowMs`. */
export function probeHost(
  target: ProbeTarget,
  windowMs: number,
  signal?: AbortSignal,
): Promise<NetworkEvidence> {
  if (target.kind === "local") return Promise.resolve("alive");
  return new Promise((resolve) => {
    let result: NetworkEvidence | undefined;
    const sock = netConnect({ host: target.host, port: target.port });
    const settle = (r: NetworkEvidence) => {
      if (result) return;
      result = r;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      sock.destroy();
      resolve(r);
    };
    const onAbort = () => settle("none");
    sock.once("connect", () => settle("alive"));
    sock.once("error", (e: NodeJS.ErrnoException) =>
      settle(e.code === "ECONNREFUSED" ? "alive" : SILENT.has(e.code ?? "") ? "silent" : "none"),
    );
    const timer = setTimeout(() => {
      // Replies processed first: a SYN-ACK or RST that arrived during a stall counts.
      void yieldToIO().then(() => settle("silent"));
    }, windowMs);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
