/**
 * The git client of `run --git`: the git CLI (PROGRAMS.git), run with an argv array (no shell).
 *
 * Why the CLI and not a library: the remotes to support are file://, https:// and ssh://.
 * isomorphic-git, the maintained JavaScript implementation, has no ssh transport and no file://
 * transport; the git CLI has all three, speaks every server's smart HTTP, and takes credentials
 * through its own documented hooks (GIT_ASKPASS, GIT_SSH_COMMAND).
 *
 * Contracts:
 * - Credentials never reach argv, the environment or a log: a token is read from its file by the
 *   askpass script (its path, not its content, is in the environment), an ssh key is passed by
 *   path to ssh -i. Interactive prompts are off (GIT_TERMINAL_PROMPT=0, ssh BatchMode), so a
 *   credential that fails fails at once with git's message.
 * - The mirror is a bare repository that only this module writes; `fetch` follows the branch
 *   wherever it goes (a force-push included: the refspec is forced).
 * - `checkout` writes a revision into a directory that did not exist, under a temporary name
 *   renamed into place when complete: an existing revision directory is always whole. Symlinks
 *   are checked out as plain files (core.symlinks=false): a repository cannot point the loader
 *   at a file outside its tree.
 * - URLs are shown with any user:password part replaced (`redactUrl`).
 */
import { execFile } from "node:child_process";
import { chmod, mkdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PROGRAMS } from "../providers/programs.js";

export interface GitCredentials {
  /** A file holding an access token (https://): given to git as the password. */
  tokenFile?: string;
  /** The user name sent with the token (default x-access-token, which GitHub, Gitea and GitLab accept with a token). */
  username?: string;
  /** A private key file for ssh:// remotes. */
  sshKeyFile?: string;
  /** known_hosts for ssh:// remotes; without one, a host key is accepted the first time and pinned in the state dir. */
  knownHostsFile?: string;
}

export interface Commit {
  sha: string;
  subject: string;
  /** Committer date, ISO 8601. */
  date: string;
}

export class GitError extends Error {}

/** "https://user:secret@host/x" -> "https://***@host/x". */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, "$1***@");
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Prints the token file for a password prompt, the user name for a user name prompt. */
const ASKPASS = `#!/bin/sh
case "$1" in
  Username*|username*) printf '%s\\n' "$VIRTWARDEN_GIT_USERNAME" ;;
  *) cat "$VIRTWARDEN_GIT_TOKEN_FILE" ;;
esac
`;

export class GitMirror {
  readonly gitDir: string;
  private readonly remoteRef: string;

  constructor(
    /** The directory this mirror owns (in the state dir). */
    private readonly dir: string,
    readonly url: string,
    readonly branch: string,
    private readonly credentials: GitCredentials = {},
  ) {
    this.gitDir = join(dir, "repo.git");
    this.remoteRef = `refs/remotes/origin/${branch}`;
  }

  private async env(): Promise<NodeJS.ProcessEnv> {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      GIT_TERMINAL_PROMPT: "0",
      GIT_CONFIG_NOSYSTEM: "1",
      LC_ALL: "C",
    };
    delete env.GIT_DIR;
    delete env.GIT_WORK_TREE;
    delete env.GIT_INDEX_FILE;
    const c = this.credentials;
    if (c.tokenFile) {
      const script = join(this.dir, "askpass.sh");
      await writeFile(script, ASKPASS, { mode: 0o700 });
      await chmod(script, 0o700);
      env.GIT_ASKPASS = script;
      env.VIRTWARDEN_GIT_TOKEN_FILE = c.tokenFile;
      env.VIRTWARDEN_GIT_USERNAME = c.username ?? "x-access-token";
    }
    const ssh = [PROGRAMS.ssh.program, "-o", "BatchMode=yes"];
    if (c.sshKeyFile) ssh.push("-i", c.sshKeyFile, "-o", "IdentitiesOnly=yes");
    if (c.knownHostsFile)
      ssh.push("-o", `UserKnownHostsFile=${c.knownHostsFile}`, "-o", "StrictHostKeyChecking=yes");
    else
      ssh.push(
        "-o",
        `UserKnownHostsFile=${join(this.dir, "known_hosts")}`,
        "-o",
        "StrictHostKeyChecking=accept-new",
      );
    env.GIT_SSH_COMMAND = ssh.map(shellQuote).join(" ");
    return env;
  }

  /** Run git; rejects with its stderr (URLs redacted). */
  private async git(
    args: string[],
    opts: { env?: NodeJS.ProcessEnv; signal?: AbortSignal } = {},
  ): Promise<string> {
    const env = opts.env ?? (await this.env());
    return new Promise((resolve, reject) => {
      execFile(
        PROGRAMS.git.program,
        args,
        { env, maxBuffer: 64 * 1024 * 1024, signal: opts.signal, timeout: 300_000 },
        (err, stdout, stderr) => {
          if (!err) return resolve(stdout);
          const text = String(stderr || err.message)
            .split("\n")
            .map((l) => l.trim())
            .filter(Boolean)
            .join("; ");
          reject(new GitError(redactUrl(text).replaceAll(this.url, redactUrl(this.url))));
        },
      );
    });
  }

  private bare(args: string[]): string[] {
    // The token file stands in for any credential helper the user's git config names.
    const helper = this.credentials.tokenFile ? ["-c", "credential.helper="] : [];
    return ["--git-dir", this.gitDir, ...helper, ...args];
  }

  /** Create the bare mirror if it is not there. */
  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const exists = await stat(join(this.gitDir, "HEAD")).then(
      () => true,
      () => false,
    );
    if (!exists) await this.git(["init", "--quiet", "--bare", this.gitDir]);
  }

  /** Fetch the branch (forced: a force-push is followed); returns its tip. */
  async fetch(signal?: AbortSignal): Promise<Commit> {
    await this.git(
      this.bare([
        "fetch",
        "--quiet",
        "--no-tags",
        "--prune",
        "--no-write-fetch-head",
        "--",
        this.url,
        `+refs/heads/${this.branch}:${this.remoteRef}`,
      ]),
      { signal },
    );
    return this.commit(this.remoteRef);
  }

  /** The commit a revision names (in the mirror). */
  async commit(rev: string): Promise<Commit> {
    const out = await this.git(this.bare(["log", "-1", "--format=%H%x00%s%x00%cI", rev, "--"]));
    const [sha = "", subject = "", date = ""] = out.trim().split("\0");
    if (!/^[0-9a-f]{40,64}$/.test(sha)) throw new GitError(`cannot read commit ${rev}: ${out}`);
    return { sha, subject, date };
  }

  /** Whether the mirror holds this commit. */
  async has(sha: string): Promise<boolean> {
    return this.git(this.bare(["cat-file", "-e", `${sha}^{commit}`])).then(
      () => true,
      () => false,
    );
  }

  /**
   * Write the tree of `sha` into `target` (which must not exist): checked out into a temporary
   * directory next to it, then renamed, so `target` is whole or absent.
   */
  async checkout(sha: string, target: string): Promise<void> {
    const tmp = `${target}.tmp-${process.pid}`;
    const index = `${tmp}.index`;
    await rm(tmp, { recursive: true, force: true });
    await rm(index, { force: true });
    await mkdir(tmp, { recursive: true });
    const env = { ...(await this.env()), GIT_INDEX_FILE: index };
    try {
      const args = ["--git-dir", this.gitDir, "--work-tree", tmp, "-c", "core.symlinks=false"];
      await this.git([...args, "read-tree", sha], { env });
      await this.git([...args, "checkout-index", "--all", "--force"], { env });
      await rename(tmp, target);
    } finally {
      await rm(index, { force: true });
      await rm(tmp, { recursive: true, force: true });
    }
  }
}
