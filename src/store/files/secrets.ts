/**
 * Standalone-mode Secrets: `<secretsDir>/<name>.yaml|.yml|.json`, either a flat map of strings or
 * a Kubernetes Secret manifest (`stringData`, or base64 `data`).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parse } from "yaml";

export async function readSecretFile(dir: string, name: string): Promise<Record<string, string>> {
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name))
    throw new Error(`secret name "${name}" is not a valid name`);
  for (const ext of [".yaml", ".yml", ".json"]) {
    const path = join(dir, `${name}${ext}`);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") continue;
      throw e;
    }
    const doc = parse(text) as Record<string, unknown> | null;
    if (!doc || typeof doc !== "object")
      throw new Error(`${path}: a secret is a map of strings or a Secret manifest`);
    const out: Record<string, string> = {};
    if (doc.kind === "Secret") {
      for (const [k, v] of Object.entries((doc.data as Record<string, string>) ?? {}))
        out[k] = Buffer.from(String(v), "base64").toString("utf8");
      for (const [k, v] of Object.entries((doc.stringData as Record<string, string>) ?? {}))
        out[k] = String(v);
    } else {
      for (const [k, v] of Object.entries(doc)) {
        if (typeof v !== "string" && typeof v !== "number") throw new Error(`${path}: ${k} must be a string`);
        out[k] = String(v);
      }
    }
    return out;
  }
  throw new Error(`secret ${name} not found in ${dir} (${name}.yaml, .yml or .json)`);
}
