/**
 * Generates manifests/monitoring/rules.yaml (a plain Prometheus rule file, for Prometheus without
 * the operator and for promtool) from manifests/monitoring/prometheusrule.yaml, the source of
 * truth. `--check` exits 1 when rules.yaml is not current (run in the tests).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dump, load } from "js-yaml";

const DIR = fileURLToPath(new URL("../manifests/monitoring/", import.meta.url));

export function renderRules(): string {
  const rule = load(readFileSync(`${DIR}prometheusrule.yaml`, "utf8")) as { spec: { groups: unknown[] } };
  return `# Generated from prometheusrule.yaml by \`npm run gen:monitoring\`: edit that file, not this one.\n${dump(
    { groups: rule.spec.groups },
    { lineWidth: 200, noRefs: true },
  )}`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = renderRules();
  const path = `${DIR}rules.yaml`;
  if (process.argv.includes("--check")) {
    let current = "";
    try {
      current = readFileSync(path, "utf8");
    } catch {}
    if (current !== out) {
      console.error(`${path} is out of date: run npm run gen:monitoring`);
      process.exit(1);
    }
  } else {
    writeFileSync(path, out);
    console.log(`wrote ${path}`);
  }
}
