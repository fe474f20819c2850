/** The Grafana dashboard's PromQL, for the monitoring tests. */
import { readFileSync } from "node:fs";
import { join } from "node:path";

export const MONITORING_DIR = join(import.meta.dirname, "..", "..", "manifests", "monitoring");

/** Every target of every panel. */
export function dashboardQueries(): { panel: string; expr: string }[] {
  const dash = JSON.parse(readFileSync(join(MONITORING_DIR, "grafana-dashboard.json"), "utf8")) as {
    panels: { title: string; targets?: { expr: string }[] }[];
  };
  return dash.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
}
