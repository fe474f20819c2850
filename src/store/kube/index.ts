/** Kubernetes mode: the ResourceStore over a real API server, and Lease leader election. */

export { LeaseLeaderElector, type LeaseOptions } from "./lease.js";
export { KubeStore, type KubeStoreOptions, PLURALS } from "./store.js";
