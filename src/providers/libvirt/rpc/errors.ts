/** The errors a LibvirtClient call can end with (besides XdrError for a call it cannot encode). */

export class LibvirtError extends Error {
  constructor(
    readonly code: number,
    readonly domain: number,
    message: string,
    readonly procedure: number,
  ) {
    super(message);
    this.name = "LibvirtError";
  }
}

/**
 * The connection itself failed: closed, a call timed out (which also closes it), keepalive or
 * liveness lost, aborted by the caller, could not connect, the daemon broke the protocol, or it
 * stopped reading what we send ("stalled").
 */
export class ConnectionError extends Error {
  constructor(
    message: string,
    readonly reason: "closed" | "timeout" | "keepalive" | "aborted" | "connect" | "protocol" | "stalled",
  ) {
    super(message);
    this.name = "ConnectionError";
  }
}
