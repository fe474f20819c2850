/**
 * npm run chaos — the controller SIGKILLed at seeded moments on the real test bed (three
 * libvirt hosts in network namespaces), through every scenario of test/chaos/real/scenarios.ts,
 * with an invariant watcher that reads /proc and virsh (test/chaos/real/harness.ts says what is
 * checked). One test bed for the run; every scenario starts from a clean bed and a fresh state dir.
 *
 * Usage: npm run chaos [-- --seeds N (default 2: about 15 minutes here) | --seed S] [--first-seed S] [--scenario NAME[,NAME]]
 * A failing seed prints its reproduction: npm run chaos -- --seed 42 --scenario drain
 * Writes the real_* metrics of bench/results/chaos.json (other parts of that file are kept).
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { benchEnv } from "../../bench/env.js";
import { startChaosBed } from "./real/bed.js";
import { CONVERGE_BOUND_S, repro, runScenario, type ScenarioResult } from "./real/harness.js";
import { SCENARIOS } from "./real/scenarios.js";

function opt(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const single = opt("seed");
const firstSeed = Number(opt("first-seed") ?? 1);
const seeds =
  single !== undefined
    ? [Number(single)]
    : Array.from({ length: Number(opt("seeds") ?? 2) }, (_, i) => firstSeed + i);
const wanted = opt("scenario")?.split(",");
const scenarios = wanted ? SCENARIOS.filter((s) => wanted.includes(s.name)) : SCENARIOS;
if (wanted && scenarios.length !== wanted.length) {
  console.error(`unknown scenario in ${wanted.join(",")}; known: ${SCENARIOS.map((s) => s.name).join(", ")}`);
  process.exit(2);
}
if (seeds.some((s) => !Number.isInteger(s))) {
  console.error("--seed/--seeds/--first-seed take whole numbers");
  process.exit(2);
}

const t0 = Date.now();
const bed = await startChaosBed();
console.log(
  `test bed ${bed.tb.id}: ${bed.hosts.map((h) => h.name).join(", ")}; guests under ${bed.tb.kvm ? "KVM" : "TCG"}; seeds ${seeds.join(",")}; scenarios ${scenarios.map((s) => s.name).join(",")}; converge bound ${CONVERGE_BOUND_S} s`,
);
const results: ScenarioResult[] = [];
try {
  for (const seed of seeds)
    for (const s of scenarios) {
      const r = await runScenario(bed, s, seed, { log: (line) => console.log(line) });
      results.push(r);
      console.log(
        `${r.violations.length === 0 ? "ok  " : "FAIL"} ${s.name} seed ${seed}: ${r.kills} kills, ${r.samples} samples, converged ${r.convergeS?.toFixed(1) ?? "never"} s, ${r.wallS.toFixed(0)} s`,
      );
      for (const v of r.violations) console.log(`     ${v}`);
      if (r.violations.length > 0)
        console.log(`     logs: ${r.logDir}\n     reproduce: ${repro(seed, s.name)}`);
    }
} finally {
  await bed.teardown();
}

const failed = results.filter((r) => r.violations.length > 0);
const wallS = (Date.now() - t0) / 1000;
const converge = results.map((r) => r.convergeS).filter((x): x is number => x !== undefined);
const metrics = {
  real_kills_survived: { value: results.reduce((a, r) => a + r.kills, 0), unit: "count" },
  real_scenarios: { value: results.length, unit: "count" },
  real_seeds: { value: seeds.length, unit: "count" },
  real_watcher_samples: { value: results.reduce((a, r) => a + r.samples, 0), unit: "count" },
  real_violations: { value: results.reduce((a, r) => a + r.violations.length, 0), unit: "count" },
  real_failed_scenarios: { value: failed.length, unit: "count" },
  real_max_converge_s: { value: Math.round(Math.max(0, ...converge) * 10) / 10, unit: "s" },
  real_converge_bound_s: { value: CONVERGE_BOUND_S, unit: "s" },
  real_wall_s: { value: Math.round(wallS), unit: "s" },
};
console.log("\nchaos (real test bed)");
for (const [k, m] of Object.entries(metrics))
  console.log(`  ${k.padEnd(24)} ${String(m.value).padStart(10)} ${m.unit}`);
for (const r of failed) console.log(`failing: ${repro(r.seed, r.scenario)}`);

// Read-modify-write: the sim and kube parts of the file belong to others.
const path = join(import.meta.dirname, "..", "..", "bench", "results", "chaos.json");
let prev: { env?: Record<string, unknown>; metrics?: Record<string, unknown>; [k: string]: unknown } = {};
if (existsSync(path))
  try {
    prev = JSON.parse(readFileSync(path, "utf8"));
  } catch {}
const otherMetrics = Object.fromEntries(
  Object.entries(prev.metrics ?? {}).filter(([k]) => !k.startsWith("real_")),
);
const out = {
  ...prev,
  name: "chaos",
  date: new Date().toISOString(),
  env: { ...(prev.env ?? {}), ...benchEnv(), real_guest: bed.tb.kvm ? "kvm" : "tcg" },
  metrics: { ...otherMetrics, ...metrics },
  real_runs: results.map((r) => ({
    scenario: r.scenario,
    seed: r.seed,
    kills: r.kills,
    samples: r.samples,
    convergeS: r.convergeS,
    wallS: Math.round(r.wallS),
    violations: r.violations,
  })),
};
// Only a full default run (every scenario) is recorded; a reproduction of one seed is not.
if (!wanted && single === undefined) {
  writeFileSync(path, `${JSON.stringify(out, null, 2)}\n`);
  console.log(`\nwritten to ${path}`);
}
process.exit(failed.length > 0 ? 1 : 0);
