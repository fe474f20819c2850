import { createSocket } from "node:dgram";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ExecPowerAgent, magicPacket, WolPowerAgent } from "../../../src/providers/power/index.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A host power switch as a shell script over a state file: on | off | status. */
function fakeSwitch(initial: "on" | "off", opts: { stuck?: boolean } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "vw-power-"));
  dirs.push(dir);
  const state = join(dir, "state");
  writeFileSync(state, initial);
  const script = opts.stuck
    ? `case "$1" in status) cat "${state}";; *) exit 0;; esac`
    : `case "$1" in status) cat "${state}";; on|off) echo "$1" > "${state}";; *) exit 2;; esac`;
  return {
    command: ["sh", "-c", script, "switch", "{action}"],
    state: () => readFileSync(state, "utf8").trim(),
  };
}

describe("power agents", () => {
  it("exec: switches off and on, confirmed by its status", async () => {
    const s = fakeSwitch("on");
    const a = new ExecPowerAgent(s.command, 5_000);
    await a.powerOff("h1", AbortSignal.timeout(5_000));
    expect(s.state()).toBe("off");
    await a.powerOn("h1", AbortSignal.timeout(5_000));
    expect(s.state()).toBe("on");
  });

  it("exec: refuses to call a host off that its status still reports on", async () => {
    const s = fakeSwitch("on", { stuck: true });
    await expect(
      new ExecPowerAgent(s.command, 5_000).powerOff("h1", AbortSignal.timeout(5_000)),
    ).rejects.toThrow(/power-off not confirmed: status said "on"/);
  });

  it("wol: a magic packet is 6 x 0xff and the MAC 16 times, sent by UDP; it cannot switch off", async () => {
    const p = magicPacket("52:54:00:12:34:56");
    expect(p.length).toBe(102);
    expect(p.subarray(0, 6)).toEqual(Buffer.alloc(6, 0xff));
    expect(p.subarray(6, 12).toString("hex")).toBe("525400123456");
    expect(() => magicPacket("not-a-mac")).toThrow(/not a MAC/);
    const rx = createSocket("udp4");
    const got = new Promise<Buffer>((resolve) => rx.once("message", resolve));
    await new Promise<void>((r) => rx.bind(0, "127.0.0.1", () => r()));
    const port = rx.address().port;
    const a = new WolPowerAgent("52:54:00:12:34:56", { address: "127.0.0.1", port });
    expect(a.canPowerOff).toBe(false);
    await a.powerOn("h1");
    expect((await got).equals(p)).toBe(true);
    rx.close();
    await expect(a.powerOff("h1")).rejects.toThrow(/can only power a host on/);
  });
});
