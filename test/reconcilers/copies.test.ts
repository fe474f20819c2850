/**
 * resolveCopies, the one rule for every copy of a VM (src/reconcilers/copies.ts): every case the
 * VM decision, the Host reconciler's listing and a restore acted on when each had its own rule.
 */
import { describe, expect, it } from "vitest";
import {
  type CopiesInput,
  type CopiesVerdict,
  type Copy,
  mayRun,
  resolveCopies,
} from "../../src/reconcilers/copies.js";

/** A copy whose host answers; `.down` on a fenced (or removed) host; `.unsure` where none can ask. */
const up = (host: string, running = true): Copy => ({ host, running, reachable: true });
const fenced = (host: string, running = true): Copy => ({ host, running, reachable: false });
const unsure = (host: string, running = true): Copy => ({ host, running, reachable: false, uncertain: true });

const on = (assigned: string | undefined, health: CopiesInput["assignedHealth"] = "ready") => ({
  assigned,
  assignedHealth: assigned ? health : undefined,
});

type Row = [title: string, input: CopiesInput, expected: Partial<CopiesVerdict>];

const rows: Row[] = [
  // --- stale copies (VM decision step 2, the Host reconciler's listing, a restore) ---------------
  [
    "a running copy on an unassigned host, the assigned host ready: destroyed",
    { ...on("a"), copies: [up("b")] },
    { keep: "a", stale: [{ host: "b", running: true, why: "the VM is on a" }], left: [], uncertain: [] },
  ],
  [
    "a defined (shut off) copy elsewhere: undefined, not destroyed",
    { ...on("a"), copies: [up("b", false)] },
    { keep: "a", stale: [{ host: "b", running: false, why: "the VM is on a" }] },
  ],
  [
    "the assigned host unreachable (not down): it keeps the place, a running copy elsewhere goes",
    { ...on("a", "unreachable"), copies: [up("b")] },
    { keep: "a", stale: [{ host: "b", running: true, why: "the VM is on a" }] },
  ],
  [
    "the assigned host's own copy is never judged (passed by mistake)",
    { ...on("a"), copies: [up("a"), up("b", false)] },
    { keep: "a", stale: [{ host: "b", running: false, why: "the VM is on a" }] },
  ],
  [
    "a stale copy on a host that does not answer: left for later, and nothing starts",
    { ...on("a"), copies: [unsure("b")] },
    {
      keep: "a",
      stale: [],
      left: [{ host: "b", why: "unreachable" }],
      uncertain: [{ host: "b", why: "unreachable" }],
    },
  ],
  [
    "a shut-off copy on a host that does not answer: left, and it holds nothing (its last listing)",
    { ...on("a"), copies: [unsure("b", false)] },
    { stale: [], left: [{ host: "b", why: "unreachable" }], uncertain: [] },
  ],
  [
    "a copy on a fenced (or switched-off, or removed) host: left, holds nothing, runs nothing",
    { ...on("a"), copies: [fenced("b")] },
    { keep: "a", stale: [], left: [{ host: "b", why: "fenced" }], uncertain: [] },
  ],
  [
    "a host not listed since the controller started: nothing starts (the assigned one is read directly)",
    { ...on("a"), copies: [], unlisted: ["a", "c"] },
    { keep: "a", stale: [], uncertain: [{ host: "c", why: "unlisted" }] },
  ],
  // --- migrations ----------------------------------------------------------------------------------
  [
    "the target of a migration in progress: the VM arriving, never stale",
    { ...on("a"), copies: [up("b")], incoming: ["b"] },
    { keep: "a", stale: [], left: [] },
  ],
  [
    "a third host's copy during a migration: stale",
    { ...on("a"), copies: [up("b"), up("c")], incoming: ["b"] },
    { keep: "a", stale: [{ host: "c", running: true, why: "the VM is on a" }] },
  ],
  [
    "an unlisted migration target still holds starts (the move may have finished there)",
    { ...on("a", "fenced"), copies: [], incoming: ["b"], unlisted: ["b"] },
    { keep: undefined, uncertain: [{ host: "b", why: "unlisted" }] },
  ],
  [
    "the source died, the VM had arrived on the target: followed there",
    { ...on("a", "fenced"), copies: [up("b")], incoming: ["b"] },
    { keep: "b", adopt: { host: "b", why: "moved", running: true }, stale: [] },
  ],
  [
    "the source died, the target holds a running copy and does not answer: wait, adopt nothing",
    { ...on("a", "fenced"), copies: [unsure("b"), up("c")], incoming: ["b"] },
    // A third running copy is a second one if the target's runs: destroyed (as it always was).
    {
      keep: undefined,
      awaiting: "b",
      stale: [{ host: "c", running: true, why: "the VM may have arrived on b" }],
    },
  ],
  [
    "the source died and the target was fenced too: its copy runs no more, the VM is recovered",
    { ...on("a", "fenced"), copies: [fenced("b")], incoming: ["b"] },
    { keep: undefined, stale: [], left: [] },
  ],
  [
    "the source died, the target holds the VM shut off (a cold move half done): recovered anew",
    { ...on("a", "fenced"), copies: [up("b", false)], incoming: ["b"] },
    { keep: undefined, stale: [] },
  ],
  // --- the assigned host confirmed down ------------------------------------------------------------
  [
    "the assigned host fenced, the VM's only running copy elsewhere: followed, never destroyed",
    { ...on("a", "fenced"), copies: [up("b"), up("c", false)] },
    {
      keep: "b",
      adopt: { host: "b", why: "survived", running: true },
      stale: [{ host: "c", running: false, why: "the VM is on b" }],
    },
  ],
  [
    "the assigned host removed, two running copies elsewhere: the first followed, the other destroyed",
    { ...on("a", "gone"), copies: [up("b"), up("c")] },
    {
      keep: "b",
      adopt: { host: "b", why: "survived", running: true },
      stale: [{ host: "c", running: true, why: "the VM is on b" }],
    },
  ],
  [
    "the assigned host fenced, nothing running elsewhere: recovered anew; defined copies go",
    { ...on("a", "fenced"), copies: [up("b", false)] },
    {
      keep: undefined,
      stale: [{ host: "b", running: false, why: "the VM's host a is down and the VM is placed anew" }],
    },
  ],
  [
    "the assigned host fenced, a copy may run where none can ask: nothing adopted, nothing starts",
    { ...on("a", "fenced"), copies: [unsure("b")] },
    { keep: undefined, stale: [], uncertain: [{ host: "b", why: "unreachable" }] },
  ],
  // --- no assignment (controller restart, status lost) ---------------------------------------------
  [
    "no assignment: the running copy is adopted first, and nothing is stale yet",
    { ...on(undefined), copies: [up("b", false), up("c")] },
    { keep: "c", adopt: { host: "c", why: "unassigned", running: true }, stale: [] },
  ],
  [
    "no assignment, nothing runs: a defined copy is adopted",
    { ...on(undefined), copies: [up("b", false)] },
    { keep: "b", adopt: { host: "b", why: "unassigned", running: false } },
  ],
  [
    "no assignment, a defined copy, and a copy that may run where none can ask: wait, adopt nothing",
    { ...on(undefined), copies: [up("b", false), unsure("c")] },
    { keep: undefined, uncertain: [{ host: "c", why: "unreachable" }] },
  ],
  [
    "no assignment, a defined copy, and a host never listed: wait, adopt nothing",
    { ...on(undefined), copies: [up("b", false)], unlisted: ["c"] },
    { keep: undefined, uncertain: [{ host: "c", why: "unlisted" }] },
  ],
  [
    "no assignment, a running copy, and a host never listed: the running copy is adopted",
    { ...on(undefined), copies: [up("b")], unlisted: ["c"] },
    { keep: "b", adopt: { host: "b", why: "unassigned", running: true } },
  ],
  [
    "no assignment, only copies on fenced hosts: nothing adopted, nothing to remove",
    { ...on(undefined), copies: [fenced("b")] },
    { keep: undefined, stale: [], left: [{ host: "b", why: "fenced" }] },
  ],
  [
    "no copy at all: nothing kept (placed by the scheduler)",
    { ...on(undefined), copies: [] },
    { keep: undefined, stale: [], left: [], uncertain: [] },
  ],
  // --- a restore (its target is the assigned host; no migration exception) -----------------------
  [
    "a restore on another host: the copy on the VM's old host goes, running or not",
    { ...on("t"), copies: [up("a"), up("b", false)] },
    {
      keep: "t",
      stale: [
        { host: "a", running: true, why: "the VM is on t" },
        { host: "b", running: false, why: "the VM is on t" },
      ],
    },
  ],
  [
    "a restore with a copy on a fenced host: left (nothing runs there)",
    { ...on("t"), copies: [fenced("a")] },
    { stale: [], left: [{ host: "a", why: "fenced" }], uncertain: [] },
  ],
  [
    "a restore with a copy where none can ask: left unremoved (the restore fails on it)",
    { ...on("t"), copies: [unsure("a", false)] },
    { stale: [], left: [{ host: "a", why: "unreachable" }] },
  ],
];

describe("resolveCopies", () => {
  for (const [title, input, expected] of rows)
    it(title, () => {
      const v = resolveCopies(input);
      expect(v).toMatchObject(expected);
      if (!("adopt" in expected)) expect(v.adopt).toBeUndefined();
      if (!("awaiting" in expected)) expect(v.awaiting).toBeUndefined();
    });

  it("never keeps two running copies: beside the one it keeps, every answering running copy is stale (an adoption's at its next pass)", () => {
    const hosts = ["a", "b", "c"];
    const healths = ["ready", "unreachable", "fenced", "gone"] as const;
    const kinds = [undefined, up, fenced, unsure] as const;
    for (const health of healths)
      for (const kb of kinds)
        for (const kc of kinds)
          for (const running of [true, false]) {
            const copies = [kb?.("b", running), kc?.("c", !running)].filter((c): c is Copy => !!c);
            for (const assigned of [undefined, "a"]) {
              let v = resolveCopies({ ...on(assigned, health), copies });
              const answeringRunning = copies.filter((c) => c.reachable && c.running).map((c) => c.host);
              const adopted = v.adopt?.host;
              // An adoption moves the assignment; the next pass judges the others against it.
              if (adopted)
                v = resolveCopies({ ...on(adopted), copies: copies.filter((c) => c.host !== adopted) });
              const kept = v.keep ? [v.keep] : [];
              const removed = new Set(v.stale.map((s) => s.host));
              const survivors = answeringRunning.filter((h) => !removed.has(h) && !kept.includes(h));
              expect(survivors, JSON.stringify({ health, assigned, copies })).toEqual([]);
              // Never the only running copy of a VM whose host is down.
              if (assigned && (health === "fenced" || health === "gone") && answeringRunning.length > 0)
                expect(v.keep).toBeDefined();
              expect(hosts).toEqual(expect.arrayContaining(kept));
            }
          }
  });

  it("counts anything but shut off as running", () => {
    expect(mayRun("shutoff")).toBe(false);
    for (const s of [
      "running",
      "paused",
      "blocked",
      "crashed",
      "pmsuspended",
      "shutdown",
      "nostate",
    ] as const)
      expect(mayRun(s)).toBe(true);
  });
});
