/**
 * The environment every benchmark records next to its figures, and the result file writer
 * (format in DESIGN.md: one flat map of named metrics, each with value and unit).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { eventually as poll } from "../test/support/eventually.js";
import { kvmGuestsWork, kvmUsable } from "../test/support/testbed/index.js";

export interface BenchEnv {
  cpus: number;
  memGiB: number;
  node: string;
  /** Whether the test bed's guests run under KVM (kvmGuestsWork), else TCG. */
  kvm: boolean;
  /** Whether /dev/kvm opens at all (it may, with guests that misbehave under it). */
  kvmDevice: boolean;
  cpuModel?: string;
}

export function benchEnv(): BenchEnv {
  return {
    cpus: cpus().length,
    memGiB: Math.round(totalmem() / 1024 ** 3),
    node: process.version,
    kvm: kvmGuestsWork(),
    kvmDevice: kvmUsable(),
    cpuModel: cpus()[0]?.model,
  };
}

export type Metrics = Record<string, { value: number; unit: string }>;

export function writeResult(name: string, metrics: Metrics, extra: Record<string, unknown> = {}): string {
  const dir = join(import.meta.dirname, "results");
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}.json`);
  const result = { name, date: new Date().toISOString(), env: benchEnv(), metrics, ...extra };
  writeFileSync(path, `${JSON.stringify(result, null, 2)}\n`);
  return path;
}

export function printResult(name: string, metrics: Metrics): void {
  const env = benchEnv();
  console.log(
    `\n${name} — ${env.cpus} CPUs (${env.cpuModel ?? "?"}), ${env.memGiB} GiB, node ${env.node}, kvm ${env.kvm}`,
  );
  for (const [k, m] of Object.entries(metrics))
    console.log(`  ${k.padEnd(24)} ${String(m.value).padStart(12)} ${m.unit}`);
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

/** `--name N` from the command line, or `def`. */
export function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

/** Poll `cond` every `everyMs` (5) until it holds, or fail after `ms`: test/support/eventually's loop. */
export async function eventually(
  cond: () => boolean | Promise<boolean>,
  what: string,
  ms: number,
  everyMs = 5,
): Promise<void> {
  await poll(cond, what, { timeoutMs: ms, everyMs });
}
