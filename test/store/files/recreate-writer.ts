/**
 * Child process for the re-creation crash test. Runs the flow of a VM whose manifest is removed
 * and written again while its cleanup (finalizer) runs: create, add the finalizer, manifest
 * removed -> deletion starts, manifest back, finalizer removed -> the old object is gone and the
 * new one is created, finalizer added to the new one. It SIGKILLs itself right after the Nth
 * journal write is durable (argv[4]; 0: never), i.e. between writes N and N+1.
 * Prints "uid <uid>" once the first object exists, and "done" at the end.
 */
import { existsSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { VirtualMachine } from "../../../src/api/types.js";
import { FileStore } from "../../../src/store/files/index.js";
import { Journal } from "../../../src/store/files/journal.js";
import { eventuallyWith } from "../../support/eventually.js";

const [manifestDir, stateDir, killAfterArg, manifestAgain] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
];
const killAfter = Number(killAfterArg);
let writes = 0;
const append = Journal.prototype.append;
Journal.prototype.append = function (this: Journal<unknown>, rec) {
  return append.call(this, rec).then(() => {
    if (rec.t === "probe") return;
    writes++;
    if (writes === killAfter) process.kill(process.pid, "SIGKILL");
  });
};

const FINALIZER = "virtwarden.io/cleanup";
const file = join(manifestDir, "vm-1.yaml");
const store = new FileStore({ manifestDir, stateDir, deleteSettleMs: 50, viewIntervalMs: 10 });
await store.start();
const vm = () => store.get("VirtualMachine", "default/vm-1") as VirtualMachine;
const eventually = eventuallyWith({ timeoutMs: 15_000, everyMs: 5 });
await eventually(() => !!store.get("VirtualMachine", "default/vm-1"), "vm-1 created");
process.stdout.write(`uid ${vm().metadata.uid}\n`);
await store.addFinalizer(vm(), FINALIZER);
unlinkSync(file);
await eventually(() => !!vm()?.metadata.deletionTimestamp, "deletion started");
writeFileSync(file, manifestAgain);
// The manifest is back while the cleanup runs: give the watcher time to see it.
await new Promise((r) => setTimeout(r, 300));
if (!existsSync(file)) throw new Error("child: manifest vanished");
await store.removeFinalizer(vm(), FINALIZER);
await eventually(() => !!vm() && !vm().metadata.deletionTimestamp, "re-created");
await store.addFinalizer(vm(), FINALIZER);
await store.stop();
process.stdout.write("done\n");
