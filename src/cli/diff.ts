/**
 * `virtwarden diff [DIR... | --git URL] [--kubernetes]`: what applying the manifests would change
 * against the live state, as `kubectl diff` / `argocd app diff` show it. Changes nothing.
 *
 * Exit codes (kubectl diff's): 0 no difference, 1 differences found, 2 (>1) an error: a bad
 * manifest (every error named by file, document, line and field, as `virtwarden validate` names
 * it; nothing is compared then), an unreadable state dir, a remote or an API server that fails.
 *
 * - Standalone (default): the live side is what a standalone controller took from its manifests,
 *   read from its state dir's journal (store/files/declared.ts) without the lock and without
 *   writing anything, so it works while `virtwarden run` holds the state dir. Created, changed
 *   (spec, labels, annotations) and deleted resources; a deletion happens under run's
 *   --delete-settle rule.
 * - `--git URL`: the manifests are the branch tip, fetched with the git client of `run --git`
 *   into a temporary directory (removed afterwards), never into the controller's state dir.
 * - `--kubernetes`: each resource is applied server-side with `dryRun: All` (field manager
 *   virtwarden, conflicts forced, as `kubectl diff --server-side --force-conflicts`), and the
 *   live object is compared with the dry-run result, without status and the server's metadata.
 *   As with `kubectl diff`, nothing is shown for objects the manifests no longer hold: applying
 *   does not delete in Kubernetes mode.
 */
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, sep } from "node:path";
import { Command, Option } from "commander";
import { loadPaths, loadText, manifestFiles, mergeResults } from "../api/loader.js";
import { formatManifestError, type LoadedResource, type LoadResult } from "../api/manifest.js";
import { CLUSTER_SCOPED, type Kind } from "../api/types.js";
import {
  type Comparable,
  compareResources,
  formatNames,
  formatUnified,
  type ResourceChange,
  userOwned,
} from "./manifest-diff.js";

interface DiffOptions {
  stateDir: string;
  git?: string;
  branch: string;
  path: string;
  gitTokenFile?: string;
  gitUsername: string;
  gitSshKey?: string;
  gitKnownHosts?: string;
  kubernetes: boolean;
  kubeconfig?: string;
  output: "diff" | "name";
}

/** Reported with exit code 2: the comparison could not be made. */
class DiffError extends Error {}

export function diffCommand(): Command {
  return new Command("diff")
    .description(
      "what applying the manifests would change against the live state (exit 0 none, 1 differences, 2 error)",
    )
    .argument("[dir...]", "directories or files of manifests, - for stdin (default: .)")
    .option("--state-dir <dir>", "standalone mode: the controller's state directory", ".virtwarden/state")
    .option("--git <url>", "the manifests are a Git branch's tip (file://, https://, ssh://)")
    .option("--branch <branch>", "--git: the branch", "main")
    .option("--path <dir>", "--git: the directory of manifests inside the repository", ".")
    .option("--git-token-file <file>", "--git: a file holding an access token for https:// remotes")
    .option("--git-username <name>", "--git: the user name sent with the token", "x-access-token")
    .option("--git-ssh-key <file>", "--git: a private key file for ssh:// remotes")
    .option("--git-known-hosts <file>", "--git: known_hosts for ssh:// remotes")
    .option("--kubernetes", "compare with the objects in the API server (server-side dry-run apply)", false)
    .option("--kubeconfig <path>", "--kubernetes: kubeconfig (default: $KUBECONFIG or ~/.kube/config)")
    .addOption(new Option("-o, --output <format>", "diff | name").choices(["diff", "name"]).default("diff"))
    .action(async (dirs: string[], opts: DiffOptions) => {
      try {
        process.exitCode = await runDiff(dirs, opts);
      } catch (e) {
        process.stderr.write(`virtwarden diff: ${e instanceof Error ? e.message : String(e)}\n`);
        process.exitCode = 2;
      }
    });
}

async function runDiff(dirs: string[], opts: DiffOptions): Promise<number> {
  if (opts.git && dirs.length > 0) throw new DiffError("give directories or --git, not both");
  const paths = dirs.length > 0 ? dirs : ["."];
  const stdin = paths.includes("-") ? readFileSync(0, "utf8") : undefined;
  const loaded = opts.git ? await loadFromGit(opts.git, opts) : await loadPaths(paths, { stdin });
  if (loaded.errors.length > 0) {
    for (const e of loaded.errors) process.stderr.write(`${formatManifestError(e)}\n`);
    const n = loaded.errors.length;
    process.stderr.write(`${n} error${n === 1 ? "" : "s"} in the manifests: nothing compared\n`);
    return 2;
  }
  const changes = opts.kubernetes
    ? await compareWithApiServer(loaded.resources, opts)
    : await compareWithState(loaded.resources, opts.stateDir);
  process.stdout.write(opts.output === "name" ? formatNames(changes) : formatUnified(changes));
  const deleted = changes.filter((c) => c.change === "deleted").length;
  if (deleted > 0)
    process.stderr.write(
      `${deleted} resource${deleted === 1 ? "" : "s"} would be deleted: \`virtwarden run\` deletes a resource once no ` +
        "manifest has defined it for --delete-settle (default 2 s) and a fresh read confirms it; a VM is then " +
        "stopped and cleaned up by its finalizers\n",
    );
  return changes.length > 0 ? 1 : 0;
}

const comparable = (r: LoadedResource["resource"], body: unknown): Comparable => ({
  kind: r.kind,
  ...(r.metadata.namespace ? { namespace: r.metadata.namespace } : {}),
  name: r.metadata.name,
  body,
});

async function compareWithState(resources: LoadedResource[], stateDir: string): Promise<ResourceChange[]> {
  const { readDeclaredState } = await import("../store/files/index.js");
  const declared = await readDeclaredState(stateDir);
  // An object whose deletion is under way is gone as far as the manifests are concerned: one
  // defined again is created anew once its finalizers are done, one not defined changes nothing.
  const live = [...declared.values()]
    .filter((d) => !d.deleting)
    .map((d) => comparable(d.resource, userOwned(d.resource)));
  const wanted = resources.map((lr) => comparable(lr.resource, userOwned(lr.resource)));
  return compareResources(live, wanted);
}

/** The branch tip's manifests, fetched into a temporary directory; file names relative to the repository. */
async function loadFromGit(url: string, opts: DiffOptions): Promise<LoadResult> {
  const path = opts.path.replace(/^\.?\/*/, "").replace(/\/+$/, "");
  if (path.split("/").includes(".."))
    throw new DiffError(`--path ${opts.path}: must stay inside the repository`);
  const { GitMirror } = await import("../gitops/git.js");
  const tmp = await mkdtemp(join(tmpdir(), "virtwarden-diff-"));
  try {
    const mirror = new GitMirror(tmp, url, opts.branch, {
      ...(opts.gitTokenFile ? { tokenFile: opts.gitTokenFile, username: opts.gitUsername } : {}),
      ...(opts.gitSshKey ? { sshKeyFile: opts.gitSshKey } : {}),
      ...(opts.gitKnownHosts ? { knownHostsFile: opts.gitKnownHosts } : {}),
    });
    await mirror.init();
    const tip = await mirror.fetch().catch((e: unknown) => {
      throw new DiffError(`cannot fetch ${opts.branch} of ${mirror.url}: ${(e as Error).message}`);
    });
    const tree = join(tmp, "tree");
    await mirror.checkout(tip.sha, tree);
    const root = path ? join(tree, ...path.split("/")) : tree;
    if (!(await stat(root).catch(() => undefined))?.isDirectory())
      throw new DiffError(`--path ${path}: no such directory in commit ${tip.sha.slice(0, 12)}`);
    const results: LoadResult[] = [];
    for (const f of await manifestFiles([root]))
      results.push(loadText(await readFile(f, "utf8"), relative(tree, f).split(sep).join("/")));
    return mergeResults(results);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function compareWithApiServer(
  resources: LoadedResource[],
  opts: DiffOptions,
): Promise<ResourceChange[]> {
  const { dryRunApply } = await import("./diff-kube.js");
  const pairs = await dryRunApply(resources, opts.kubeconfig);
  const live: Comparable[] = [];
  const wanted: Comparable[] = [];
  for (const p of pairs) {
    const id = {
      kind: p.kind as Kind,
      name: p.name,
      ...(CLUSTER_SCOPED.has(p.kind) ? {} : { namespace: p.namespace }),
    };
    if (p.live !== undefined) live.push({ ...id, body: p.live });
    wanted.push({ ...id, body: p.applied });
  }
  return compareResources(live, wanted, { deletions: false });
}
