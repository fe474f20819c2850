/**
 * `virtwarden validate PATH...`: check manifests exactly as the controller would load them.
 * Exit 0 when every document is valid, 1 when any is invalid (or a path is unreadable), 2 for a
 * usage error (commander). Documents of other API groups (Deployments, Argo CD and Flux objects)
 * are skipped and counted, not errors. `--output json` prints {valid, resources, skipped, errors}
 * for tools.
 */
import { readFileSync } from "node:fs";
import { Command, Option } from "commander";
import { loadPaths } from "../api/loader.js";
import { formatManifestError, formatSkipped } from "../api/manifest.js";

export function validateCommand(): Command {
  return new Command("validate")
    .description("validate manifests (files, directories recursively, - for stdin)")
    .argument("<paths...>", "files or directories of YAML/JSON manifests")
    .addOption(new Option("-o, --output <format>", "output format").choices(["text", "json"]).default("text"))
    .action(async (paths: string[], opts: { output: "text" | "json" }) => {
      const stdin = paths.includes("-") ? readFileSync(0, "utf8") : undefined;
      const result = await loadPaths(paths, { stdin });
      const skipped = result.skipped ?? [];
      const files = new Set([
        ...result.resources.map((r) => r.source.file),
        ...result.errors.map((e) => e.file),
        ...skipped.map((s) => s.file),
      ]);
      const invalidDocs = new Set(result.errors.map((e) => `${e.file}#${e.document}`));
      const valid = result.errors.length === 0;
      if (opts.output === "json") {
        const report = {
          valid,
          files: files.size,
          resources: result.resources.map((r) => ({
            kind: r.resource.kind,
            ...(r.resource.metadata.namespace ? { namespace: r.resource.metadata.namespace } : {}),
            name: r.resource.metadata.name,
            file: r.source.file,
            line: r.source.line,
          })),
          skipped: skipped.map((s) => ({
            apiVersion: s.apiVersion,
            kind: s.kind,
            ...(s.name ? { name: s.name } : {}),
            file: s.file,
            line: s.line,
          })),
          errors: result.errors,
        };
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      } else {
        for (const e of result.errors) process.stderr.write(`${formatManifestError(e)}\n`);
        const n = result.resources.length;
        const others = formatSkipped(skipped);
        const summary = `${n} valid resource${n === 1 ? "" : "s"} in ${files.size} file${files.size === 1 ? "" : "s"}${others ? `, ${others}` : ""}`;
        process.stdout.write(
          valid
            ? `${summary}: all valid\n`
            : `${summary}; ${result.errors.length} error${result.errors.length === 1 ? "" : "s"} in ${invalidDocs.size} document${invalidDocs.size === 1 ? "" : "s"}\n`,
        );
      }
      process.exitCode = valid ? 0 : 1;
    });
}
