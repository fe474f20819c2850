/**
 * libvirt provider behaviour beyond the shared contract, on real test-bed hosts: keepalive loss
 * reported as lost health within its bound, and the TLS transport with certificates the harness
 * makes (server verified by default; a wrong CA is refused).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LibvirtProvider } from "../../../src/providers/libvirt/index.js";
import type { ProviderHealth } from "../../../src/providers/types.js";
import { startTestbed, type Testbed } from "../../support/testbed/index.js";
import { makePki } from "../../support/testbed/pki.js";

let tb: Testbed;
beforeAll(async () => {
  tb = await startTestbed({ hosts: 2, name: "prov", tls: true });
}, 120_000);
afterAll(async () => {
  await tb?.teardown();
}, 60_000);

describe("libvirt provider on real hosts", () => {
  it("reports a hung libvirtd as unhealthy through keepalive within interval x (count + 1)", async () => {
    const h = tb.hosts[1];
    if (!h) throw new Error("no host");
    const p = new LibvirtProvider(h.uri, { keepaliveIntervalMs: 300, keepaliveCount: 3 });
    await p.connect();
    const changes: ProviderHealth[] = [];
    p.onHealthChange((x) => changes.push(x));
    expect(p.health().connected).toBe(true);
    const t0 = Date.now();
    process.kill(h.pid, "SIGSTOP");
    try {
      for (let i = 0; i < 100 && p.health().connected; i++) await new Promise((r) => setTimeout(r, 50));
      const detectedMs = Date.now() - t0;
      console.log(
        `keepalive loss detected after ${detectedMs} ms (bound ${300 * 4} ms + one interval of timer granularity)`,
      );
      expect(p.health().connected).toBe(false);
      expect(changes.at(-1)?.connected).toBe(false);
      expect(changes.at(-1)?.error).toMatch(/keepalive/);
      await expect(p.ping()).rejects.toMatchObject({ code: "Unreachable" });
    } finally {
      process.kill(h.pid, "SIGCONT");
    }
    // The daemon answers again: a new connect restores health.
    await p.connect();
    expect(p.health().connected).toBe(true);
    await p.close();
  });

  it("speaks TLS with client certificates and verifies the server", async () => {
    const h = tb.hosts[0];
    if (!h?.tlsUri) throw new Error("no TLS host");
    const p = new LibvirtProvider(h.tlsUri);
    await p.connect();
    const info = await p.hostInfo();
    expect(info.cpus).toBeGreaterThan(0);
    await p.close();

    const other = mkdtempSync(join(tmpdir(), "vw-otherca-"));
    try {
      const wrong = makePki(other, "some-other-ca");
      const bad = new LibvirtProvider(`qemu+tls://${h.address}/system?pkipath=${wrong.clientDir}`);
      await expect(bad.connect()).rejects.toMatchObject({ code: "Unreachable" });
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});
