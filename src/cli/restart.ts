/**
 * `virtwarden restart vm NAME`: ask for one restart of a VM, as `virtctl restart` does, by setting
 * the annotation virtwarden.io/restartedAt to the current time where the VM's desired state lives:
 *
 * - `--kubernetes`: a merge patch of the object's annotations through the API server (the watch
 *   wakes the controller; the field manager and user agent say virtwarden).
 * - standalone (default): the manifest that defines the VM, in the directories `virtwarden run`
 *   watches (`--dir`, default the current directory), edited in place with its comments and
 *   layout kept, written whole through a rename (the watcher sees one change, never half a
 *   file). A VM defined by no manifest there, or by more than one, is an error naming the
 *   directories or the files; nothing is written then. With `run --git` the manifests are the
 *   branch's: commit the annotation instead (the error says so when no manifest is found).
 *
 * The controller restarts a running VM once per annotation value (status.restartedAt records the
 * one honoured); a VM that does not run is not started for it.
 */
import { randomBytes } from "node:crypto";
import { readFile, rename, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { isMap, parseAllDocuments } from "yaml";
import { manifestFiles } from "../api/loader.js";
import { GROUP, VERSION } from "../api/types.js";
import { RESTART_ANNOTATION } from "../reconcilers/virtualmachine/update.js";

export interface RestartTarget {
  namespace: string;
  name: string;
}

export function parseTarget(text: string, namespace?: string): RestartTarget {
  const parts = text.split("/");
  if (parts.length > 2 || parts.some((p) => p === ""))
    throw new InvalidArgumentError(`"${text}" is not NAME or NAMESPACE/NAME`);
  return parts.length === 2
    ? { namespace: parts[0] as string, name: parts[1] as string }
    : { namespace: namespace ?? "default", name: text };
}

/**
 * Set the annotation in the one manifest under `dirs` that defines the VM. Returns the file.
 * Throws (writing nothing) when no manifest or several define it.
 */
export async function annotateManifest(dirs: string[], target: RestartTarget, at: Date): Promise<string> {
  const hits: { file: string; text: string }[] = [];
  for (const file of await manifestFiles(dirs)) {
    const text = await readFile(file, "utf8");
    const docs = parseAllDocuments(text);
    if (!Array.isArray(docs)) continue; // an empty file
    let found = false;
    for (const doc of docs) {
      if (doc.errors.length > 0 || !isMap(doc.contents)) continue;
      const kind = doc.get("kind");
      const apiVersion = String(doc.get("apiVersion") ?? "");
      const name = doc.getIn(["metadata", "name"]);
      const namespace = doc.getIn(["metadata", "namespace"]) ?? "default";
      if (kind !== "VirtualMachine" || !apiVersion.startsWith(`${GROUP}/`)) continue;
      if (name !== target.name || namespace !== target.namespace) continue;
      doc.setIn(["metadata", "annotations", RESTART_ANNOTATION], at.toISOString());
      found = true;
    }
    if (found) hits.push({ file, text: docs.map((d) => d.toString()).join("") });
  }
  const what = `VirtualMachine ${target.namespace}/${target.name}`;
  if (hits.length === 0)
    throw new Error(
      `no manifest under ${dirs.join(", ")} defines ${what} (with run --git, commit the annotation ${RESTART_ANNOTATION} to the branch instead)`,
    );
  if (hits.length > 1) throw new Error(`${what} is defined in ${hits.map((h) => h.file).join(" and ")}`);
  const [{ file, text }] = hits as [{ file: string; text: string }];
  // Hidden, so the watcher never reads it as a manifest; the rename replaces the file at once.
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(4).toString("hex")}.tmp`);
  await writeFile(tmp, text);
  await rename(tmp, file);
  return file;
}

/** Merge-patch the annotation through the API server. */
export async function annotateInKubernetes(
  target: RestartTarget,
  at: Date,
  kubeconfig: string | undefined,
): Promise<void> {
  const k8s = await import("@kubernetes/client-node");
  const { identified } = await import("../store/kube/request.js");
  const kc = new k8s.KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else kc.loadFromDefault();
  const api = identified(kc).makeApiClient(k8s.CustomObjectsApi);
  await api.patchNamespacedCustomObject(
    {
      group: GROUP,
      version: VERSION,
      namespace: target.namespace,
      plural: "virtualmachines",
      name: target.name,
      body: { metadata: { annotations: { [RESTART_ANNOTATION]: at.toISOString() } } },
    },
    k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
  );
}

export function restartCommand(): Command {
  const c = new Command("restart").description(
    `restart a VM once (sets the annotation ${RESTART_ANNOTATION}): applies spec changes that wait for a restart`,
  );
  c.command("vm")
    .alias("vms")
    .alias("virtualmachine")
    .argument("<name>", "NAME or NAMESPACE/NAME")
    .option("-n, --namespace <ns>", "namespace of NAME", "default")
    .option("--kubernetes", "the VM lives in the API server (as with run --kubernetes)")
    .option("--kubeconfig <path>", "kubeconfig (default: in-cluster, then $KUBECONFIG or ~/.kube/config)")
    .option("--dir <paths...>", "standalone: the manifest directories `virtwarden run` watches", ["."])
    .action(
      async (
        name: string,
        opts: { namespace: string; kubernetes?: boolean; kubeconfig?: string; dir: string[] },
      ) => {
        const target = parseTarget(name, opts.namespace);
        const at = new Date();
        if (opts.kubernetes) {
          await annotateInKubernetes(target, at, opts.kubeconfig);
          process.stdout.write(
            `virtualmachine ${target.namespace}/${target.name}: ${RESTART_ANNOTATION}=${at.toISOString()}\n`,
          );
          return;
        }
        const file = await annotateManifest(opts.dir, target, at);
        process.stdout.write(
          `virtualmachine ${target.namespace}/${target.name}: ${RESTART_ANNOTATION}=${at.toISOString()} (in ${file})\n`,
        );
      },
    );
  return c;
}
