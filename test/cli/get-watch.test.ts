/**
 * `virtwarden get -w` (issue 17 point 9): the real command, as its own process, against a state
 * dir whose view.json this test rewrites the way a controller does (temp file + rename). A row is
 * printed when a VM's row changes, a line when it goes; time passing alone prints nothing.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { VirtualMachine } from "../../src/api/types.js";
import { eventually } from "../support/eventually.js";
import { vm } from "../support/fixtures.js";

const ROOT = join(import.meta.dirname, "..", "..");
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function writeView(dir: string, resources: VirtualMachine[]): void {
  const tmp = join(dir, "view.json.tmp");
  writeFileSync(
    tmp,
    JSON.stringify({ writtenAt: new Date().toISOString(), resources, events: [], errors: [] }),
  );
  renameSync(tmp, join(dir, "view.json"));
}

/** Until `out()` matches `re`; on timeout the message carries what was printed. */
const printed = (out: () => string, re: RegExp, what: string) =>
  eventually(() => re.test(out()), `printed: ${what}`, { timeoutMs: 20_000, everyMs: 20, detail: out });

describe("virtwarden get -w", () => {
  it("prints the table, then a row per change and a line per deletion", async () => {
    const dir = mkdtempSync(join(tmpdir(), "vw-getw-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const made = new Date(Date.now() - 60_000).toISOString();
    const at = (b: ReturnType<typeof vm>) => {
      const v = b.build();
      v.metadata.creationTimestamp = made;
      return v;
    };
    writeView(dir, [at(vm("web").phase("Pending")), at(vm("db").onHost("h0").phase("Running"))]);
    const p: ChildProcess = spawn(
      process.execPath,
      ["--import", "tsx", join(ROOT, "src/cli/main.ts"), "get", "vm", "-w", "--state-dir", dir],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    );
    cleanups.push(() => p.kill("SIGKILL"));
    let out = "";
    p.stdout?.on("data", (b: Buffer) => {
      out += b.toString();
    });
    p.stderr?.on("data", (b: Buffer) => {
      out += b.toString();
    });
    await printed(() => out, /NAME\s+PHASE/, "the table");
    const table = out;
    expect(table).toMatch(/default\s+db\s+Running\s+h0/);
    expect(table).toMatch(/default\s+web\s+Pending/);
    // Rewritten unchanged, twice: nothing more printed (the age alone moved).
    writeView(dir, [at(vm("web").phase("Pending")), at(vm("db").onHost("h0").phase("Running"))]);
    await new Promise((r) => setTimeout(r, 1_500));
    expect(out).toBe(table);
    // web placed and running: one row for web, none for db.
    writeView(dir, [at(vm("web").onHost("h1").phase("Running")), at(vm("db").onHost("h0").phase("Running"))]);
    await printed(() => out.slice(table.length), /default\s+web\s+Running\s+h1/, "web's new row");
    expect(out.slice(table.length)).not.toMatch(/\bdb\b/);
    // db deleted.
    writeView(dir, [at(vm("web").onHost("h1").phase("Running"))]);
    await printed(() => out.slice(table.length), /default\/db\s+deleted/, "db's deletion");
  }, 60_000);
});
