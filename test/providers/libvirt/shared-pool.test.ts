/**
 * A shared storage pool seen by two real libvirt hosts: a host's pool keeps listing a volume that
 * another host deleted until it is refreshed ("exists already" for a file that is gone). Found by
 * the chaos suite (a VM deleted and re-created, its disk made again through another host): the VM
 * never started again.
 */
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LibvirtProvider } from "../../../src/providers/libvirt/index.js";
import { startTestbed, type Testbed } from "../../support/testbed/index.js";

let tb: Testbed;
let a: LibvirtProvider;
let b: LibvirtProvider;

beforeAll(async () => {
  tb = await startTestbed({ hosts: 2, name: "sp" });
  a = new LibvirtProvider(tb.hosts[0]?.uri as string);
  b = new LibvirtProvider(tb.hosts[1]?.uri as string);
  await Promise.all([a.connect(), b.connect()]);
}, 300_000);

afterAll(async () => {
  await Promise.all([a?.close(), b?.close()]);
  await tb?.teardown();
}, 60_000);

describe("a volume deleted through another host of a shared pool", () => {
  it("is gone for this host too, and can be made again through it", async () => {
    const opts = { name: "vm-root.qcow2", capacityBytes: 64 * 1024 ** 2, format: "qcow2" as const };
    await a.createVolume("default", opts);
    expect(await b.getVolume("default", opts.name)).toBeDefined(); // b's pool lists it now
    await a.deleteVolume("default", opts.name);
    // b's libvirtd still lists it (virsh says so) although the file is gone.
    const listed = execFileSync(
      "virsh",
      ["-q", "-c", tb.hosts[1]?.unixUri as string, "vol-list", "default"],
      {
        encoding: "utf8",
      },
    );
    expect(listed).toContain(opts.name);
    expect(await b.getVolume("default", opts.name)).toBeUndefined();
    const made = await b.createVolume("default", opts);
    expect(made.name).toBe(opts.name);
    // And the other way round: "exists already" from a stale listing, without a lookup first.
    await b.deleteVolume("default", opts.name);
    await a.createVolume("default", opts); // a lists it again
    await b.deleteVolume("default", opts.name);
    expect((await a.createVolume("default", opts)).name).toBe(opts.name);
  }, 120_000);
});
