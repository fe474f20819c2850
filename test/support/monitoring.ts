/** The Grafana dashboard's PromQL, for the monitoring tests. */
import { readFileSync } from "node:fs";
import { join } from "node:path";

export const MONITORING_DIR = join(import.meta.dirname, "..", "..", "manifests", "monitoring");

export interface Dashboard {
  templating: { list: { name: string; type: string; query?: string | { query: string } }[] };
  panels: { title: string; targets?: { expr: string }[] }[];
}

export function dashboard(): Dashboard {
  return JSON.parse(readFileSync(join(MONITORING_DIR, "grafana-dashboard.json"), "utf8")) as Dashboard;
}

/**
 * Every target of every panel, with the template variables ($job, $instance) replaced as Grafana
 * does: by a regex of the selected values, `.*` for "All" (the default).
 */
export function dashboardQueries(vars: Record<string, string> = {}): { panel: string; expr: string }[] {
  return dashboard().panels.flatMap((p) =>
    (p.targets ?? []).map((t) => ({
      panel: p.title,
      expr: t.expr.replace(/\$(\w+)/g, (_, v: string) => vars[v] ?? ".*"),
    })),
  );
}
