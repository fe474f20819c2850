#!/usr/bin/env node
// Installed entry point. An installed package carries only the compiled CLI (dist/, built by
// prepack); a checkout runs its sources through tsx, so a dist/ left by an earlier build never runs
// code older than the sources beside it.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const sources = join(root, "src", "cli", "main.ts");
const compiled = join(root, "dist", "cli", "main.js");
if (existsSync(sources)) {
  let register;
  try {
    ({ register } = await import("tsx/esm/api"));
  } catch {
    process.stderr.write(
      `virtwarden: ${sources} needs tsx to run (npm install in ${root}), or run the compiled ${compiled} (npm run build)\n`,
    );
    process.exit(1);
  }
  register();
  await import(pathToFileURL(sources).href);
} else if (existsSync(compiled)) {
  await import(pathToFileURL(compiled).href);
} else {
  process.stderr.write(
    `virtwarden: neither ${compiled} nor ${sources} exists: this package was packed without npm run build\n`,
  );
  process.exit(1);
}
