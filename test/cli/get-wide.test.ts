/**
 * `virtwarden get host -o wide`: the real command against a state dir, showing each Host's
 * measured reliability (failures, MTBF, MTTR, availability, time observed) and whether placement
 * avoids it for missed bring-up deadlines, and its measured CPU and memory use (status.usage, what
 * loadAware ranks by), next to the usual columns; a host with no figure yet
 * shows dashes. The plain table keeps its columns.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Host } from "../../src/api/types.js";
import { hostResource } from "../support/fixtures.js";

const ROOT = join(import.meta.dirname, "..", "..");
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function get(dir: string, ...args: string[]): string {
  return execFileSync(
    process.execPath,
    ["--import", "tsx", join(ROOT, "src/cli/main.ts"), "get", "host", ...args, "--state-dir", dir],
    { cwd: ROOT, encoding: "utf8" },
  );
}

describe("virtwarden get host -o wide", () => {
  it("shows the reliability figures from status", () => {
    const dir = mkdtempSync(join(tmpdir(), "vw-getwide-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const volatile: Host = hostResource("desk-1");
    volatile.status = {
      phase: "Ready",
      reliability: {
        failures: 3,
        observedSeconds: 4 * 86_400,
        upSeconds: 3 * 86_400 + 79_200,
        downSeconds: 7_200,
        mtbfSeconds: (3 * 86_400 + 79_200) / 3,
        mttrSeconds: 2_400,
        availability: 0.979167,
        since: new Date(Date.now() - 5 * 86_400_000).toISOString(),
      },
      // Three VMs missed bring-up deadlines here lately: placement avoids it for a while.
      deadlines: { misses: 3, avoidUntil: "2099-01-01T00:00:00.000Z" },
      // Measured use, what loadAware placement ranks by.
      usage: {
        cpuPercent: 42.5,
        memoryUsedBytes: 10 * 1024 ** 3,
        memoryTotalBytes: 16 * 1024 ** 3,
        memoryPercent: 62.5,
        sampledAt: new Date().toISOString(),
      },
    };
    const fresh: Host = hostResource("rack-1");
    fresh.status = { phase: "Ready" };
    writeFileSync(
      join(dir, "view.json"),
      JSON.stringify({
        writtenAt: new Date().toISOString(),
        resources: [volatile, fresh],
        events: [],
        errors: [],
      }),
    );
    const wide = get(dir, "-o", "wide").trim().split("\n");
    expect(wide[0]?.split(/\s{2,}/)).toEqual([
      "NAME",
      "PHASE",
      "URI",
      "VMS",
      "CPU",
      "MEMORY",
      "AGE",
      "HEARTBEAT",
      "FAILURES",
      "MTBF",
      "MTTR",
      "AVAILABILITY",
      "OBSERVED",
      "AVOIDED",
      "CPU%",
      "MEM%",
    ]);
    // MTBF (3 d + 22 h) / 3 = 31.3 h, MTTR 40 min, 97.92 %, observed 4 days.
    expect(wide[1]?.split(/\s{2,}/).slice(8)).toEqual([
      "3",
      "31h",
      "40m",
      "97.92%",
      "4d",
      "until 2099-01-01T00:00:00.000Z",
      "42.5",
      "62.5",
    ]);
    expect(wide[2]?.split(/\s{2,}/).slice(8)).toEqual(["-", "-", "-", "-", "-", "-", "-", "-"]);
    const plain = get(dir).trim().split("\n");
    expect(plain[0]?.split(/\s{2,}/)).toHaveLength(7);
  });
});
