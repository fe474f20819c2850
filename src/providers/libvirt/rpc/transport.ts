/**
 * Opening the byte stream to a libvirtd: unix socket, TCP, TLS (with libvirt's one-byte
 * certificate verdict after the handshake) or ssh (a tunnel to the daemon's unix socket, as
 * libvirt's own ssh transport does). Bounded by connectTimeoutMs and the caller's signal, whose
 * abort listener is removed once the stream is up.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { homedir } from "node:os";
import { join } from "node:path";
import { Duplex } from "node:stream";
import { connect as tlsConnect } from "node:tls";
import { PROGRAMS } from "../../programs.js";
import { ConnectionError } from "./errors.js";
import type { ParsedUri } from "./uri.js";

export interface TransportOptions {
  connectTimeoutMs: number;
  /** TLS material; defaults are libvirt's locations (/etc/pki, ~/.pki/libvirt) or ?pkipath=. */
  tls?: {
    ca?: Buffer | string;
    cert?: Buffer | string;
    key?: Buffer | string;
    rejectUnauthorized?: boolean;
    servername?: string;
  };
}

export interface Transport {
  sock: Duplex;
  /** The ssh process behind an ssh transport, to stop with the connection. */
  child?: ChildProcess;
}

export function openTransport(
  t: ParsedUri,
  opts: TransportOptions,
  signal?: AbortSignal,
): Promise<Transport> {
  return new Promise<Transport>((resolve, reject) => {
    let sock: Duplex;
    let readyEvent = "connect";
    let child: ChildProcess | undefined;
    // The abort listener must go once the transport is up: the signal belongs to whoever
    // asked for the connection (one reconcile) and aborting it later must not cut the
    // connection every other caller now shares.
    const onAbort = () => fail(new ConnectionError("aborted", "aborted"));
    const fail = (e: Error) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      sock?.destroy();
      child?.kill("SIGTERM");
      reject(
        e instanceof ConnectionError
          ? e
          : new ConnectionError(`${t.uri}: cannot connect: ${e.message}`, "connect"),
      );
    };
    const timer = setTimeout(
      () =>
        fail(new ConnectionError(`${t.uri}: no connection within ${opts.connectTimeoutMs} ms`, "timeout")),
      opts.connectTimeoutMs,
    );
    if (signal?.aborted) return fail(new ConnectionError("aborted", "aborted"));
    signal?.addEventListener("abort", onAbort, { once: true });
    const done = (s: Duplex) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      sock.removeListener("error", fail);
      resolve({ sock: s, ...(child ? { child } : {}) });
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
          ...tlsMaterial(t, opts.tls),
          noDelay: true,
        } as never);
        readyEvent = "secureConnect";
        break;
      }
      case "ssh": {
        const tunnel = sshTunnel(t);
        sock = tunnel.sock;
        child = tunnel.child;
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

function tlsMaterial(
  t: ParsedUri,
  o: TransportOptions["tls"] = {},
): {
  ca: Buffer | string;
  cert: Buffer | string;
  key: Buffer | string;
  rejectUnauthorized: boolean;
  servername?: string;
} {
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
function sshTunnel(t: ParsedUri): { sock: Duplex; child: ChildProcess } {
  const args = ["-T", "-e", "none", "-o", "BatchMode=yes"];
  if (t.port) args.push("-p", String(t.port));
  if (t.user) args.push("-l", t.user);
  if (t.params.keyfile) args.push("-i", t.params.keyfile);
  if (t.params.known_hosts) args.push("-o", `UserKnownHostsFile=${t.params.known_hosts}`);
  const nc = t.params.netcat ?? "nc";
  args.push(t.host as string, "--", `${nc} -U ${t.socket}`);
  const child = spawn(PROGRAMS.ssh.program, args, { stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (b: Buffer) => {
    stderr += b.toString();
  });
  const duplex = Duplex.from({ readable: child.stdout, writable: child.stdin }) as Duplex;
  child.once("exit", (code) =>
    duplex.destroy(new Error(`ssh exited with ${code}${stderr ? `: ${stderr.trim()}` : ""}`)),
  );
  return { sock: duplex, child };
}
