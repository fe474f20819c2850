/**
 * The push webhook: signatures as GitHub, Gitea and GitLab send them (computed here with
 * node:crypto from the secret and the exact body, not by the code under test), and a real POST
 * to the metrics server that makes a controller with no fetch interval apply a new commit.
 */
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { startHttpServer } from "../../src/cli/http.js";
import { silentLogger } from "../../src/controller/log.js";
import { GitSync } from "../../src/gitops/sync.js";
import { pushedRef, verifyWebhook, webhookHandler } from "../../src/gitops/webhook.js";
import { FileStore } from "../../src/store/files/index.js";
import { eventuallyWith } from "../support/eventually.js";
import { GitRemote } from "../support/git-remote.js";

const SECRET = "hook-secret";
const body = Buffer.from(JSON.stringify({ ref: "refs/heads/main", after: "abc" }));
const hex = (secret: string, b: Buffer) => createHmac("sha256", secret).update(b).digest("hex");

describe("verifyWebhook", () => {
  const rows: [string, Record<string, string>, string | undefined, boolean][] = [
    ["GitHub, right signature", { "x-hub-signature-256": `sha256=${hex(SECRET, body)}` }, SECRET, true],
    ["GitHub, other secret", { "x-hub-signature-256": `sha256=${hex("other", body)}` }, SECRET, false],
    ["GitHub, no sha256= prefix", { "x-hub-signature-256": hex(SECRET, body) }, SECRET, false],
    [
      "GitHub, signature of another body",
      { "x-hub-signature-256": `sha256=${hex(SECRET, Buffer.from("{}"))}` },
      SECRET,
      false,
    ],
    ["Gitea, right signature", { "x-gitea-signature": hex(SECRET, body) }, SECRET, true],
    ["Gitea, other secret", { "x-gitea-signature": hex("other", body) }, SECRET, false],
    ["Gogs, right signature", { "x-gogs-signature": hex(SECRET, body) }, SECRET, true],
    ["GitLab, the token", { "x-gitlab-token": SECRET }, SECRET, true],
    ["GitLab, another token", { "x-gitlab-token": "hook-secreT" }, SECRET, false],
    ["GitLab, a prefix of the token", { "x-gitlab-token": "hook" }, SECRET, false],
    ["nothing, with a secret", {}, SECRET, false],
    ["nothing, without a secret", {}, undefined, true],
  ];
  for (const [name, headers, secret, ok] of rows)
    it(name, () => {
      expect(verifyWebhook(headers, body, secret).ok).toBe(ok);
    });

  it("reads the ref of JSON and form-encoded push payloads", () => {
    expect(pushedRef(body, "application/json")).toBe("refs/heads/main");
    const form = Buffer.from(
      new URLSearchParams({ payload: JSON.stringify({ ref: "refs/heads/dev" }) }).toString(),
    );
    expect(pushedRef(form, "application/x-www-form-urlencoded")).toBe("refs/heads/dev");
    expect(pushedRef(Buffer.from("not json"), "application/json")).toBeUndefined();
  });
});

describe("the webhook on the metrics server", () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it("a signed push for the branch makes the controller fetch and apply; unsigned or other branches do not", async () => {
    const root = mkdtempSync(join(tmpdir(), "vw-hook-"));
    cleanups.push(() => rmSync(root, { recursive: true, force: true }));
    const remote = new GitRemote(join(root, "remote"));
    const vm = (name: string) =>
      `apiVersion: virtwarden.io/v1alpha1\nkind: VirtualMachine\nmetadata: { name: ${name}, namespace: default }\nspec:\n  resources: { cpu: 1, memory: 512Mi }\n`;
    const c1 = remote.commit("one", { "a.yaml": vm("a") });
    const stateDir = join(root, "state");
    const sync = new GitSync({
      url: remote.fileUrl,
      branch: "main",
      path: ".",
      intervalMs: 0,
      stateDir,
      logger: silentLogger,
    });
    const store = new FileStore({ tree: sync, stateDir, deleteSettleMs: 200, logger: silentLogger });
    await store.start();
    cleanups.push(() => store.stop());
    const results: string[] = [];
    sync.onSync((r) => results.push(r.result));
    sync.start(store);
    cleanups.push(() => sync.stop());
    const server: Server = await startHttpServer({
      address: "127.0.0.1:0",
      registry: new Registry(),
      ready: () => true,
      routes: new Map([
        [
          "/hooks/git",
          webhookHandler({ branch: "main", secret: () => SECRET, trigger: (w) => sync.trigger(w) }),
        ],
      ]),
    });
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/git`;
    const eventually = eventuallyWith({ timeoutMs: 30_000, everyMs: 20 });
    await eventually(() => sync.syncStatus().revision === c1, "start sync");

    const c2 = remote.commit("two", { "b.yaml": vm("b") });
    const post = (payload: object, headers: Record<string, string>) => {
      const b = Buffer.from(JSON.stringify(payload));
      const h =
        typeof headers.sign === "string"
          ? { "x-hub-signature-256": `sha256=${hex(headers.sign, b)}` }
          : headers;
      return fetch(url, { method: "POST", body: b, headers: { "content-type": "application/json", ...h } });
    };
    const unsigned = await post({ ref: "refs/heads/main" }, {});
    expect(unsigned.status).toBe(401);
    const wrong = await post({ ref: "refs/heads/main" }, { sign: "not-the-secret" });
    expect(wrong.status).toBe(401);
    const other = await post({ ref: "refs/heads/feature" }, { sign: SECRET });
    expect(other.status).toBe(200);
    expect((await fetch(url)).status).toBe(405);
    // None of those asked for a sync: still only the one at start.
    expect(results).toEqual(["Synced"]);
    expect(sync.syncStatus().revision).toBe(c1);

    const ok = await post({ ref: "refs/heads/main" }, { sign: SECRET });
    expect(ok.status).toBe(202);
    await eventually(() => sync.syncStatus().revision === c2, "webhook sync");
    expect(store.get("VirtualMachine", "default/b")).toBeDefined();
  }, 60_000);
});
