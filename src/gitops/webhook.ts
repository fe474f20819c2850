/**
 * The push webhook of `run --git`: a POST on the metrics server asks for a fetch now instead of
 * at the next interval. With a secret configured, a request counts only if it proves it knows
 * the secret, as GitHub, Gitea (and Gogs) or GitLab prove it:
 * - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`
 * - Gitea / Gogs: `X-Gitea-Signature` / `X-Gogs-Signature: <hex HMAC-SHA256 of the body>`
 * - GitLab: `X-Gitlab-Token: <the secret itself>`
 * Comparisons are constant-time. Without a secret any POST triggers a fetch: a request can only
 * make the controller fetch sooner, never choose what it applies (that is the branch's tip).
 * A push payload naming another branch (`ref`) is acknowledged and ignored.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";

export type WebhookVerdict = { ok: true; via: string } | { ok: false; why: string };

const sameBytes = (a: Buffer, b: Buffer) => a.length === b.length && timingSafeEqual(a, b);

const header = (headers: IncomingMessage["headers"], name: string): string | undefined => {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
};

/** Whether a request proves the secret (undefined secret: every request is accepted). */
export function verifyWebhook(
  headers: IncomingMessage["headers"],
  body: Buffer,
  secret: string | undefined,
): WebhookVerdict {
  if (secret === undefined) return { ok: true, via: "no secret configured" };
  const hmac = () => createHmac("sha256", secret).update(body).digest();
  const github = header(headers, "x-hub-signature-256");
  if (github !== undefined) {
    const m = /^sha256=([0-9a-f]{64})$/i.exec(github.trim());
    return m?.[1] && sameBytes(Buffer.from(m[1], "hex"), hmac())
      ? { ok: true, via: "X-Hub-Signature-256" }
      : { ok: false, why: "X-Hub-Signature-256 does not match the body and the secret" };
  }
  for (const name of ["x-gitea-signature", "x-gogs-signature"]) {
    const sig = header(headers, name);
    if (sig === undefined) continue;
    const hex = sig.trim();
    return /^[0-9a-f]{64}$/i.test(hex) && sameBytes(Buffer.from(hex, "hex"), hmac())
      ? { ok: true, via: name }
      : { ok: false, why: `${name} does not match the body and the secret` };
  }
  const gitlab = header(headers, "x-gitlab-token");
  if (gitlab !== undefined)
    return sameBytes(Buffer.from(gitlab), Buffer.from(secret))
      ? { ok: true, via: "X-Gitlab-Token" }
      : { ok: false, why: "X-Gitlab-Token is not the secret" };
  return {
    ok: false,
    why: "no signature (X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token) and a secret is configured",
  };
}

/** The ref a push payload names (GitHub, Gitea and GitLab all send `ref`), if it is one. */
export function pushedRef(body: Buffer, contentType: string | undefined): string | undefined {
  let text = body.toString("utf8");
  // GitHub's "application/x-www-form-urlencoded" delivery: the JSON is the `payload` field.
  if (/x-www-form-urlencoded/i.test(contentType ?? "")) text = new URLSearchParams(text).get("payload") ?? "";
  try {
    const ref = (JSON.parse(text) as { ref?: unknown }).ref;
    return typeof ref === "string" ? ref : undefined;
  } catch {
    return undefined;
  }
}

export const MAX_WEBHOOK_BODY = 1024 * 1024;

/**
 * The request handler: 202 when a fetch was asked for, 200 when the push is for another branch,
 * 401 when the secret is not proven, 405 for other methods, 413 for a body over 1 MiB.
 */
export function webhookHandler(opts: {
  branch: string;
  secret: () => string | undefined;
  trigger: (why: string) => void;
}): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const reply = (code: number, text: string) => {
      res.writeHead(code, { "content-type": "text/plain" });
      res.end(`${text}\n`);
    };
    if (req.method !== "POST") return reply(405, "POST a push event here");
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_WEBHOOK_BODY) tooBig = true;
      else chunks.push(c);
    });
    req.on("error", () => reply(400, "cannot read the request"));
    req.on("end", () => {
      if (tooBig) return reply(413, `body over ${MAX_WEBHOOK_BODY} bytes`);
      const body = Buffer.concat(chunks);
      const verdict = verifyWebhook(req.headers, body, opts.secret());
      if (!verdict.ok) return reply(401, verdict.why);
      const ref = pushedRef(body, req.headers["content-type"]);
      const ours = `refs/heads/${opts.branch}`;
      if (ref !== undefined && ref !== ours) return reply(200, `ignored: a push to ${ref}, not ${ours}`);
      opts.trigger("webhook");
      reply(202, "fetching");
    });
  };
}
