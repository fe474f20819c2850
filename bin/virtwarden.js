#!/usr/bin/env node
// Installed entry point: runs the compiled CLI (npm run build), or the sources through tsx in a checkout.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const compiled = join(root, "dist", "cli", "main.js");
if (existsSync(compiled)) {
  await import(pathToFileURL(compiled).href);
} else {
  await import("tsx/esm/api").then(({ register }) => register());
  await import(pathToFileURL(join(root, "src", "cli", "main.ts")).href);
}
