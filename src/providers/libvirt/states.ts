/**
 * libvirt's numeric states, reasons, event types/details and error codes, in the words of
 * HypervisorProvider (virDomainState, virDomain*Reason, virDomainEventType,
 * virDomainEvent*DetailType, virErrorNumber), index = libvirt's enum value, complete up to
 * libvirt 9.2 (PAUSED_API_ERROR) and 8.5 (EVENT_RESUMED_POSTCOPY_FAILED). A number newer than
 * these lists reads as "unknown" (a state reason) or as its number (an event detail).
 */
import type { DomainEventType, DomainState, ProviderErrorCode } from "../types.js";

export const STATES: DomainState[] = [
  "nostate",
  "running",
  "blocked",
  "paused",
  "shutdown",
  "shutoff",
  "crashed",
  "pmsuspended",
];

const REASONS: Partial<Record<DomainState, string[]>> = {
  running: [
    "unknown",
    "booted",
    "migrated",
    "restored",
    "from-snapshot",
    "unpaused",
    "migration-canceled",
    "save-canceled",
    "wakeup",
    "crashed",
    "postcopy",
    "postcopy-failed",
  ],
  paused: [
    "unknown",
    "user",
    "migration",
    "save",
    "dump",
    "ioerror",
    "watchdog",
    "from-snapshot",
    "shutting-down",
    "snapshot",
    "crashed",
    "starting-up",
    "postcopy",
    "postcopy-failed",
    "api-error",
  ],
  shutdown: ["unknown", "user"],
  shutoff: [
    "unknown",
    "shutdown",
    "destroyed",
    "crashed",
    "migrated",
    "saved",
    "failed",
    "from-snapshot",
    "daemon",
  ],
  crashed: ["unknown", "panicked"],
  blocked: ["unknown"],
  pmsuspended: ["unknown"],
};

export function stateWords(state: number, reason: number): { state: DomainState; reason: string } {
  const s = STATES[state] ?? "nostate";
  return { state: s, reason: REASONS[s]?.[reason] ?? "unknown" };
}

const EVENTS: DomainEventType[] = [
  "defined",
  "undefined",
  "started",
  "suspended",
  "resumed",
  "stopped",
  "shutdown",
  "pmsuspended",
  "crashed",
];

const DETAILS: Partial<Record<DomainEventType, string[]>> = {
  defined: ["added", "updated", "renamed", "from-snapshot"],
  undefined: ["removed", "renamed"],
  started: ["booted", "migrated", "restored", "from-snapshot", "wakeup"],
  suspended: [
    "paused",
    "migrated",
    "ioerror",
    "watchdog",
    "restored",
    "from-snapshot",
    "api-error",
    "postcopy",
    "postcopy-failed",
  ],
  resumed: ["unpaused", "migrated", "from-snapshot", "postcopy", "postcopy-failed"],
  stopped: ["shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from-snapshot"],
  shutdown: ["finished", "guest", "host"],
  pmsuspended: ["memory", "disk"],
  crashed: ["panicked", "crashloaded"],
};

export function eventWords(
  event: number,
  detail: number,
): { type: DomainEventType; detail: string } | undefined {
  const type = EVENTS[event];
  if (!type) return undefined;
  return { type, detail: DETAILS[type]?.[detail] ?? String(detail) };
}

/** virErrorNumber -> ProviderErrorCode. */
export function errorCode(code: number): ProviderErrorCode {
  switch (code) {
    case 42: // VIR_ERR_NO_DOMAIN
    case 43: // VIR_ERR_NO_NETWORK
    case 49: // VIR_ERR_NO_STORAGE_POOL
    case 50: // VIR_ERR_NO_STORAGE_VOL
    case 72: // VIR_ERR_NO_DOMAIN_SNAPSHOT
      return "NotFound";
    case 55: // VIR_ERR_OPERATION_INVALID
      return "InvalidState";
    case 9: // VIR_ERR_OPERATION_FAILED
    case 1: // VIR_ERR_INTERNAL_ERROR
      return "OperationFailed";
    case 28: // VIR_ERR_DOM_EXIST
    case 37: // VIR_ERR_NETWORK_EXIST
    case 90: // VIR_ERR_STORAGE_VOL_EXIST
      return "AlreadyExists";
    case 3: // VIR_ERR_NO_SUPPORT
    case 84: // VIR_ERR_OPERATION_UNSUPPORTED
      return "Unsupported";
    case 68: // VIR_ERR_OPERATION_TIMEOUT
      return "Timeout";
    default:
      return "OperationFailed";
  }
}
