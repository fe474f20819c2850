/**
 * Leader election: only the leader's controllers act. Kubernetes mode uses a coordination.k8s.io
 * Lease (store/kube/lease.ts); standalone mode is a single process and always leads.
 *
 * Contract: `run` calls onStartedLeading with a signal that aborts the moment leadership is lost
 * (or the elector stops); the caller must stop acting then — a leader that cannot renew its
 * lease in time must assume another replica leads.
 */
export interface LeaderElector {
  run(
    signal: AbortSignal,
    onStartedLeading: (leaderSignal: AbortSignal) => void,
    onStoppedLeading: () => void,
  ): Promise<void>;
}

export class AlwaysLeader implements LeaderElector {
  async run(
    signal: AbortSignal,
    onStartedLeading: (s: AbortSignal) => void,
    onStoppedLeading: () => void,
  ): Promise<void> {
    onStartedLeading(signal);
    if (!signal.aborted)
      await new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true }));
    onStoppedLeading();
  }
}
