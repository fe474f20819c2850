/**
 * The controller's HTTP endpoints: /metrics (Prometheus text format), /healthz (the process and
 * its event loop answer), /readyz (the store has synced and the controllers run).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Registry } from "prom-client";

export interface HttpOptions {
  /** "host:port", ":port" or "port". */
  address: string;
  registry: Registry;
  ready: () => boolean;
  /** More endpoints by path (the `run --git` webhook). */
  routes?: Map<string, (req: IncomingMessage, res: ServerResponse) => void>;
}

export function parseAddress(address: string): { host: string; port: number } {
  const m = /^(?:(.*):)?(\d+)$/.exec(address);
  if (!m) throw new Error(`--metrics-addr "${address}": expected HOST:PORT, :PORT or PORT`);
  const host = m[1] === undefined || m[1] === "" ? "0.0.0.0" : m[1].replace(/^\[|\]$/g, "");
  return { host, port: Number(m[2]) };
}

export async function startHttpServer(opts: HttpOptions): Promise<Server> {
  const { host, port } = parseAddress(opts.address);
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/metrics") {
      opts.registry
        .metrics()
        .then((text) => {
          res.writeHead(200, { "content-type": opts.registry.contentType });
          res.end(text);
        })
        .catch((e: unknown) => {
          res.writeHead(500, { "content-type": "text/plain" });
          res.end(String(e));
        });
      return;
    }
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("ok\n");
      return;
    }
    if (path === "/readyz") {
      const ok = opts.ready();
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" });
      res.end(ok ? "ready\n" : "not ready\n");
      return;
    }
    const route = opts.routes?.get(path ?? "/");
    if (route) return route(req, res);
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("not found: /metrics, /healthz, /readyz\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
