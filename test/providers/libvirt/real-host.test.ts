/**
 * The provider on a real libvirt host, where it shares the host with others:
 * - an admin's own domain (defined with virsh, no ownership mark) is listed as foreign next to
 *   ours, nothing reported unreadable;
 * - a quick call that must wait for a domain's job lock another client holds gets libvirt's own
 *   answer ("cannot acquire state change lock", after libvirt's 30 s job wait) as an error of
 *   that call, and the connection stays up: the call deadline, whose expiry closes the
 *   connection as wedged, must be later than libvirt's wait. The other client's job is a
 *   `virsh suspend` stuck on a QEMU we stopped with SIGSTOP.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LibvirtProvider } from "../../../src/providers/libvirt/index.js";
import { isProviderError } from "../../../src/providers/types.js";
import { startTestbed, type Testbed, type TestHost } from "../../support/testbed/index.js";

let tb: Testbed;
let h: TestHost;
let p: LibvirtProvider;
const children: ChildProcess[] = [];
const stopped: number[] = [];

const virsh = (...args: string[]) =>
  execFileSync("virsh", ["-q", "-c", h.unixUri, ...args], { encoding: "utf8", timeout: 60_000 });

beforeAll(async () => {
  tb = await startTestbed({ hosts: 1, name: "rh" });
  h = tb.hosts[0] as TestHost;
  p = new LibvirtProvider(h.uri, { domainType: h.domainType });
  await p.connect();
}, 300_000);

afterAll(async () => {
  for (const pid of stopped.splice(0)) {
    try {
      process.kill(pid, "SIGCONT");
    } catch {
      // already gone
    }
  }
  for (const c of children.splice(0)) if (c.exitCode === null && c.pid) process.kill(c.pid, "SIGKILL");
  await p?.close();
  await tb?.teardown();
}, 120_000);

const ours = (name: string) => ({
  name: `default_${name}`,
  vcpus: 1,
  memoryBytes: 64 * 1024 ** 2,
  disks: [],
  interfaces: [],
  ownership: {
    uid: `uid-${name}`,
    kind: "VirtualMachine" as const,
    namespace: "default",
    name,
    generation: 1,
    specHash: `hash-${name}`,
  },
});

describe("a real host shared with others", () => {
  it("lists an admin's own domain as foreign next to ours, nothing unreadable", async () => {
    const xml = `<domain type='${h.domainType}'><name>admin-box</name><memory unit='MiB'>32</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os></domain>`;
    const file = join(tb.sharedDir, "admin-box.xml");
    writeFileSync(file, xml);
    virsh("define", file);
    await p.defineDomain(ours("web"));
    const listing = await p.listDomains();
    const byName = new Map(listing.map((d) => [d.name, d]));
    expect(byName.get("admin-box")).toMatchObject({
      vcpus: 1,
      memoryBytes: 32 * 1024 ** 2,
      persistent: true,
      state: { state: "shutoff" },
    });
    expect(byName.get("admin-box")?.ownership).toBeUndefined();
    expect(byName.get("default_web")?.ownership).toMatchObject({ namespace: "default", name: "web" });
    expect(listing.filter((d) => d.parseError !== undefined)).toEqual([]);
    expect(p.unreadableForeignDomains).toBe(0);
  });

  it("a call waiting on another client's domain job gets libvirt's answer; the connection stays", async () => {
    const name = "default_held";
    await p.defineDomain(ours("held"));
    await p.startDomain(name);
    const qemu = Number(readFileSync(join(h.dir, "run", "qemu", `${name}.pid`), "utf8").trim());
    expect(qemu).toBeGreaterThan(0);
    process.kill(qemu, "SIGSTOP");
    stopped.push(qemu);
    // The other client: its suspend takes the domain's job and waits for a monitor that is stopped.
    const other = spawn("virsh", ["-c", h.unixUri, "suspend", name], { stdio: "ignore" });
    children.push(other);
    await new Promise((r) => setTimeout(r, 3000)); // let it reach libvirtd; checked by the message below

    const t0 = Date.now();
    const err = await p.pauseDomain(name).then(
      () => undefined,
      (e: unknown) => e,
    );
    console.log(`libvirt answered the call waiting on the held job after ${Date.now() - t0} ms`);
    expect(isProviderError(err, "Timeout")).toBe(true);
    expect((err as Error).message).toMatch(/cannot acquire state change lock.*remoteDispatchDomainSuspend/);
    expect((err as Error).message).toMatch(/\(libvirt error 68\)$/);
    expect(p.health().connected).toBe(true);
    await expect(p.ping()).resolves.toBeUndefined();

    process.kill(qemu, "SIGCONT");
    stopped.splice(stopped.indexOf(qemu), 1);
    await new Promise<void>((r) => (other.exitCode !== null ? r() : other.once("exit", () => r())));
    expect((await p.getDomainState(name))?.state).toBe("paused");
    await p.destroyDomain(name);
    await p.undefineDomain(name);
  }, 120_000);
});
