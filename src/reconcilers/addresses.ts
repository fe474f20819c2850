/**
 * Fixed addresses at run time: a VM whose fixed IP or MAC another VM or its network's leases hold
 * (the rule: findAddressConflicts, api/address-claims.ts) is not placed (Pending, reason
 * AddressConflict); one already running is reported (Synced False) but not stopped. AddressBook
 * caches the verdicts and is invalidated by the Runtime on every VirtualMachine or VirtualNetwork
 * change.
 */
import { findAddressConflicts } from "../api/address-claims.js";
import type { ResourceStore } from "../store/types.js";

/** The verdicts, recomputed lazily after a change. */
export class AddressBook {
  private verdicts: Map<string, string> | undefined;

  constructor(private readonly store: ResourceStore) {}

  invalidate(): void {
    this.verdicts = undefined;
  }

  conflictOf(vmKey: string): string | undefined {
    this.verdicts ??= findAddressConflicts(
      this.store.list("VirtualMachine"),
      this.store.list("VirtualNetwork"),
    );
    return this.verdicts.get(vmKey);
  }
}
