/**
 * What every reconciler receives (dependencies through one context object, STYLE.md 8): tests
 * build it with the simulator and a fake or file store; the CLI builds it with real ones.
 */

import type { Kind } from "../api/types.js";
import type { Logger } from "../controller/log.js";
import type { FenceAgentFactory } from "../providers/fence/index.js";
import type { PowerAgentFactory } from "../providers/power/index.js";
import type { ResourceStore } from "../store/types.js";
import type { AddressBook } from "./addresses.js";
import type { ConsolidationIntents } from "./consolidation/intents.js";
import type { FailoverAssessment } from "./failover-capacity.js";
import type { Fleet } from "./fleet.js";
import type { ProbeTarget } from "./host/reachability.js";
import type { ReconcilerMetrics } from "./metrics.js";
import type { MigrationRunner } from "./migrations.js";

export interface ReconcilerContext {
  store: ResourceStore;
  fleet: Fleet;
  metrics: ReconcilerMetrics;
  logger: Logger;
  now: () => Date;
  /** Wake a reconciler for a key (cross-kind triggers: a host change wakes its VMs). */
  enqueue: (kind: Kind, key: string, afterMs?: number) => void;
  /**
   * Per-host default heartbeat settings (Host.spec.heartbeat overrides). `probeTarget` replaces
   * the network-level probe's target of a Host's URI (reachability.ts's probeTarget): `run
   * --simulate` has none, since its hosts are simulated whatever their URIs say.
   */
  heartbeat: {
    intervalMs: number;
    missedBeats: number;
    probeTarget?: (uri: string) => ProbeTarget | undefined;
  };
  /** How often a host's full domain inventory is re-listed (events keep it fresh in between). */
  inventoryIntervalMs: number;
  /** Fence agents by Host spec (undefined: no agent can run; hosts wait for an operator). */
  fenceAgents?: FenceAgentFactory;
  /** Fixed IP/MAC claims and their conflicts (see addresses.ts); absent: not checked. */
  addresses?: AddressBook;
  /** The latest failover capacity assessment (N-1), refreshed periodically by the Runtime. */
  failover?: FailoverAssessment;
  /** Migrations in flight (drains of hosts in maintenance); absent: VMs never move. */
  migrations?: MigrationRunner;
  /** Power agents by Host spec.power (consolidation switches idle hosts off and on). */
  powerAgents?: PowerAgentFactory;
  /** What the consolidation planner asks of Hosts; absent: no consolidation. */
  consolidation?: ConsolidationIntents;
  /** How long placement waits for a declared host not judged yet (default DEFAULT_PLACEMENT_WAIT_MS; 0: never). */
  placementWaitMs?: number;
}

export const FINALIZER = "virtwarden.io/cleanup";
