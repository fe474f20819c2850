/**
 * `npm run chaos:sim -- --seeds N` (seeds 1..N), `--seed S` (one seed, with its full trace),
 * `--from F` (seeds F..F+N-1), `--concurrency C` (runs at once, default 4), `--repeat K` (with
 * --seed: that seed K times, C at once, as a timing-dependent failure needs), `--no-record` (leave
 * bench/results/chaos.json alone), `--lost-replies` (scenarios where calls are carried out and
 * their replies lost: other scenarios than the same seeds without it, recorded as sim_lost_*). Prints every failing seed's one-line reproduction and trace,
 * then the totals; writes the sim_ metrics into bench/results/chaos.json (keeping the other
 * suites' metrics); exits 1 on any violation.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { benchEnv, type Metrics, writeResult } from "../../bench/env.js";
import { failureReport, runSeeds, type SeedResult } from "./sim/runner.js";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function positive(name: string, fallback: number): number {
  const v = arg(name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`${name} wants a non-negative integer, got "${v}"`);
    process.exit(2);
  }
  return n;
}

async function main(): Promise<void> {
  const one = arg("--seed");
  const count = positive("--seeds", 1_000);
  const from = positive("--from", 1);
  const concurrency = positive("--concurrency", 4) || 1;
  // --repeat K: the one seed K times at once (a timing-dependent failure shows under load).
  const repeat = positive("--repeat", 1) || 1;
  const seeds =
    one !== undefined
      ? Array.from({ length: repeat }, () => positive("--seed", 1))
      : Array.from({ length: count }, (_, i) => from + i);
  const started = Date.now();
  let done = 0;
  const failed: SeedResult[] = [];
  const lost = process.argv.includes("--lost-replies");
  const results = await runSeeds(seeds, {
    concurrency,
    ...(lost ? { scenario: { lostReplies: true } } : {}),
    onResult: (r) => {
      done++;
      if (!r.ok) {
        failed.push(r);
        console.log(failureReport(r));
      } else if (one !== undefined) {
        console.log(`seed ${r.seed} ok`);
        for (const t of r.trace) console.log(`    ${t}`);
      }
      if (done % 50 === 0 || done === seeds.length)
        console.log(
          `${done}/${seeds.length} seeds, ${failed.length} failing, ${((Date.now() - started) / 1000).toFixed(0)} s`,
        );
    },
  });
  const wallS = (Date.now() - started) / 1000;
  const sum = (f: (r: SeedResult) => number) => results.reduce((a, r) => a + f(r), 0);
  const maxConvergeS = Math.max(0, ...results.filter((r) => r.ok).map((r) => r.convergeMs / 1000));
  const figures: Metrics = {
    sim_seeds: { value: results.length, unit: "count" },
    sim_scenarios: { value: sum((r) => r.events), unit: "count" },
    sim_controller_restarts: { value: sum((r) => r.controllerRestarts), unit: "count" },
    sim_watcher_samples: { value: sum((r) => r.samples), unit: "count" },
    sim_violations: { value: sum((r) => r.violations.length), unit: "count" },
    sim_failing_seeds: { value: failed.length, unit: "count" },
    sim_max_converge_s: { value: Number(maxConvergeS.toFixed(3)), unit: "s" },
    sim_wall_s: { value: Number(wallS.toFixed(1)), unit: "s" },
  };
  const mine = (k: string) =>
    lost ? k.startsWith("sim_lost_") : k.startsWith("sim_") && !k.startsWith("sim_lost_");
  const metrics: Metrics = Object.fromEntries(
    Object.entries(figures).map(([k, v]) => [lost ? k.replace(/^sim_/, "sim_lost_") : k, v]),
  );
  console.log(`env ${JSON.stringify(benchEnv())}`);
  for (const [k, v] of Object.entries(metrics)) console.log(`${k} ${v.value} ${v.unit}`);
  if (failed.length > 0) console.log(`failing seeds: ${failed.map((r) => r.seed).join(" ")}`);
  if (!process.argv.includes("--no-record") && one === undefined) {
    // Read-modify-write: the real-bed and Kubernetes chaos suites keep their metrics in this file too.
    const path = join(import.meta.dirname, "..", "..", "bench", "results", "chaos.json");
    let others: Metrics = {};
    let extra: Record<string, unknown> = {};
    if (existsSync(path)) {
      const prev = JSON.parse(readFileSync(path, "utf8")) as { metrics?: Metrics } & Record<string, unknown>;
      others = Object.fromEntries(Object.entries(prev.metrics ?? {}).filter(([k]) => !mine(k)));
      const { name: _n, date: _d, env: prevEnv, metrics: _m, ...rest } = prev;
      // The real-bed suite's keys (real_guest: kvm or tcg) stay beside this machine's.
      extra = {
        ...rest,
        env: { ...((prevEnv as Record<string, unknown> | undefined) ?? {}), ...benchEnv() },
      };
    }
    console.log(`wrote ${writeResult("chaos", { ...others, ...metrics }, extra)}`);
  }
  process.exit(failed.length > 0 ? 1 : 0);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
