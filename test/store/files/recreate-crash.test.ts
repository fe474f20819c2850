/**
 * A VM whose manifest is removed and written again while its cleanup runs, with the controller
 * SIGKILLed between every pair of journal writes of that flow (a real child process): after the
 * restart the VM must be there again, as a new object (new uid, generation 1) once the old one's
 * finalizers are gone, and listed by `virtwarden get vm` (view.json). Before the fix the pending
 * re-creation lived only in memory and the VM was lost for good.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { VirtualMachine } from "../../../src/api/types.js";
import { FileStore, openStateReadOnly } from "../../../src/store/files/index.js";
import { eventuallyWith } from "../../support/eventually.js";

const roots: string[] = [];
const stores: FileStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.stop().catch(() => undefined)));
  for (const d of roots.splice(0)) rmSync(d, { recursive: true, force: true });
});

const vmYaml = (cpu: number) =>
  `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata:\n  name: vm-1\nspec:\n  resources: {cpu: ${cpu}, memory: 1Gi}\n`;
const FINALIZER = "virtwarden.io/cleanup";

function runChild(
  manifests: string,
  state: string,
  killAfter: number,
): Promise<{ out: string; signal: string | null; code: number | null }> {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      join(import.meta.dirname, "recreate-writer.ts"),
      manifests,
      state,
      String(killAfter),
      vmYaml(2),
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  let out = "";
  child.stdout.on("data", (b: Buffer) => {
    out += b.toString();
  });
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ out, signal, code })));
}

const eventually = eventuallyWith({ timeoutMs: 10_000 });

describe("FileStore: a manifest that comes back during its VM's cleanup survives a crash", () => {
  // 6 journal writes in the flow: create, finalizer, deletion, forget, re-create, finalizer.
  for (const killAfter of [1, 2, 3, 4, 5, 6, 0]) {
    it(killAfter ? `SIGKILL after journal write ${killAfter}` : "no crash (the whole flow)", async () => {
      const root = mkdtempSync(join(tmpdir(), "vw-recreate-"));
      roots.push(root);
      const manifests = join(root, "manifests");
      const state = join(root, "state");
      mkdirSync(manifests);
      writeFileSync(join(manifests, "vm-1.yaml"), vmYaml(1));
      const child = await runChild(manifests, state, killAfter);
      if (killAfter) expect(child.signal).toBe("SIGKILL");
      else expect(child.out).toContain("done");
      const firstUid = /uid (\S+)/.exec(child.out)?.[1];

      // What the user declared at the end: the manifest is there (written again by the flow,
      // or by the user after the crash if the crash came before that).
      if (!existsSync(join(manifests, "vm-1.yaml"))) writeFileSync(join(manifests, "vm-1.yaml"), vmYaml(2));

      const store = new FileStore({
        manifestDir: manifests,
        stateDir: state,
        deleteSettleMs: 50,
        viewIntervalMs: 10,
      });
      stores.push(store);
      await store.start();
      const get = () => store.get("VirtualMachine", "default/vm-1") as VirtualMachine | undefined;
      const wasDeleting = !!get()?.metadata.deletionTimestamp;
      // The VM reconciler's part: an object being deleted gets its cleanup, then its finalizer goes.
      const unwatch = store.watch("VirtualMachine", (e) => {
        const o = e.object;
        if (
          e.type !== "deleted" &&
          o.metadata.deletionTimestamp &&
          o.metadata.finalizers?.includes(FINALIZER)
        )
          void store.removeFinalizer(o, FINALIZER);
      });
      await eventually(
        () => !!get() && !get()?.metadata.deletionTimestamp,
        "vm-1 declared and not being deleted",
      );
      unwatch();
      const vm = get() as VirtualMachine;
      if (killAfter === 2) {
        // Killed before the deletion began: the same object, as declared then.
        expect(wasDeleting).toBe(false);
        expect(vm.metadata.uid).toBe(firstUid);
      }
      if (killAfter >= 3 || killAfter === 0) {
        // The old object was being deleted: what stands now is a new object.
        expect(vm.metadata.uid).not.toBe(firstUid);
        expect(vm.metadata.generation).toBe(1);
        expect(vm.spec.resources?.cpu).toBe(2);
      }
      // It stays (nothing deletes it once the directory settles) and `get vm` lists it.
      await new Promise((r) => setTimeout(r, 300));
      expect(get()?.metadata.uid).toBe(vm.metadata.uid);
      stores.splice(stores.indexOf(store), 1);
      await store.stop();
      const view = await openStateReadOnly(state);
      const listed = view.list("VirtualMachine").filter((r) => r.metadata.name === "vm-1");
      expect(listed.map((r) => [r.metadata.uid, r.metadata.deletionTimestamp])).toEqual([
        [vm.metadata.uid, undefined],
      ]);
    }, 60_000);
  }
});
