/**
 * The framework's own metrics, shared by every controller (label `controller`): create them once per registry. The reconcilers'
 * domain metrics (drift, recovery, phases) live with the reconcilers.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

export type ReconcileResultLabel = "success" | "error" | "requeue" | "terminal";

export interface ControllerMetrics {
  reconcileTotal: Counter<"controller" | "result">;
  reconcileDuration: Histogram<"controller">;
  queueDepth: Gauge<"controller">;
  retries: Counter<"controller">;
  queueDuration: Histogram<"controller">;
  workersActive: Gauge<"controller">;
}

export function createControllerMetrics(registry: Registry): ControllerMetrics {
  const registers = [registry];
  return {
    reconcileTotal: new Counter({
      name: "virtwarden_reconcile_total",
      help: "Reconciles by controller and result (success, error, requeue, terminal).",
      labelNames: ["controller", "result"],
      registers,
    }),
    reconcileDuration: new Histogram({
      name: "virtwarden_reconcile_duration_seconds",
      help: "Time spent in one reconcile.",
      labelNames: ["controller"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    queueDepth: new Gauge({
      name: "virtwarden_workqueue_depth",
      help: "Keys waiting in the work queue.",
      labelNames: ["controller"],
      registers,
    }),
    retries: new Counter({
      name: "virtwarden_workqueue_retries_total",
      help: "Keys re-queued with backoff after an error.",
      labelNames: ["controller"],
      registers,
    }),
    queueDuration: new Histogram({
      name: "virtwarden_workqueue_queue_duration_seconds",
      help: "How long a key waited in the queue before a worker took it.",
      labelNames: ["controller"],
      buckets: [0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 5, 10],
      registers,
    }),
    workersActive: new Gauge({
      name: "virtwarden_workers_active",
      help: "Workers reconciling right now.",
      labelNames: ["controller"],
      registers,
    }),
  };
}
