/**
 * Fencing a real test bed host through a real BMC: ipmi_sim's chassis power is the host's power
 * switch (libvirtd and its QEMUs killed, link down). The host's cable is cut, the controller loses
 * it, fences it with the ipmi agent or with fence_ipmilan (fence-agents kind), and afterwards the
 * BMC's password appears nowhere: not in the argv of what the controller ran, not in its logs
 * (debug level), its events or its /metrics text.
 */
import { Writable } from "node:stream";
import pino from "pino";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import type { Host } from "../../../src/api/types.js";
import { Runtime } from "../../../src/cli/runtime.js";
import { resolveFenceProgram } from "../../../src/providers/bmc/fence-agent-api.js";
import { createFenceAgentFactory } from "../../../src/providers/fence/index.js";
import { createLibvirtProviderFactory } from "../../../src/providers/libvirt/index.js";
import {
  argvRecorder,
  bmcAvailable,
  cmdlineSampler,
  fenceAgentsAvailable,
  onPath,
  startBmc,
} from "../../support/bmc/index.js";
import { eventuallyWith } from "../../support/eventually.js";
import { testbedHost } from "../../support/fixtures.js";
import { MemoryStore } from "../../support/memory-store.js";
import { startTestbed } from "../../support/testbed/index.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
}, 60_000);

const eventually = eventuallyWith({ timeoutMs: 60_000, everyMs: 25 });

type Agent = "ipmi" | "fence-agents";

describe.skipIf(!bmcAvailable || !fenceAgentsAvailable)("fencing a test bed host through ipmi_sim", () => {
  it.each<Agent>(["ipmi", "fence-agents"])(
    "%s: the BMC switches the lost host off; the password is in no argv, log, event or metric",
    async (agent) => {
      const tb = await startTestbed({ hosts: 1, name: `bmc-${agent === "ipmi" ? "i" : "f"}` });
      cleanups.push(() => tb.teardown());
      const h = tb.hosts[0] as (typeof tb.hosts)[number];
      const bmc = await startBmc({ switchArgv: h.fenceCommand });
      cleanups.push(() => bmc.stop());
      // Every run of the program the agent spawns, by name on PATH, recorded exactly.
      const program = agent === "ipmi" ? "ipmitool" : "fence_ipmilan";
      const rec = argvRecorder(
        program,
        agent === "ipmi" ? (onPath("ipmitool") as string) : resolveFenceProgram(program),
      );
      cleanups.push(rec.remove);
      const oldPath = process.env.PATH;
      process.env.PATH = `${rec.dir}:${oldPath}`;
      cleanups.push(() => {
        process.env.PATH = oldPath;
      });

      const store = new MemoryStore();
      store.secrets.bmc = { username: bmc.username, password: bmc.password };
      const fencing: NonNullable<Host["spec"]["fencing"]> =
        agent === "ipmi"
          ? {
              agent,
              address: bmc.address,
              port: bmc.port,
              cipherSuite: 3,
              credentialsSecretRef: { name: "bmc" },
              timeoutSeconds: 20,
            }
          : {
              agent,
              program,
              options: { ip: bmc.address, ipport: String(bmc.port), lanplus: "1", cipher: "3" },
              credentialsSecretRef: { name: "bmc" },
              timeoutSeconds: 30,
            };
      const r = testbedHost(h);
      r.spec.fencing = fencing;
      r.spec.heartbeat = { intervalSeconds: 0.5, missedBeats: 3 };
      store.apply(r);

      let logs = "";
      const sink = new Writable({
        write(chunk, _enc, done) {
          logs += chunk.toString();
          done();
        },
      });
      const registry = new Registry();
      const rt = new Runtime({
        store,
        providerFactory: createLibvirtProviderFactory(),
        fenceAgents: createFenceAgentFactory({ readSecret: (ref) => store.readSecret(ref) }),
        registry,
        logger: pino({ level: "debug" }, sink),
        heartbeatIntervalMs: 500,
      });
      cleanups.push(() => rt.stop(2000));
      await rt.start();
      await eventually(() => store.get("Host", h.name)?.status?.phase === "Ready", "host Ready");

      const sampler = cmdlineSampler(bmc.password);
      h.linkDown();
      await eventually(() => store.get("Host", h.name)?.status?.phase === "Fenced", "host Fenced", 90_000);
      const sampled = sampler.stop();

      // The BMC did it, and the host really is off (its power switch's own view).
      expect(bmc.chassisCalls()).toContain("0x20 set power 0");
      expect(bmc.switchStatus()).toBe("off");
      expect(rec.calls().length).toBeGreaterThanOrEqual(2);

      const events = JSON.stringify(store.listEvents());
      const metrics = await registry.metrics();
      const status = JSON.stringify(store.get("Host", h.name)?.status);
      // Non-empty haystacks: the fence was logged, recorded and counted.
      expect(logs).toContain(h.name);
      expect(events).toContain(h.name);
      expect(metrics).toContain("virtwarden_");
      for (const [what, text] of [
        ["argv", JSON.stringify(rec.calls())],
        ["logs", logs],
        ["events", events],
        ["metrics", metrics],
        ["host status", status],
      ] as const)
        expect(text.includes(bmc.password), `${what} contains the password`).toBe(false);
      // The ipmi agent's processes never show it; fence_ipmilan's ipmitool child may (see bmc.test.ts).
      if (agent === "ipmi") expect(sampled.hits).toEqual([]);
      else for (const hit of sampled.hits) expect(hit).toMatch(/^\/usr\/bin\/ipmitool .* -P /);
    },
    240_000,
  );
});
