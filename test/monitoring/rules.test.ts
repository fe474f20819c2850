/**
 * The monitoring package, checked by Prometheus' own tool: the rule file is current with the
 * PrometheusRule, `promtool check rules` accepts it and every dashboard query, `promtool test
 * rules` runs an alert unit test per alert (firing and not yet firing), and `promtool check
 * metrics` accepts the controller's /metrics output after a simulator scenario.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dump, load } from "js-yaml";
import { Registry } from "prom-client";
import { afterAll, describe, expect, it } from "vitest";
import { renderRules } from "../../scripts/gen-monitoring.js";
import { Runtime } from "../../src/cli/runtime.js";
import { silentLogger } from "../../src/controller/log.js";
import { Simulator, simulatorFactory } from "../../src/providers/sim/index.js";
import { hostResource, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";
import { dashboard, dashboardQueries } from "../support/monitoring.js";

const ROOT = join(import.meta.dirname, "..", "..");
const MON = join(ROOT, "manifests", "monitoring");
const RULES = join(MON, "rules.yaml");
const tmp = mkdtempSync(join(tmpdir(), "vw-promtool-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function promtool(args: string[], input?: string): { status: number; out: string } {
  const r = spawnSync("promtool", args, { encoding: "utf8", ...(input !== undefined ? { input } : {}) });
  if (r.error)
    throw new Error(`promtool not runnable (scripts/install-test-deps.sh installs it): ${r.error.message}`);
  return { status: r.status ?? 1, out: `${r.stdout}${r.stderr}` };
}

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  annotations?: Record<string, string>;
}
const groups = (load(readFileSync(RULES, "utf8")) as { groups: { name: string; rules: Rule[] }[] }).groups;
const alerts = new Map(
  groups.flatMap((g) => g.rules.filter((r) => r.alert).map((r) => [r.alert as string, r])),
);

/** An alert's annotations as Prometheus renders them for these labels and value. */
function rendered(alert: string, labels: Record<string, string>, value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, t] of Object.entries(alerts.get(alert)?.annotations ?? {})) {
    out[k] = t
      .replace(/\{\{ \$labels\.(\w+) \}\}/g, (_, l: string) => labels[l] ?? "")
      .replace(/\{\{ \$value \}\}/g, value);
  }
  return out;
}

interface Case {
  alert: string;
  series: Record<string, string>;
  /** Minutes after which the alert must be firing, and before which it must not. */
  firesAt: number;
  pendingAt?: number;
  labels: Record<string, string>;
  value?: string;
}

const cases: Case[] = [
  {
    alert: "VirtwardenHostDown",
    series: { 'virtwarden_host_phase{host="kvm-01",phase="Unreachable"}': "1x10" },
    pendingAt: 0,
    firesAt: 2,
    labels: { host: "kvm-01", severity: "critical" },
  },
  {
    alert: "VirtwardenFencingFailed",
    series: { 'virtwarden_host_phase{host="kvm-02",phase="Fencing"}': "1x10" },
    pendingAt: 0,
    firesAt: 2,
    labels: { host: "kvm-02", severity: "critical" },
  },
  {
    alert: "VirtwardenVMRecoveryFailed",
    series: { 'virtwarden_recoveries_total{cause="Crash",result="Failed"}': "0 0 1 1 1" },
    firesAt: 3,
    labels: { cause: "Crash", severity: "critical" },
  },
  {
    alert: "VirtwardenVMsNotRunning",
    series: { 'virtwarden_vms{phase="CrashLoop"}': "2x20" },
    pendingAt: 5,
    firesAt: 11,
    labels: { phase: "CrashLoop", severity: "warning" },
    value: "2",
  },
  {
    alert: "VirtwardenDriftNotCorrected",
    series: { 'virtwarden_out_of_sync_resources{kind="VirtualMachine"}': "3x20" },
    pendingAt: 5,
    firesAt: 11,
    labels: { kind: "VirtualMachine", severity: "warning" },
    value: "3",
  },
  {
    alert: "VirtwardenSnapshotPolicyFailing",
    series: { 'virtwarden_snapshots_total{policy="default/db-hourly",result="failed"}': "0 0 1 1" },
    firesAt: 2,
    labels: { policy: "default/db-hourly", severity: "warning" },
  },
  {
    alert: "VirtwardenSnapshotPolicyStale",
    series: {
      // Hourly policy; the newest snapshot is 3 h old and getting older.
      'virtwarden_snapshot_newest_age_seconds{policy="default/db-hourly"}': "10800+60x20",
      'virtwarden_snapshot_policy_interval_seconds{policy="default/db-hourly"}': "3600x20",
    },
    pendingAt: 5,
    firesAt: 11,
    labels: { policy: "default/db-hourly", severity: "warning" },
  },
  {
    alert: "VirtwardenFailoverCapacityLost",
    series: { virtwarden_failover_capacity_sufficient: "1 1 0x10" },
    pendingAt: 4,
    firesAt: 8,
    labels: { severity: "warning" },
  },
  {
    alert: "VirtwardenReconcileErrors",
    series: { 'virtwarden_reconcile_total{controller="virtualmachine",result="error"}': "0+60x30" },
    pendingAt: 10,
    firesAt: 25,
    labels: { controller: "virtualmachine", severity: "warning" },
  },
];

describe("monitoring rules", () => {
  it("rules.yaml is generated from the PrometheusRule", () => {
    expect(readFileSync(RULES, "utf8")).toBe(renderRules());
  });

  it("promtool accepts the rules and every dashboard query", () => {
    const r = promtool(["check", "rules", RULES]);
    expect(r.out).toMatch(/SUCCESS/);
    expect(r.status).toBe(0);
    const queries = dashboardQueries();
    expect(queries.length).toBeGreaterThanOrEqual(25);
    const file = join(tmp, "dashboard-rules.yaml");
    writeFileSync(
      file,
      dump({
        groups: [
          { name: "dashboard", rules: queries.map((q, i) => ({ record: `dashboard:q${i}`, expr: q.expr })) },
        ],
      }),
    );
    const d = promtool(["check", "rules", file]);
    expect(d.out, d.out).toMatch(new RegExp(`SUCCESS: ${queries.length} rules found`));
  });

  it("every dashboard query filters on the job and instance variables; fleet stats on the leader", () => {
    const d = dashboard();
    const vars = new Map(d.templating.list.map((v) => [v.name, v]));
    for (const name of ["job", "instance"]) {
      const v = vars.get(name);
      expect(v?.type, name).toBe("query");
      const q = typeof v?.query === "string" ? v.query : v?.query?.query;
      expect(q, name).toMatch(new RegExp(`^label_values\\(virtwarden_leader.*, ${name}\\)$`));
    }
    const unfiltered: string[] = [];
    for (const p of d.panels)
      for (const t of p.targets ?? []) {
        // Every selector of a metric (recording rules aggregate job and instance away: none).
        if (/virtwarden:/.test(t.expr)) unfiltered.push(`${p.title}: ${t.expr}`);
        for (const m of t.expr.matchAll(/\b(virtwarden_\w+|process_\w+|nodejs_\w+)(\{[^}]*\})?/g))
          if (!m[2]?.includes('job=~"$job"') || !m[2]?.includes('instance=~"$instance"'))
            unfiltered.push(`${p.title}: ${m[0]}`);
      }
    expect(unfiltered).toEqual([]);
    for (const title of ["Availability", "Failover capacity"]) {
      const p = d.panels.find((x) => x.title.startsWith(title));
      for (const t of p?.targets ?? [])
        expect(t.expr, title).toMatch(/and on \(job, instance\) \(virtwarden_leader\{[^}]*\} == 1\)/);
    }
  });

  it("has an alert unit test for every alert, and they pass", () => {
    expect(new Set(cases.map((c) => c.alert))).toEqual(new Set(alerts.keys()));
    const tests = cases.map((c) => {
      const value = c.value ?? "1";
      const exp = { exp_labels: c.labels, exp_annotations: rendered(c.alert, c.labels, value) };
      const checks = [{ eval_time: `${c.firesAt}m`, alertname: c.alert, exp_alerts: [exp] }];
      if (c.pendingAt !== undefined)
        checks.push({ eval_time: `${c.pendingAt}m`, alertname: c.alert, exp_alerts: [] });
      return {
        interval: "1m",
        input_series: Object.entries(c.series).map(([series, values]) => ({ series, values })),
        alert_rule_test: checks,
      };
    });
    const file = join(tmp, "alerts.test.yaml");
    writeFileSync(file, dump({ rule_files: [RULES], evaluation_interval: "1m", tests }, { lineWidth: -1 }));
    const r = promtool(["test", "rules", file]);
    expect(r.out, r.out).toMatch(/SUCCESS/);
    expect(r.status).toBe(0);
  });

  it("promtool check metrics accepts the controller's /metrics", async () => {
    const sim = new Simulator({
      seed: 5,
      latency: "none",
      baseImages: [{ pool: "default", name: "debian-12.qcow2", capacityBytes: 2 * 1024 ** 3 }],
    });
    const store = new MemoryStore();
    sim.addHost("h0", { cpus: 8, memoryBytes: 16 * 1024 ** 3 });
    store.apply(hostResource("h0"));
    store.apply(
      vm("app")
        .spec({
          resources: { cpu: 1, memory: "1Gi" },
          disks: [{ name: "root", size: "4Gi", source: { image: { name: "debian-12.qcow2" } } }],
        })
        .build(),
    );
    const registry = new Registry();
    const rt = new Runtime({
      store,
      providerFactory: simulatorFactory(sim),
      registry,
      logger: silentLogger,
      heartbeatIntervalMs: 100,
      perVMMetrics: true,
    });
    await rt.start();
    try {
      const deadline = Date.now() + 10_000;
      while (store.get("VirtualMachine", "default/app")?.status?.phase !== "Running" && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 10));
      sim.crashDomain("h0", "default_app");
      while (
        !(await registry.metrics()).includes(
          'virtwarden_recoveries_total{cause="Crash",result="Succeeded"} 1',
        )
      ) {
        if (Date.now() > deadline) throw new Error("no recovery");
        await new Promise((r) => setTimeout(r, 10));
      }
      const text = await registry.metrics();
      expect(text).toContain('virtwarden_host_phase{host="h0",phase="Ready"} 1');
      expect(text).toMatch(/virtwarden_availability_ratio 0\.\d+/);
      expect(text).toMatch(/virtwarden_vm_availability_ratio\{namespace="default",name="app"\} 0\.\d+/);
      expect(text).toMatch(
        /virtwarden_recovery_phase_duration_seconds_count\{cause="Crash",phase="start"\} 1/,
      );
      const r = promtool(["check", "metrics"], text);
      expect(r.out).toBe("");
      expect(r.status).toBe(0);
      // Every metric is in the catalogue.
      const doc = readFileSync(join(ROOT, "docs", "metrics.md"), "utf8");
      const names = new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
      for (const n of names) expect(doc, `docs/metrics.md lacks ${n}`).toContain(`\`${n}\``);
    } finally {
      await rt.stop(100);
    }
  });
});
