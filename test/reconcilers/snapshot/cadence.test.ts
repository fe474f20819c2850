/**
 * schedule: auto, the pure decision (cadence.ts) and its use by decidePolicy. The expected
 * intervals are literals computed by hand (Python, from the formulas in the literature), never by
 * the code under test:
 *   Young  √(2CM)
 *   Daly   √(2CM)·[1 + ⅓√(C/2M) + (1/9)(C/2M)] − C   for C < 2M, else M
 */
import { describe, expect, it } from "vitest";
import { loadText } from "../../../src/api/loader.js";
import type {
  Host,
  SnapshotPolicy,
  SnapshotPolicyAuto,
  VirtualMachine,
  VirtualMachineSnapshot,
  VMRecoveryRecord,
} from "../../../src/api/types.js";
import {
  type CadenceInputs,
  dalyInterval,
  decideCadence,
  resolveAuto,
  youngInterval,
} from "../../../src/reconcilers/snapshot/cadence.js";
import { decidePolicy, resumedFromCheckpoint } from "../../../src/reconcilers/snapshot/policy.js";
import { hostResource, vm } from "../../support/fixtures.js";

const DAY = 86_400;
const T0 = new Date("2026-06-01T00:00:00Z");
const at = (s: number) => new Date(T0.getTime() + s * 1000);

const inputs = (over: Partial<CadenceInputs> = {}): CadenceInputs => ({
  auto: { minInterval: "1m", maxInterval: "24h" },
  target: "vm/db",
  hosts: [{ name: "h0", mtbfSeconds: DAY }],
  costSamples: [60],
  lastCheckpoint: T0,
  firstDue: at(-3600),
  now: T0,
  ...over,
});

describe("Young and Daly intervals", () => {
  it.each([
    // C, M, Young, Daly (hand-computed)
    [60, DAY, 3219.937887599697, 3180.0621135984475],
    [0.2, DAY, 185.903200617956, 185.7698911919273],
    [600, 1e8, 346410.16151377547, 346010.27698382933],
    [30, 7 * DAY, 6023.952191045344, 6003.968791442697],
    // C >= 2M: Daly's interval is M; Young's formula knows no such case.
    [10_000, 3600, 8485.28137423857, 3600],
    [7200, 3600, 7200, 3600],
  ])("C %ss, M %ss: Young %f, Daly %f", (c, m, young, daly) => {
    expect(youngInterval(c, m)).toBeCloseTo(young, 6);
    expect(dalyInterval(c, m)).toBeCloseTo(daly, 6);
  });
});

describe("decideCadence", () => {
  const rows: {
    name: string;
    in: Partial<CadenceInputs>;
    want: {
      formula: string;
      intervalSeconds?: number;
      formulaSeconds?: number;
      clamped?: "min" | "max";
      mtbfSeconds: number;
      mtbfSource: "measured" | "assumed";
      costSeconds?: number;
      nextRunTime?: string;
    };
  }[] = [
    {
      name: "Daly (the default) from the measured C and the host's measured M",
      in: {},
      want: {
        formula: "Daly",
        formulaSeconds: 3180.062,
        intervalSeconds: 3180.062,
        mtbfSeconds: DAY,
        mtbfSource: "measured",
        costSeconds: 60,
        nextRunTime: at(3180.062).toISOString(),
      },
    },
    {
      name: "Young when the policy asks for it",
      in: { auto: { minInterval: "1m", maxInterval: "24h", formula: "Young" } },
      want: {
        formula: "Young",
        formulaSeconds: 3219.938,
        intervalSeconds: 3219.938,
        mtbfSeconds: DAY,
        mtbfSource: "measured",
        costSeconds: 60,
      },
    },
    {
      name: "C is the mean of the newest 5 samples (an old outlier is not one of them)",
      in: { costSamples: [20, 40, 30, 20, 40, 5000] },
      want: {
        formula: "Daly",
        formulaSeconds: 2256.884,
        intervalSeconds: 2256.884,
        mtbfSeconds: DAY,
        mtbfSource: "measured",
        costSeconds: 30,
      },
    },
    {
      name: "clamped to minInterval (default 5m)",
      in: { auto: {}, costSamples: [0.2] },
      want: {
        formula: "Daly",
        formulaSeconds: 185.77,
        intervalSeconds: 300,
        clamped: "min",
        mtbfSeconds: DAY,
        mtbfSource: "measured",
        nextRunTime: at(300).toISOString(),
      },
    },
    {
      name: "clamped to maxInterval (default 24h)",
      in: { auto: {}, costSamples: [600], hosts: [{ name: "h0", mtbfSeconds: 1e8 }] },
      want: {
        formula: "Daly",
        formulaSeconds: 346010.277,
        intervalSeconds: DAY,
        clamped: "max",
        mtbfSeconds: 1e8,
        mtbfSource: "measured",
      },
    },
    {
      name: "C >= 2M: the interval is M",
      in: { costSamples: [10_000], hosts: [{ name: "h0", mtbfSeconds: 3600 }] },
      want: {
        formula: "Daly",
        formulaSeconds: 3600,
        intervalSeconds: 3600,
        mtbfSeconds: 3600,
        mtbfSource: "measured",
      },
    },
    {
      name: "a host without a measured MTBF: assumedMtbf (default 7d)",
      in: { auto: {}, costSamples: [30], hosts: [{ name: "h0" }] },
      want: {
        formula: "Daly",
        formulaSeconds: 6003.969,
        intervalSeconds: 6003.969,
        mtbfSeconds: 7 * DAY,
        mtbfSource: "assumed",
      },
    },
    {
      name: "a measured MTBF of 0 is no measurement",
      in: { auto: { assumedMtbf: "1d" }, costSamples: [30], hosts: [{ name: "h0", mtbfSeconds: 0 }] },
      want: { formula: "Daly", formulaSeconds: 2256.884, mtbfSeconds: DAY, mtbfSource: "assumed" },
    },
    {
      name: "a group on two hosts: failure rates add (1d and 1d give 12h)",
      in: {
        costSamples: [30],
        hosts: [
          { name: "h0", mtbfSeconds: DAY },
          { name: "h1", mtbfSeconds: DAY },
        ],
      },
      want: { formula: "Daly", formulaSeconds: 1590.031, mtbfSeconds: DAY / 2, mtbfSource: "measured" },
    },
    {
      name: "no checkpoint yet: one at once (due at the fixed first due time)",
      in: { lastCheckpoint: undefined, costSamples: [] },
      want: {
        formula: "FirstCheckpoint",
        mtbfSeconds: DAY,
        mtbfSource: "measured",
        nextRunTime: at(-3600).toISOString(),
      },
    },
    {
      name: "attempts but no measured C: minInterval after the last attempt",
      in: { costSamples: [] },
      want: {
        formula: "MinInterval",
        intervalSeconds: 60,
        mtbfSeconds: DAY,
        mtbfSource: "measured",
        nextRunTime: at(60).toISOString(),
      },
    },
    {
      name: "not placed: nothing to checkpoint",
      in: { hosts: [] },
      want: { formula: "NotPlaced", mtbfSeconds: 7 * DAY, mtbfSource: "assumed" },
    },
  ];
  for (const row of rows) {
    it(row.name, () => {
      const d = decideCadence(inputs(row.in));
      const { formulaSeconds, intervalSeconds, ...exact } = row.want;
      expect(d.status).toMatchObject(exact);
      if (formulaSeconds !== undefined) expect(d.status.formulaSeconds).toBeCloseTo(formulaSeconds, 2);
      if (intervalSeconds !== undefined) expect(d.status.intervalSeconds).toBeCloseTo(intervalSeconds, 2);
      if (!row.want.clamped) expect(d.status.clamped).toBeUndefined();
      expect(d.status.message.length).toBeGreaterThan(10);
    });
  }

  it("is due exactly at the last checkpoint + the interval, not a millisecond before", () => {
    const next = at(3180.062).getTime();
    expect(decideCadence(inputs({ now: new Date(next - 1) })).due).toBeUndefined();
    expect(decideCadence(inputs({ now: new Date(next) })).due?.getTime()).toBe(next);
    // Overdue (the controller was down): due at once, named for its due time.
    expect(decideCadence(inputs({ now: at(10 * DAY) })).due?.getTime()).toBe(next);
    expect(decideCadence(inputs({ lastCheckpoint: undefined, now: T0 })).due).toEqual(at(-3600));
    expect(decideCadence(inputs({ hosts: [], now: at(10 * DAY) })).due).toBeUndefined();
  });

  // A resume from a checkpoint leaves no unsaved work, as a checkpoint does: the interval counts
  // from the later of the two (the bias bench:checkpoint found: counting from the attempt before
  // the failure took the next checkpoint early, at full cost for part of an interval's work).
  it.each<[string, Partial<CadenceInputs>, number | undefined, string, number | undefined]>([
    // name, inputs, due at (s from T0; undefined: not due), nextRunTime (s from T0), now
    ["no resume: from the last checkpoint", {}, undefined, at(3180.062).toISOString(), 3000],
    [
      "resumed after the last checkpoint: from the resume",
      { resumedAt: at(2000) },
      undefined,
      at(2000 + 3180.062).toISOString(),
      3500,
    ],
    [
      "resumed after the interval ran out (outage): not at once, an interval after the resume",
      { resumedAt: at(5000) },
      undefined,
      at(5000 + 3180.062).toISOString(),
      5001,
    ],
    [
      "the same without the resume: due at once, named for the old due time",
      {},
      3180.062,
      at(3180.062).toISOString(),
      5001,
    ],
    [
      "resumed before the last checkpoint: from the checkpoint",
      { resumedAt: at(-500) },
      3180.062,
      at(3180.062).toISOString(),
      3180.062,
    ],
    [
      "no measured C: minInterval after the resume",
      { costSamples: [], resumedAt: at(100) },
      undefined,
      at(160).toISOString(),
      150,
    ],
    [
      "no checkpoint yet: a resume changes nothing (FirstCheckpoint at once)",
      { lastCheckpoint: undefined, costSamples: [], resumedAt: at(100) },
      -3600,
      at(-3600).toISOString(),
      150,
    ],
  ])("%s", (_name, over, dueS, nextRunTime, nowS) => {
    const d = decideCadence(inputs({ ...over, now: at(nowS ?? 0) }));
    expect(d.status.nextRunTime).toBe(nextRunTime);
    expect(d.due?.getTime()).toBe(dueS === undefined ? undefined : at(dueS).getTime());
    const last = "lastCheckpoint" in over ? over.lastCheckpoint : T0;
    const fromResume = over.resumedAt !== undefined && last !== undefined && over.resumedAt > last;
    if (fromResume)
      expect(d.status.message).toContain(`resume from a checkpoint at ${over.resumedAt?.toISOString()}`);
    else expect(d.status.message).not.toContain("resume");
  });

  it("recomputes when the host changes: the new host's MTBF sets the interval", () => {
    const on = (hosts: CadenceInputs["hosts"]) => decideCadence(inputs({ costSamples: [30], hosts })).status;
    const h0 = on([{ name: "h0", mtbfSeconds: DAY }]);
    const h1 = on([{ name: "h1", mtbfSeconds: 4 * DAY }]);
    expect(h0.hosts).toEqual(["h0"]);
    expect(h1.hosts).toEqual(["h1"]);
    expect(h0.intervalSeconds).toBeCloseTo(2256.884, 2);
    expect(h1.intervalSeconds).toBeCloseTo(4533.702, 2);
    expect(h1.nextRunTime).toBe(at(4533.702).toISOString());
  });

  it.each<[SnapshotPolicyAuto, RegExp]>([
    [{ minInterval: "2h", maxInterval: "1h" }, /auto\.minInterval 2h is longer than auto\.maxInterval 1h/],
    [{ minInterval: "0m" }, /auto\.minInterval "0m" is not a positive duration/],
    [{ maxInterval: "-1h" }, /auto\.maxInterval "-1h" is not a positive duration/],
    [{ assumedMtbf: "0d" }, /auto\.assumedMtbf "0d" is not a positive duration/],
    [{ minInterval: "10s" }, /auto\.minInterval "10s" is not a positive duration/],
  ])("rejects bad bounds %j, naming the field", (auto, error) => {
    expect(() => resolveAuto(auto)).toThrow(error);
  });
});

describe("validation of schedule auto manifests", () => {
  const manifest = (auto: string) =>
    `apiVersion: virtwarden.io/v1alpha1
kind: SnapshotPolicy
metadata:
  name: ckpt
  namespace: default
spec:
  selector: {}
  schedule: auto
  type: disk+memory
${auto}`;

  it("accepts auto with the defaults filled in", () => {
    const r = loadText(manifest(""), "ok.yaml");
    expect(r.errors).toEqual([]);
    const p = r.resources[0]?.resource as SnapshotPolicy;
    expect(p.spec.schedule).toBe("auto");
    const filled = loadText(manifest("  auto: {}\n"), "ok.yaml").resources[0]?.resource as SnapshotPolicy;
    expect(filled.spec.auto).toEqual({
      minInterval: "5m",
      maxInterval: "24h",
      assumedMtbf: "7d",
      costFrom: "pause",
      formula: "Daly",
    });
  });

  it.each([
    ["  auto:\n    minInterval: 0m\n", "spec.auto.minInterval", 11, "not a positive duration"],
    ["  auto:\n    maxInterval: -2h\n", "spec.auto.maxInterval", 11, "not a positive duration"],
    ["  auto:\n    assumedMtbf: 0d\n", "spec.auto.assumedMtbf", 11, "not a positive duration"],
    ["  auto:\n    minInterval: 2d\n", "spec.auto", 10, "minInterval must not be longer than maxInterval"],
    [
      "  auto:\n    minInterval: 2h\n    maxInterval: 1h\n",
      "spec.auto",
      10,
      "minInterval must not be longer",
    ],
    ["  auto:\n    costFrom: wall\n", "spec.auto.costFrom", 11, "Unsupported value"],
  ])("rejects %j at %s (line %i), loading nothing", (auto, path, line, words) => {
    const r = loadText(manifest(auto), "bad.yaml");
    const hit = r.errors.find((e) => e.path === path && e.message.includes(words));
    expect(hit, JSON.stringify(r.errors)).toBeDefined();
    expect(hit?.file).toBe("bad.yaml");
    expect(hit?.line).toBe(line);
    expect(r.resources).toEqual([]);
  });
});

describe("decidePolicy with schedule auto", () => {
  const policy = (over: Partial<SnapshotPolicy["spec"]> = {}): SnapshotPolicy => ({
    apiVersion: "virtwarden.io/v1alpha1",
    kind: "SnapshotPolicy",
    metadata: { name: "ckpt", namespace: "default", generation: 1, creationTimestamp: T0.toISOString() },
    spec: {
      selector: { matchLabels: { tier: "db" } },
      schedule: "auto",
      type: "disk+memory",
      auto: { minInterval: "1m", maxInterval: "24h" },
      ...over,
    },
  });
  const placed = (name: string, host: string | undefined, group?: string): VirtualMachine => {
    const v = vm(name)
      .labels({ tier: "db" })
      .spec({ resources: { cpu: 1, memory: "1Gi" }, ...(group ? { group } : {}) })
      .build();
    v.status = { phase: "Running", ...(host ? { host } : {}) };
    return v;
  };
  const host = (name: string, mtbfSeconds?: number): Host => {
    const h = hostResource(name);
    h.status = {
      phase: "Ready",
      ...(mtbfSeconds !== undefined
        ? {
            reliability: {
              failures: 3,
              observedSeconds: 3 * mtbfSeconds,
              upSeconds: 3 * mtbfSeconds,
              downSeconds: 0,
              mtbfSeconds,
              since: T0.toISOString(),
            },
          }
        : {}),
    } as Host["status"];
    return h;
  };
  const taken = (
    vmName: string,
    startedS: number,
    st: Partial<NonNullable<VirtualMachineSnapshot["status"]>>,
    group?: string,
  ): VirtualMachineSnapshot => ({
    apiVersion: "virtwarden.io/v1alpha1",
    kind: "VirtualMachineSnapshot",
    metadata: {
      name: `ckpt-${vmName}-${startedS}`,
      namespace: "default",
      creationTimestamp: at(startedS).toISOString(),
    },
    spec: { ...(group ? { group } : { vmName }), type: "disk+memory", policy: "ckpt" },
    status: { phase: "Succeeded", creationTime: at(startedS).toISOString(), ...st },
  });

  it("takes a first checkpoint at once, then each at its own cadence, with the inputs in status", () => {
    const vms = [placed("a", "h0"), placed("b", "h1"), placed("c", undefined)];
    const hosts = [host("h0", DAY), host("h1")];
    const first = decidePolicy({ policy: policy(), vms, snapshots: [], restores: [], hosts, now: at(5) });
    expect(first.create.map((s) => s.metadata.name).sort()).toEqual([
      "ckpt-a-202606010000",
      "ckpt-b-202606010000",
    ]);
    expect(first.status.cadence?.map((c) => [c.target, c.formula])).toEqual([
      ["vm/a", "FirstCheckpoint"],
      ["vm/b", "FirstCheckpoint"],
      ["vm/c", "NotPlaced"],
    ]);

    // Both taken at 10 s: a cost 60 s on h0 (M 1d measured), b cost 30 s on h1 (M assumed 7d).
    const snapshots = [taken("a", 10, { durationSeconds: 60 }), taken("b", 10, { durationSeconds: 30 })];
    const d = decidePolicy({ policy: policy(), vms, snapshots, restores: [], hosts, now: at(20) });
    expect(d.create).toEqual([]);
    const a = d.status.cadence?.find((c) => c.target === "vm/a");
    const b = d.status.cadence?.find((c) => c.target === "vm/b");
    expect(a).toMatchObject({ hosts: ["h0"], costSeconds: 60, costSamples: 1, mtbfSource: "measured" });
    expect(a?.mtbfSeconds).toBe(DAY);
    expect(a?.intervalSeconds).toBeCloseTo(3180.062, 2);
    expect(a?.nextRunTime).toBe(at(10 + 3180.062).toISOString());
    expect(b).toMatchObject({ hosts: ["h1"], costSeconds: 30, mtbfSeconds: 7 * DAY, mtbfSource: "assumed" });
    expect(b?.intervalSeconds).toBeCloseTo(6003.969, 2);
    // The policy's next run is the earliest target's; the requeue wakes it then.
    expect(d.status.nextRunTime).toBe(a?.nextRunTime);
    expect(d.requeueAfterMs).toBe(Math.round((10 + 3180.062 - 20) * 1000));

    // At a's due time only a is checkpointed, named for its due time.
    const due = decidePolicy({ policy: policy(), vms, snapshots, restores: [], hosts, now: at(3200) });
    expect(due.create.map((s) => s.metadata.name)).toEqual(["ckpt-a-202606010053"]);
    expect(due.create[0]?.spec).toEqual({ vmName: "a", type: "disk+memory", policy: "ckpt" });
  });

  it("follows a migration: the VM's new host's MTBF sets the next due time", () => {
    const snapshots = [taken("a", 0, { durationSeconds: 30 })];
    const hosts = [host("h0", DAY), host("h1", 4 * DAY)];
    const onH0 = decidePolicy({
      policy: policy(),
      vms: [placed("a", "h0")],
      snapshots,
      restores: [],
      hosts,
      now: at(1),
    });
    const onH1 = decidePolicy({
      policy: policy(),
      vms: [placed("a", "h1")],
      snapshots,
      restores: [],
      hosts,
      now: at(1),
    });
    expect(onH0.status.cadence?.[0]?.intervalSeconds).toBeCloseTo(2256.884, 2);
    expect(onH1.status.cadence?.[0]?.intervalSeconds).toBeCloseTo(4533.702, 2);
    expect(onH1.status.cadence?.[0]?.hosts).toEqual(["h1"]);
  });

  it("after a resume from one of its checkpoints, counts the interval from the resume (policy.ts passes resumedAt)", () => {
    const snapshots = [taken("a", 0, { durationSeconds: 30 })];
    const hosts = [host("h0", DAY), host("h1", DAY)];
    const recovered = (checkpoint: string, result: "Succeeded" | "InProgress", finishedS?: number) => {
      const v = placed("a", "h1");
      v.status = {
        ...v.status,
        lastRecovery: {
          reason: "HostFailure",
          fromHost: "h0",
          toHost: "h1",
          failedAt: at(900).toISOString(),
          result,
          checkpoint,
          ...(finishedS !== undefined ? { finishedAt: at(finishedS).toISOString() } : {}),
        },
      };
      return v;
    };
    const run = (v: VirtualMachine) =>
      decidePolicy({ policy: policy(), vms: [v], snapshots, restores: [], hosts, now: at(1_000) }).status
        .cadence?.[0];
    const plain = run(placed("a", "h1"));
    const interval = plain?.intervalSeconds as number;
    // Not resumed: from the checkpoint taken at 0.
    expect(plain?.nextRunTime).toBe(at(interval).toISOString());
    // Resumed at 960 from this policy's checkpoint: from the resume.
    expect(run(recovered("ckpt-a-0", "Succeeded", 960))?.nextRunTime).toBe(at(960 + interval).toISOString());
    // A recovery still under way, or from a snapshot this policy did not take: as if not resumed.
    expect(run(recovered("ckpt-a-0", "InProgress"))?.nextRunTime).toBe(at(interval).toISOString());
    expect(run(recovered("someone-elses", "Succeeded", 960))?.nextRunTime).toBe(at(interval).toISOString());
  });

  it("resumedFromCheckpoint: every member recovered from the same checkpoint of the policy, the latest finish", () => {
    const r = (checkpoint: string | undefined, finishedS: number | undefined, result = "Succeeded") =>
      ({
        reason: "HostFailure",
        failedAt: at(0).toISOString(),
        result,
        ...(checkpoint ? { checkpoint } : {}),
        ...(finishedS !== undefined ? { finishedAt: at(finishedS).toISOString() } : {}),
      }) as VMRecoveryRecord;
    const mine = new Set(["c1", "c2"]);
    expect(resumedFromCheckpoint([r("c1", 10), r("c1", 30)], mine)).toEqual(at(30));
    expect(resumedFromCheckpoint([r("c1", 10), r("c2", 30)], mine)).toBeUndefined();
    expect(resumedFromCheckpoint([r("c1", 10), undefined], mine)).toBeUndefined();
    expect(resumedFromCheckpoint([r("c1", 10), r("c1", undefined)], mine)).toBeUndefined();
    expect(resumedFromCheckpoint([r("c1", 10, "Failed")], mine)).toBeUndefined();
    expect(resumedFromCheckpoint([r("other", 10)], mine)).toBeUndefined();
    expect(resumedFromCheckpoint([], mine)).toBeUndefined();
  });

  it("costFrom pause uses a group's pause window, total its duration; a group's hosts combine", () => {
    const vms = [placed("m0", "h0", "mpi"), placed("m1", "h1", "mpi")];
    const hosts = [host("h0", DAY), host("h1", DAY)];
    const snapshots = [taken("m0", 0, { pauseWindowSeconds: 30, durationSeconds: 45 }, "mpi")];
    const run = (costFrom: "pause" | "total") =>
      decidePolicy({
        policy: policy({ consistency: "group", auto: { minInterval: "1m", maxInterval: "24h", costFrom } }),
        vms,
        snapshots,
        restores: [],
        hosts,
        now: at(1),
      }).status.cadence?.[0];
    const pause = run("pause");
    expect(pause).toMatchObject({
      target: "group/mpi",
      hosts: ["h0", "h1"],
      costSeconds: 30,
      mtbfSeconds: DAY / 2,
    });
    expect(pause?.intervalSeconds).toBeCloseTo(1590.031, 2);
    const total = run("total");
    expect(total?.costSeconds).toBe(45);
    // Daly for C 45 s, M 12 h (hand-computed): 1941.92 s.
    expect(total?.intervalSeconds).toBeCloseTo(1941.915, 2);
  });

  it("takes nothing while suspended or while the previous checkpoint is in progress", () => {
    const vms = [placed("a", "h0")];
    const hosts = [host("h0", DAY)];
    const suspended = decidePolicy({
      policy: policy({ suspend: true }),
      vms,
      snapshots: [],
      restores: [],
      hosts,
      now: at(5),
    });
    expect(suspended.create).toEqual([]);
    expect(suspended.status.cadence?.[0]?.formula).toBe("FirstCheckpoint");
    const inProgress = taken("a", 0, {});
    inProgress.status = { phase: "InProgress" };
    const busy = decidePolicy({
      policy: policy(),
      vms,
      snapshots: [inProgress],
      restores: [],
      hosts,
      now: at(DAY),
    });
    expect(busy.create).toEqual([]);
  });

  it("reports bad bounds that reach it (a store that skipped validation) as an invalid schedule", () => {
    const d = decidePolicy({
      policy: policy({ auto: { minInterval: "2h", maxInterval: "1h" } }),
      vms: [placed("a", "h0")],
      snapshots: [],
      restores: [],
      now: at(5),
    });
    expect(d.create).toEqual([]);
    const ready = d.status.conditions?.find((c) => c.type === "Ready");
    expect(ready).toMatchObject({ status: "False", reason: "InvalidSchedule" });
    expect(ready?.message).toMatch(/auto\.minInterval 2h is longer than auto\.maxInterval 1h/);
  });

  it("keeps retention as with a cron schedule", () => {
    const vms = [placed("a", "h0")];
    const snapshots = [0, 4000, 8000].map((s) => taken("a", s, { durationSeconds: 60 }));
    const d = decidePolicy({
      policy: policy({ retention: { keepLast: 2 } }),
      vms,
      snapshots,
      restores: [],
      hosts: [host("h0", DAY)],
      now: at(8001),
    });
    expect(d.prune).toEqual(["ckpt-a-0"]);
  });
});
