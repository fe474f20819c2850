/**
 * Credentials in a remote's URL never reach what the controller shows: the sync status, events
 * and logs name the remote with its user:password part replaced.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { expect, it } from "vitest";
import { redactUrl } from "../../src/gitops/git.js";
import { GitSync, type SyncResult } from "../../src/gitops/sync.js";
import type { RecordedEvent } from "../../src/store/types.js";

it.each([
  ["https://user:pw@host/x.git", "https://***@host/x.git"],
  ["ssh://git@host:22/x.git", "ssh://***@host:22/x.git"],
  ["https://host/x.git", "https://host/x.git"],
  ["file:///srv/x.git", "file:///srv/x.git"],
])("redactUrl(%s)", (url, shown) => {
  expect(redactUrl(url)).toBe(shown);
});

it("a refused fetch of a URL with a password shows neither in status, events nor logs", async () => {
  const root = mkdtempSync(join(tmpdir(), "vw-git-url-"));
  try {
    const logs: string[] = [];
    const logger = pino(
      { level: "debug" },
      new Writable({
        write(c, _e, cb) {
          logs.push(String(c));
          cb();
        },
      }),
    );
    // Port 9 on loopback: nothing listens (connection refused), no traffic leaves the machine.
    const sync = new GitSync({
      url: "http://alice:pw-in-url-secret@127.0.0.1:9/x.git",
      branch: "main",
      path: ".",
      intervalMs: 0,
      stateDir: root,
      logger,
    });
    const events: Omit<RecordedEvent, "firstTime" | "lastTime" | "count">[] = [];
    const results: SyncResult[] = [];
    sync.onSync((r) => results.push(r));
    sync.start({
      applyTree: () => Promise.reject(new Error("nothing to apply")),
      setSyncStatus: () => undefined,
      recordEvent: (e) => events.push(e),
    });
    const deadline = Date.now() + 30_000;
    while (results.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await sync.stop();
    expect(results[0]).toMatchObject({ result: "SyncFailed", stage: "fetch" });
    const shown = JSON.stringify([sync.syncStatus(), events, results]) + logs.join("");
    expect(shown).toContain("http://***@127.0.0.1:9/x.git");
    expect(shown).not.toContain("pw-in-url-secret");
    expect(shown).not.toContain("alice");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}, 60_000);
