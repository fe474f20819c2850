/**
 * The CI sample of `npm run chaos`: the real `virtwarden run` process on three real libvirt hosts,
 * SIGKILLed at seeded moments, with the /proc + virsh invariant watcher (test/chaos/real/).
 * A fixed seed and the four shortest scenarios: creation, deletion and re-creation of every VM
 * file, a host powered off and on, libvirtd killed and started again. The full set, and more
 * seeds: npm run chaos.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ChaosBed, startChaosBed } from "./real/bed.js";
import { repro, runScenario } from "./real/harness.js";
import { SCENARIOS } from "./real/scenarios.js";

const SEED = 1;
const SAMPLE = ["create", "recreate", "poweroff", "libvirtd"];

let bed: ChaosBed;

beforeAll(async () => {
  bed = await startChaosBed();
}, 300_000);

afterAll(async () => {
  await bed?.teardown();
}, 120_000);

describe("the controller killed at random moments on the real test bed", () => {
  for (const name of SAMPLE) {
    it(`${name}, seed ${SEED}: never two running copies, everything converges, status equals reality`, async () => {
      const scenario = SCENARIOS.find((s) => s.name === name);
      if (!scenario) throw new Error(`no scenario ${name}`);
      const r = await runScenario(bed, scenario, SEED, {
        log: process.env.VW_TEST_LOG ? (s) => console.log(s) : undefined,
      });
      console.log(
        `${name} seed ${SEED}: ${r.kills} kills, ${r.samples} watcher samples, converged in ${r.convergeS?.toFixed(1)} s, ${r.wallS.toFixed(0)} s`,
      );
      expect(
        r.violations,
        `${r.violations.join("\n")}\nlogs: ${r.logDir}\nreproduce: ${repro(SEED, name)}`,
      ).toEqual([]);
      // A pass means something: the controller was killed, and the watcher looked.
      expect(r.kills).toBeGreaterThan(0);
      expect(r.samples).toBeGreaterThan(50);
      expect(r.convergeS).toBeDefined();
    }, 400_000);
  }
});
