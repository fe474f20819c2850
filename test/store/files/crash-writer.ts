/**
 * Child process for the crash-safety test: opens a FileStore and updates one VM's status in a
 * tight loop, printing "ack N" after each update is acknowledged. The parent SIGKILLs it at a
 * random moment and checks that every acknowledged N survived.
 */
import { FileStore } from "../../../src/store/files/index.js";

const [manifestDir, stateDir, startAt] = process.argv.slice(2) as [string, string, string];
const store = new FileStore({ manifestDir, stateDir, compactEvery: 500, viewIntervalMs: 50 });
await store.start();
let n = Number(startAt);
for (;;) {
  n++;
  const vm = store.get("VirtualMachine", "default/crash");
  if (!vm) throw new Error("fixture VM missing");
  await store.updateStatus(vm, { restartCount: n, phase: "Running" });
  process.stdout.write(`ack ${n}\n`);
}
