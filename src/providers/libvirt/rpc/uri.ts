/**
 * libvirt connection URIs as users write them, and what each means for the transport:
 *   qemu:///system                       unix socket /var/run/libvirt/libvirt-sock
 *   qemu+unix:///system?socket=PATH      unix socket PATH
 *   test+unix:///default?socket=PATH     the test driver through a daemon
 *   qemu+tcp://HOST[:16509]/system       plain TCP (auth_tcp none)
 *   qemu+tls://HOST[:16514]/system       TLS; ?pkipath=DIR for the certificates, ?no_verify=1
 *   qemu+ssh://[USER@]HOST[:22]/system   ssh, then `nc -U` to the remote socket (?socket=, ?keyfile=)
 * The driver name sent to the daemon is the URI without transport, server and our parameters
 * (qemu:///system), as libvirt's own remote driver does.
 */
export type Transport = "unix" | "tcp" | "tls" | "ssh";

export interface ParsedUri {
  uri: string;
  driver: string;
  transport: Transport;
  host?: string;
  port?: number;
  user?: string;
  path: string;
  socket: string;
  /** What ConnectOpen receives. */
  name: string;
  params: Record<string, string>;
}

const DRIVERS = new Set(["qemu", "test", "lxc", "xen", "libxl", "vbox", "bhyve", "ch", "vz"]);
const DEFAULT_SOCKET = "/var/run/libvirt/libvirt-sock";
const OUR_PARAMS = new Set([
  "socket",
  "pkipath",
  "no_verify",
  "keyfile",
  "netcat",
  "no_tty",
  "known_hosts",
  "name",
]);

export function parseLibvirtUri(uri: string): ParsedUri {
  const m =
    /^([a-z0-9]+)(?:\+([a-z0-9]+))?:\/\/(?:([^@/]*)@)?([^/:?]*)(?::(\d+))?(\/[^?]*)?(?:\?(.*))?$/i.exec(uri);
  if (!m) throw new Error(`"${uri}" is not a libvirt URI (e.g. qemu:///system, qemu+tcp://host/system)`);
  const [, driver = "", explicit, user, host, port, path = "/", query] = m;
  if (!DRIVERS.has(driver))
    throw new Error(`${uri}: "${driver}" is not a libvirt driver (${[...DRIVERS].join(", ")})`);
  const params: Record<string, string> = {};
  for (const kv of (query ?? "").split("&").filter(Boolean)) {
    const i = kv.indexOf("=");
    params[decodeURIComponent(i < 0 ? kv : kv.slice(0, i))] =
      i < 0 ? "" : decodeURIComponent(kv.slice(i + 1));
  }
  let transport: Transport;
  if (explicit) {
    if (!["unix", "tcp", "tls", "ssh"].includes(explicit)) {
      throw new Error(
        `${uri}: transport "${explicit}" is not supported (unix, tcp, tls, ssh; libssh and ext are not)`,
      );
    }
    transport = explicit as Transport;
  } else transport = host ? "tls" : "unix";
  if (driver === "test" && transport === "unix" && !params.socket && !explicit) {
    throw new Error(
      `${uri}: test:/// is libvirt's in-process test driver and needs no daemon; use test+unix:///default?socket=PATH to reach one through libvirtd`,
    );
  }
  if ((transport === "tcp" || transport === "tls" || transport === "ssh") && !host)
    throw new Error(`${uri}: ${transport} needs a host`);
  const keep = Object.entries(params).filter(([k]) => !OUR_PARAMS.has(k));
  const name =
    params.name ??
    `${driver}://${path}${keep.length ? `?${keep.map(([k, v]) => `${k}=${v}`).join("&")}` : ""}`;
  return {
    uri,
    driver,
    transport,
    ...(host ? { host } : {}),
    ...(port ? { port: Number(port) } : {}),
    ...(user ? { user } : {}),
    path,
    socket: params.socket ?? DEFAULT_SOCKET,
    name,
    params,
  };
}
