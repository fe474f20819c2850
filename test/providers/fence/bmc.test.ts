/**
 * The ipmi fence and power agents, and the fence-agents kind with fence_ipmilan, against a real
 * IPMI-over-LAN BMC (OpenIPMI's ipmi_sim on loopback), whose chassis power drives a power switch.
 * The BMC's own record of chassis control calls and the switch's own status are the oracles, not
 * the agents' word. Under CI=true a missing ipmi_sim or fence_ipmilan fails the suite.
 */
import { afterEach, describe, expect, it } from "vitest";
import { fenceAgentInput, redact, resolveFenceProgram } from "../../../src/providers/bmc/fence-agent-api.js";
import { FenceAgentsFenceAgent, IpmiFenceAgent } from "../../../src/providers/fence/index.js";
import { FenceAgentsPowerAgent, IpmiPowerAgent } from "../../../src/providers/power/index.js";
import {
  argvRecorder,
  type Bmc,
  bmcAvailable,
  cmdlineSampler,
  fenceAgentsAvailable,
  onPath,
  startBmc,
} from "../../support/bmc/index.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function bmc(opts: Parameters<typeof startBmc>[0] = {}): Promise<Bmc> {
  const b = await startBmc(opts);
  cleanups.push(() => b.stop());
  return b;
}

/** Puts `dir` first on PATH for the rest of the test. */
function prependPath(dir: string): void {
  const old = process.env.PATH;
  process.env.PATH = `${dir}:${old}`;
  cleanups.push(() => {
    process.env.PATH = old;
  });
}

const creds = (b: Bmc) => async () => ({ username: b.username, password: b.password });
const target = (b: Bmc) => ({ address: b.address, port: b.port, cipherSuite: 3 });
const signal = () => AbortSignal.timeout(60_000);

describe.skipIf(!bmcAvailable)("ipmi agents against ipmi_sim", () => {
  it("ipmi fence agent: the BMC switches the chassis off, the password never in ipmitool's argv", async () => {
    const b = await bmc();
    const rec = argvRecorder("ipmitool", onPath("ipmitool") as string);
    cleanups.push(rec.remove);
    prependPath(rec.dir);
    const sampler = cmdlineSampler(b.password);
    await new IpmiFenceAgent(target(b), creds(b), 10_000).fence("h1", signal());
    const sampled = sampler.stop();
    expect(b.switchStatus()).toBe("off");
    expect(b.chassisCalls()).toContain("0x20 set power 0");
    // off, then at least one status; each argv as the kernel got it.
    const calls = rec.calls();
    expect(calls.map((a) => a.slice(-1)[0])).toEqual(["off", ...calls.slice(1).map(() => "status")]);
    expect(calls.length).toBeGreaterThanOrEqual(2);
    for (const argv of calls) {
      expect(argv.join(" ")).not.toContain(b.password);
      expect(argv).toContain("-E");
    }
    expect(sampled.hits).toEqual([]);
    expect(b.alive()).toBe(true);
  });

  it("ipmi fence agent: a wrong password is refused by the BMC and the host stays on", async () => {
    const b = await bmc();
    const agent = new IpmiFenceAgent(
      target(b),
      async () => ({ username: b.username, password: "wrong-pw" }),
      10_000,
    );
    const err = await agent.fence("h1", signal()).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/fencing h1 with ipmi: BMC 127\.0\.0\.1:\d+: .*(session|Unable)/i);
    expect(b.switchStatus()).toBe("on");
    expect(b.chassisCalls().filter((c) => c.includes("set"))).toEqual([]);
  });

  it("ipmi fence agent: an unreachable BMC fails within its timeout, never reports fenced", async () => {
    const b = await bmc();
    await b.stop();
    const err = await new IpmiFenceAgent(target(b), creds(b), 3_000)
      .fence("h1", signal())
      .catch((e: Error) => e);
    expect((err as Error).message).toMatch(/fencing h1 with ipmi/);
  });

  it("ipmi power agent: soft-off the BMC turns into the OS shutting down, then on again", async () => {
    const b = await bmc();
    const agent = new IpmiPowerAgent(target(b), creds(b), 10_000);
    await agent.powerOff("h1", signal());
    expect(b.switchStatus()).toBe("off");
    // Graceful first: the BMC was asked for a soft shutdown, and never for a hard power-down.
    expect(b.chassisCalls()).toContain("0x20 set shutdown 1");
    expect(b.chassisCalls()).not.toContain("0x20 set power 0");
    await agent.powerOn("h1", signal());
    expect(b.switchStatus()).toBe("on");
    expect(b.chassisCalls()).toContain("0x20 set power 1");
  });

  it("ipmi power agent: a host that ignores soft-off is switched off hard after the timeout", async () => {
    const b = await bmc({ softOff: "ignore" });
    await new IpmiPowerAgent(target(b), creds(b), 3_000).powerOff("h1", signal());
    expect(b.switchStatus()).toBe("off");
    const calls = b.chassisCalls();
    expect(calls.indexOf("0x20 set shutdown 1")).toBeGreaterThanOrEqual(0);
    expect(calls.indexOf("0x20 set power 0")).toBeGreaterThan(calls.indexOf("0x20 set shutdown 1"));
  });
});

describe.skipIf(!bmcAvailable || !fenceAgentsAvailable)(
  "fence-agents kind: fence_ipmilan against ipmi_sim",
  () => {
    const options = (b: Bmc) => ({ ip: b.address, ipport: String(b.port), lanplus: "1", cipher: "3" });

    it("fences: options on stdin only, off then status says off; the BMC really switched off", async () => {
      const b = await bmc();
      const rec = argvRecorder("fence_ipmilan", resolveFenceProgram("fence_ipmilan"));
      cleanups.push(rec.remove);
      prependPath(rec.dir);
      const sampler = cmdlineSampler(b.password);
      await new FenceAgentsFenceAgent("fence_ipmilan", options(b), creds(b), 30_000).fence("h1", signal());
      const sampled = sampler.stop();
      expect(b.switchStatus()).toBe("off");
      expect(b.chassisCalls()).toContain("0x20 set power 0");
      // Two runs (action=off, action=status), each with an argv of the program's path alone.
      expect(rec.calls()).toEqual([[`${rec.dir}/fence_ipmilan`], [`${rec.dir}/fence_ipmilan`]]);
      console.log(
        `cmdline sampler: ${sampled.samples} samples of every process, ${sampled.hits.length} with the password`,
      );
      // KNOWN LEAK, not virtwarden's: fence_ipmilan (fence-agents 4.12) runs ipmitool with `-P
      // PASSWORD`, visible in /proc until ipmitool overwrites it. No process virtwarden spawned
      // shows it; whatever the sampler caught is fence_ipmilan's ipmitool child.
      for (const hit of sampled.hits) expect(hit).toMatch(/^\/usr\/bin\/ipmitool .* -P /);
    });

    it("refuses to call the host fenced when status does not say off (the BMC ignores power-down)", async () => {
      // A switch whose off does nothing: the BMC acknowledges, the chassis stays on.
      const b = await bmc({
        switchArgv: ["sh", "-c", 'case "$1" in status) echo on;; *) exit 0;; esac', "switch", "{action}"],
      });
      const err = await new FenceAgentsFenceAgent(
        "fence_ipmilan",
        { ...options(b), power_timeout: "2" },
        creds(b),
        30_000,
      )
        .fence("h1", signal())
        .catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/^fencing h1 with fence_ipmilan: /);
      expect((err as Error).message).not.toContain(b.password);
      expect(b.switchStatus()).toBe("on");
    });

    it("a wrong password fails the fence, and the program's output in the error is redacted", async () => {
      const b = await bmc();
      const err = await new FenceAgentsFenceAgent(
        "fence_ipmilan",
        { ...options(b), verbose: "1" },
        async () => ({ username: b.username, password: "not-the-password-xyz" }),
        30_000,
      )
        .fence("h1", signal())
        .catch((e: Error) => e);
      expect((err as Error).message).toMatch(/fence_ipmilan action=off exited with 1/);
      expect((err as Error).message).not.toContain("not-the-password-xyz");
      expect(b.switchStatus()).toBe("on");
    });

    it("power agent: off and on through fence_ipmilan, each confirmed by status", async () => {
      const b = await bmc();
      const agent = new FenceAgentsPowerAgent("fence_ipmilan", options(b), creds(b), 30_000);
      await agent.powerOff("h1", signal());
      expect(b.switchStatus()).toBe("off");
      await agent.powerOn("h1", signal());
      expect(b.switchStatus()).toBe("on");
      expect(b.chassisCalls()).toEqual(expect.arrayContaining(["0x20 set power 0", "0x20 set power 1"]));
    });
  },
);

describe("fence-agents kind: what it runs and what it writes on stdin", () => {
  it("runs only fence_* names found on PATH", () => {
    expect(() => resolveFenceProgram("/usr/sbin/fence_ipmilan")).toThrow(/not a fence-agents program name/);
    expect(() => resolveFenceProgram("sh")).toThrow(/not a fence-agents program name/);
    expect(() => resolveFenceProgram("fence_ipmilan;id")).toThrow(/not a fence-agents program name/);
    expect(() => resolveFenceProgram("fence_nonexistent_xyz")).toThrow(/not on PATH/);
    // A relative PATH entry would make the lookup depend on the working directory.
    expect(() => resolveFenceProgram("fence_ipmilan", "relative/dir")).toThrow(/not on PATH/);
  });

  it("redacts every occurrence of the password from what a program printed", () => {
    expect(redact("ipmitool -P s3cret -U admin; again s3cret.", ["s3cret", undefined])).toBe(
      "ipmitool -P [redacted] -U admin; again [redacted].",
    );
  });

  it("stdin: action first, options, then the credentials; nothing that could add a line", () => {
    expect(
      fenceAgentInput(
        {
          program: "fence_x",
          options: { ip: "10.0.0.5", lanplus: "1" },
          credentials: { username: "u", password: "p w=x" },
        },
        "off",
      ),
    ).toBe("action=off\nip=10.0.0.5\nlanplus=1\nusername=u\npassword=p w=x\n");
    expect(() => fenceAgentInput({ program: "fence_x", options: { ip: "a\naction=on" } }, "off")).toThrow(
      /span lines/,
    );
    expect(() => fenceAgentInput({ program: "fence_x", options: { action: "on" } }, "off")).toThrow(
      /not allowed/,
    );
    expect(() => fenceAgentInput({ program: "fence_x", options: { passwd: "x" } }, "off")).toThrow(
      /not allowed/,
    );
    expect(() => fenceAgentInput({ program: "fence_x", options: { "a=b": "x" } }, "off")).toThrow(
      /option name/,
    );
  });
});
