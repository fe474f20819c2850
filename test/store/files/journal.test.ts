/**
 * The journal's two kinds of bad bytes: a torn last record (what kill -9 or a power cut during
 * an append leaves) is ignored on load and cut off; a bad record with good ones after it is
 * damage, reported with file, byte offset and line, and never dropped silently (before, the
 * load cut the journal at the bad record and lost every acknowledged record after it).
 */
import { execFileSync } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { VirtualMachine } from "../../../src/api/types.js";
import { FileStore, JournalCorruptError } from "../../../src/store/files/index.js";
import { crc32, decodeJournal } from "../../../src/store/files/journal.js";

const roots: string[] = [];
const stores: FileStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.stop().catch(() => undefined)));
  for (const d of roots.splice(0)) rmSync(d, { recursive: true, force: true });
});

const line = (rec: object) => {
  const body = JSON.stringify(rec);
  return `${crc32(body).toString(16).padStart(8, "0")} ${body}\n`;
};

describe("decodeJournal", () => {
  const good = line({ seq: 1, t: "x" }) + line({ seq: 2, t: "x" });
  const cases: { name: string; text: string; records: number; torn: boolean; corruptAt?: number }[] = [
    { name: "clean", text: good, records: 2, torn: false },
    { name: "empty", text: "", records: 0, torn: false },
    { name: "last line cut short", text: `${good}0123abcd {"seq":3,"t`, records: 2, torn: true },
    {
      name: "zeros after the last record (delayed allocation)",
      text: `${good}\0\0\0\0\0\0`,
      records: 2,
      torn: true,
    },
    {
      name: "last line whole but its checksum wrong",
      text: good + line({ seq: 3, t: "x" }).replace(/^[0-9a-f]{8}/, "00000000"),
      records: 2,
      torn: true,
    },
    {
      name: "a bad record with good ones after it",
      text:
        line({ seq: 1, t: "x" }) + line({ seq: 2, t: "x" }).replace('"x"', '"y"') + line({ seq: 3, t: "x" }),
      records: 1,
      torn: false,
      corruptAt: Buffer.byteLength(line({ seq: 1, t: "x" })),
    },
  ];
  for (const c of cases)
    it(c.name, () => {
      const d = decodeJournal(c.text);
      expect(d.records).toHaveLength(c.records);
      expect(d.tornBytes > 0).toBe(c.torn);
      expect(d.corruption?.offset).toBe(c.corruptAt);
      if (c.corruptAt !== undefined) expect(d.corruption).toMatchObject({ line: 2, followedBy: 1 });
    });
});

describe("FileStore: a damaged journal", () => {
  function setup(): { manifests: string; state: string } {
    const root = mkdtempSync(join(tmpdir(), "vw-journal-"));
    roots.push(root);
    const manifests = join(root, "manifests");
    mkdirSync(manifests);
    writeFileSync(
      join(manifests, "a.yaml"),
      "apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: a}\nspec:\n  resources: {cpu: 1, memory: 1Gi}\n",
    );
    return { manifests, state: join(root, "state") };
  }

  async function writeStatuses(d: { manifests: string; state: string }, counts: number[]): Promise<void> {
    const s = new FileStore({ manifestDir: d.manifests, stateDir: d.state });
    await s.start();
    for (const n of counts)
      await s.updateStatus(s.get("VirtualMachine", "default/a") as VirtualMachine, {
        phase: "Running",
        restartCount: n,
      });
    await s.stop();
  }

  it("ignores a torn last record and keeps every acknowledged one", async () => {
    const d = setup();
    await writeStatuses(d, [1, 2, 3]);
    appendFileSync(
      join(d.state, "journal.log"),
      '1234abcd {"t":"status","id":"VirtualMachine|default/a","sta',
    );
    const s = new FileStore({ manifestDir: d.manifests, stateDir: d.state });
    stores.push(s);
    await s.start();
    expect(s.get("VirtualMachine", "default/a")?.status?.restartCount).toBe(3);
  });

  it("refuses a corrupt record in the middle, naming file, offset and line, and changes nothing", async () => {
    const d = setup();
    await writeStatuses(d, [1, 2, 3]);
    const path = join(d.state, "journal.log");
    const before = readFileSync(path);
    // Flip one byte inside the record of restartCount 2 (bit rot, a bad sector, a stray write).
    const text = before.toString("utf8");
    const at = text.indexOf('"restartCount":2');
    expect(at).toBeGreaterThan(0);
    const damaged = Buffer.from(before);
    damaged[at + 1] = "R".charCodeAt(0);
    writeFileSync(path, damaged);
    const lineStart = text.lastIndexOf("\n", at) + 1;
    const lineNo = text.slice(0, lineStart).split("\n").length;

    const s = new FileStore({ manifestDir: d.manifests, stateDir: d.state });
    const err = await s.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JournalCorruptError);
    expect(String(err)).toContain(
      `${path}: corrupt record at byte offset ${lineStart} (line ${lineNo}): checksum mismatch`,
    );
    expect(String(err)).toContain(`truncate -s ${lineStart} ${path}`);
    await s.stop();
    expect(readFileSync(path).equals(damaged), "the journal is left as it was").toBe(true);

    // Doing what the message says: the records before the damage are kept, the store starts.
    execFileSync("truncate", ["-s", String(lineStart), path]);
    const again = new FileStore({ manifestDir: d.manifests, stateDir: d.state });
    stores.push(again);
    await again.start();
    expect(again.get("VirtualMachine", "default/a")?.status?.restartCount).toBe(1);
  });
});
