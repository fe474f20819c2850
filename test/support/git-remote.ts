/**
 * Real Git remotes for the `run --git` tests: a bare repository on disk (file://) with a work
 * clone that commits and pushes, and the same repository served over smart HTTP on loopback by
 * git's own `git http-backend` (CGI, spawned per request by a small Node server), optionally
 * behind HTTP Basic authentication with a token; and over ssh:// by a real OpenSSH server on
 * loopback (serveSsh).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { type AddressInfo, createServer as createNetServer } from "node:net";
import { userInfo } from "node:os";
import { dirname, join } from "node:path";

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: "test",
  GIT_AUTHOR_EMAIL: "test@example.invalid",
  GIT_COMMITTER_NAME: "test",
  GIT_COMMITTER_EMAIL: "test@example.invalid",
  GIT_CONFIG_NOSYSTEM: "1",
};

export class GitRemote {
  readonly bare: string;
  readonly work: string;

  constructor(
    readonly root: string,
    readonly branch = "main",
  ) {
    this.bare = join(root, "remote.git");
    this.work = join(root, "work");
    mkdirSync(root, { recursive: true });
    this.git(root, "init", "--quiet", "--bare", `--initial-branch=${branch}`, this.bare);
    this.git(root, "init", "--quiet", `--initial-branch=${branch}`, this.work);
    this.git(this.work, "remote", "add", "origin", this.bare);
  }

  get fileUrl(): string {
    return `file://${this.bare}`;
  }

  git(cwd: string, ...args: string[]): string {
    return execFileSync("git", args, { cwd, env: GIT_ENV, stdio: ["ignore", "pipe", "pipe"] }).toString();
  }

  /** Write (string) or delete (null) files, commit everything, push; returns the commit id. */
  commit(message: string, files: Record<string, string | null>, opts: { push?: boolean } = {}): string {
    for (const [path, text] of Object.entries(files)) {
      const full = join(this.work, path);
      if (text === null) rmSync(full, { force: true });
      else {
        mkdirSync(dirname(full), { recursive: true });
        writeFileSync(full, text);
      }
    }
    this.git(this.work, "add", "--all");
    this.git(this.work, "commit", "--quiet", "--allow-empty", "-m", message);
    if (opts.push ?? true) this.push();
    return this.head();
  }

  /**
   * Move the remote's branch to a commit the remote already holds (what a push does last:
   * receive-pack's ref update), in one cheap process: a burst of pushes without paying for
   * pack negotiation each time. `stage` first puts commits made locally into the remote.
   */
  moveBranch(sha: string): void {
    this.git(this.root, "--git-dir", this.bare, "update-ref", `refs/heads/${this.branch}`, sha);
  }

  /** Put the work clone's HEAD (and its history) into the remote without moving the branch. */
  stage(): void {
    this.git(this.work, "push", "--quiet", "--force", "origin", "HEAD:refs/staging/head");
  }

  head(): string {
    return this.git(this.work, "rev-parse", "HEAD").trim();
  }

  push(force = false): void {
    this.git(
      this.work,
      "push",
      "--quiet",
      ...(force ? ["--force"] : []),
      "origin",
      `HEAD:refs/heads/${this.branch}`,
    );
  }

  /** Rewrite the branch: back to `sha` (history after it dropped) in the work clone. */
  resetTo(sha: string): void {
    this.git(this.work, "reset", "--quiet", "--hard", sha);
  }
}

export interface HttpRemote {
  url: string;
  /** Requests served, by whether they were authorized. */
  requests: { authorized: number; refused: number };
  close(): Promise<void>;
}

/**
 * Serve the bare repositories under `projectRoot` over smart HTTP with `git http-backend`. With
 * `token`, every request must carry Basic credentials whose password is `token()` (read per
 * request, so a test can rotate it); others get 401 and a Basic challenge.
 */
export async function serveHttpBackend(
  projectRoot: string,
  opts: { token?: () => string } = {},
): Promise<HttpRemote> {
  const backend = execFileSync("git", ["--exec-path"]).toString().trim();
  const requests = { authorized: 0, refused: 0 };
  const server: Server = createServer((req, res) => {
    if (opts.token) {
      const auth = req.headers.authorization ?? "";
      const m = /^Basic (.+)$/.exec(auth);
      const password = m?.[1]
        ? Buffer.from(m[1], "base64").toString().split(":").slice(1).join(":")
        : undefined;
      if (password !== opts.token()) {
        requests.refused++;
        res.writeHead(401, { "www-authenticate": 'Basic realm="git"', "content-type": "text/plain" });
        res.end("unauthorized\n");
        return;
      }
    }
    requests.authorized++;
    const url = new URL(req.url ?? "/", "http://localhost");
    const child = spawn(join(backend, "git-http-backend"), [], {
      env: {
        ...process.env,
        GIT_PROJECT_ROOT: projectRoot,
        GIT_HTTP_EXPORT_ALL: "1",
        PATH_INFO: decodeURIComponent(url.pathname),
        QUERY_STRING: url.search.replace(/^\?/, ""),
        REQUEST_METHOD: req.method ?? "GET",
        CONTENT_TYPE: req.headers["content-type"] ?? "",
        REMOTE_ADDR: "127.0.0.1",
        REMOTE_USER: "test",
        ...(req.headers["content-encoding"]
          ? { HTTP_CONTENT_ENCODING: req.headers["content-encoding"] }
          : {}),
        ...(req.headers["git-protocol"] ? { GIT_PROTOCOL: String(req.headers["git-protocol"]) } : {}),
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    req.pipe(child.stdin);
    let head = Buffer.alloc(0);
    let headerDone = false;
    child.stdout.on("data", (chunk: Buffer) => {
      if (headerDone) return void res.write(chunk);
      head = Buffer.concat([head, chunk]);
      const sep = head.indexOf("\r\n\r\n") >= 0 ? head.indexOf("\r\n\r\n") : head.indexOf("\n\n");
      if (sep < 0) return;
      const sepLen = head[sep] === 13 ? 4 : 2;
      const lines = head.subarray(0, sep).toString().split(/\r?\n/);
      let status = 200;
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(":");
        const name = l.slice(0, i).trim();
        const value = l.slice(i + 1).trim();
        if (name.toLowerCase() === "status") status = Number.parseInt(value, 10);
        else headers[name] = value;
      }
      res.writeHead(status, headers);
      headerDone = true;
      res.write(head.subarray(sep + sepLen));
    });
    child.stdout.on("end", () => res.end());
    child.on("error", () => res.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export interface SshRemote {
  /** ssh://USER@127.0.0.1:PORT — append the bare repository's absolute path. */
  url: string;
  /** A private key sshd accepts (authorized_keys), and one it does not. */
  keyFile: string;
  strangerKeyFile: string;
  /** known_hosts naming this server's host key, and one naming another key for the same address. */
  knownHostsFile: string;
  wrongKnownHostsFile: string;
  /** Start again on the same port with a new host key (what a man in the middle looks like). */
  rotateHostKey(): Promise<void>;
  close(): Promise<void>;
}

const SSHD = ["/usr/sbin/sshd", "/usr/bin/sshd"].find((p) => existsSync(p));
/** Under CI=true always true (and serveSsh fails loudly when sshd is missing). */
export const sshdAvailable = process.env.CI === "true" || SSHD !== undefined;

/**
 * A real OpenSSH server on loopback for git over ssh://: its own host key, config and
 * authorized_keys in `dir`, for the user running the tests, public-key authentication only. Git
 * runs `git-upload-pack` through it as it would on any server.
 */
export async function serveSsh(dir: string): Promise<SshRemote> {
  if (!SSHD) throw new Error("sshd is missing (scripts/install-test-deps.sh installs openssh-server)");
  mkdirSync(dir, { recursive: true });
  const keygen = (file: string) =>
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "vw-test", "-f", file]);
  const keyFile = join(dir, "client");
  const strangerKeyFile = join(dir, "stranger");
  keygen(keyFile);
  keygen(strangerKeyFile);
  const authorized = join(dir, "authorized_keys");
  writeFileSync(authorized, readFileSync(`${keyFile}.pub`), { mode: 0o600 });
  const user = userInfo().username;
  // sshd wants its privilege separation directory (made by the service on a real system).
  if (process.getuid?.() === 0) mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  // sshd runs in inetd mode (-i), one per connection, on sockets accepted by a listener this
  // process holds for the server's whole life. A host key rotation then never gives the port up:
  // a restarted sshd could find it taken by another test's connection (EADDRINUSE), and attempts
  // made between stop and start saw "Connection refused".
  let hostKey = "";
  let config = "";
  let generation = 0;
  const children = new Set<ChildProcess>();
  const start = async () => {
    generation++;
    hostKey = join(dir, `host-${generation}`);
    keygen(hostKey);
    config = join(dir, `sshd-${generation}.conf`);
    writeFileSync(
      config,
      [
        `HostKey ${hostKey}`,
        `AuthorizedKeysFile ${authorized}`,
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "PermitRootLogin prohibit-password",
        `AllowUsers ${user}`,
        "PidFile none",
        "LogLevel ERROR",
        "",
      ].join("\n"),
    );
    // The config must parse: sshd -t checks it (and the host key) as a daemon start would.
    execFileSync(SSHD, ["-t", "-f", config], { stdio: ["ignore", "ignore", "pipe"] });
  };
  await start();
  // pauseOnConnect: nothing is read here; the socket's descriptor goes to sshd untouched.
  const listener = createNetServer({ pauseOnConnect: true }, (socket) => {
    const c = spawn(SSHD, ["-i", "-e", "-f", config], { stdio: [socket, socket, "ignore"] });
    children.add(c);
    c.once("exit", () => children.delete(c));
    c.once("error", () => socket.destroy());
    // sshd holds its own copy of the descriptor: closing ours does not end the connection.
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (listener.address() as AddressInfo).port;
  const stop = async () => {
    await new Promise<void>((r) => (listener.listening ? listener.close(() => r()) : r()));
    for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
  };
  const knownHostsFile = join(dir, "known_hosts");
  writeFileSync(knownHostsFile, `[127.0.0.1]:${port} ${readFileSync(`${hostKey}.pub`, "utf8").trim()}\n`);
  const wrongKnownHostsFile = join(dir, "known_hosts.wrong");
  writeFileSync(
    wrongKnownHostsFile,
    `[127.0.0.1]:${port} ${readFileSync(`${strangerKeyFile}.pub`, "utf8").trim()}\n`,
  );
  return {
    url: `ssh://${user}@127.0.0.1:${port}`,
    keyFile,
    strangerKeyFile,
    knownHostsFile,
    wrongKnownHostsFile,
    // A re-installed server: the new key, and the connections the old one served are cut (an
    // in-flight fetch would otherwise go on with the trusted old key and legitimately fetch a
    // commit made after the rotation).
    rotateHostKey: async () => {
      const old = [...children];
      await start();
      await Promise.all(
        old.map((c) =>
          c.exitCode !== null || c.signalCode !== null
            ? undefined
            : new Promise<void>((r) => {
                c.once("exit", () => r());
                c.kill("SIGTERM");
              }),
        ),
      );
    },
    close: stop,
  };
}
