/**
 * The provider contract against real libvirtd hosts (two network-namespace hosts of the test
 * bed, QEMU guests under KVM when available). A crash is a `kill -9` of the guest's QEMU.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { LibvirtProvider } from "../../../src/providers/libvirt/index.js";
import { startTestbed } from "../../support/testbed/index.js";
import { providerContract } from "../contract.js";

providerContract("libvirt", async () => {
  const tb = await startTestbed({ hosts: 2, name: "contract" });
  const [ha, hb] = tb.hosts;
  if (!ha || !hb) throw new Error("test bed without hosts");
  const checkpointDir = join(tb.sharedDir, "checkpoints");
  mkdirSync(checkpointDir, { recursive: true });
  return {
    a: new LibvirtProvider(ha.uri),
    b: new LibvirtProvider(hb.uri),
    bUriFromA: hb.uri,
    pool: "default",
    baseVolume: "base.qcow2",
    checkpointDir,
    migrationUnsafe: true,
    crashDomain: async (host, name) => {
      const h = host === "a" ? ha : hb;
      const pids = h.qemuPids().filter((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, "utf8").replaceAll("\0", " ").includes(`guest=${name},`);
        } catch {
          return false;
        }
      });
      if (pids.length !== 1)
        throw new Error(`expected one QEMU for ${name} on ${h.name}, found ${pids.length}`);
      process.kill(pids[0] as number, "SIGKILL");
    },
    teardown: () => tb.teardown(),
  };
});
