/**
 * A TCP proxy on loopback between one controller replica and the API server, that can turn into a
 * black hole: connections stay open but nothing goes through in either direction, and new ones
 * are accepted and never answered — a network partition as a controller sees it (no refusal, no
 * reset: requests just never come back). `heal()` closes what was held and forwards again.
 */
import { connect, createServer, type Server, type Socket } from "node:net";

export class PartitionProxy {
  private server: Server | undefined;
  private readonly pairs = new Set<{ client: Socket; upstream?: Socket }>();
  private held = false;
  port = 0;

  constructor(
    private readonly upstreamHost: string,
    private readonly upstreamPort: number,
  ) {}

  async start(): Promise<number> {
    this.server = createServer((client) => {
      const pair: { client: Socket; upstream?: Socket } = { client };
      this.pairs.add(pair);
      const drop = () => {
        client.destroy();
        pair.upstream?.destroy();
        this.pairs.delete(pair);
      };
      // While partitioned, the API server's side closing is not seen either: the client waits.
      const upstreamGone = () => {
        if (this.held) pair.upstream?.destroy();
        else drop();
      };
      client.on("error", drop);
      client.on("close", drop);
      if (this.held) {
        client.pause();
        return;
      }
      const up = connect(this.upstreamPort, this.upstreamHost);
      pair.upstream = up;
      up.on("error", upstreamGone);
      up.on("close", upstreamGone);
      client.on("data", (b) => {
        if (!this.held) up.write(b);
      });
      up.on("data", (b) => {
        if (!this.held) client.write(b);
      });
    });
    await new Promise<void>((r) => this.server?.listen(0, "127.0.0.1", () => r()));
    const a = this.server.address();
    this.port = typeof a === "object" && a ? a.port : 0;
    return this.port;
  }

  /** From now on nothing gets through; connections stay open. */
  partition(): void {
    this.held = true;
  }

  /** Drop what was held; new connections are forwarded again. */
  heal(): void {
    for (const p of [...this.pairs]) {
      p.client.destroy();
      p.upstream?.destroy();
    }
    this.pairs.clear();
    this.held = false;
  }

  async stop(): Promise<void> {
    this.heal();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
