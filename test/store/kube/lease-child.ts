/** Child process for the leader-election test: runs one elector and prints when it leads. */
import { KubeConfig } from "@kubernetes/client-node";
import { LeaseLeaderElector } from "../../../src/store/kube/index.js";

const [kubeconfig, identity] = process.argv.slice(2) as [string, string];
const kc = new KubeConfig();
kc.loadFromFile(kubeconfig);
const elector = new LeaseLeaderElector({
  kubeConfig: kc,
  namespace: "default",
  name: "vw-test-lease",
  identity,
  retryPeriodMs: 500,
});
const stop = new AbortController();
process.on("SIGTERM", () => stop.abort());
await elector.run(
  stop.signal,
  () => process.stdout.write(`leading ${identity}\n`),
  () => process.stdout.write(`stopped ${identity}\n`),
);
