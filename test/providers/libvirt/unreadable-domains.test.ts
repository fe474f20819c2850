/**
 * A host whose domains include some whose XML we cannot read (a fake libvirtd: real libvirt
 * never serves bad XML). A foreign one (no ownership mark) must not blind us to the other
 * guests, nor fail the listing (the Host reconciler counts a failed listing as a missed beat);
 * one of ours must be listed as present with its parse error, never dropped as if missing.
 * The expected listings are written out by hand, not derived from the parser under test.
 */
import { afterEach, describe, expect, it } from "vitest";
import { LibvirtProvider, type ProviderLog } from "../../../src/providers/libvirt/provider.js";
import { MessageStatus, Proc } from "../../../src/providers/libvirt/rpc/protocol.js";
import type { XdrReader, XdrWriter } from "../../../src/providers/libvirt/rpc/xdr.js";
import { isProviderError } from "../../../src/providers/types.js";
import { type Session, startFakeDaemon } from "./rpc/fake-daemon.js";

const NS = "https://virtwarden.io/xmlns/domain/v1";
const mark = (name: string, uid: string) =>
  `<metadata><vw:owner xmlns:vw="${NS}" uid="${uid}" kind="VirtualMachine" namespace="default" name="${name}" generation="3" specHash="h-${name}"/></metadata>`;
const good = (name: string, extra = "") =>
  `<domain type='kvm'><name>${name}</name>${extra}<memory unit='KiB'>65536</memory><vcpu>2</vcpu></domain>`;

/** name -> [XML, libvirt state number]; UUID byte 0 is the domain's index. */
function host(foreignGuests: number): Map<string, [string, number]> {
  const doms = new Map<string, [string, number]>();
  for (let i = 0; i < foreignGuests; i++) doms.set(`admin-${i}`, [good(`admin-${i}`), 1]);
  // Foreign and unreadable: not XML at all, and XML missing what a domain needs.
  doms.set("hostile-binary", ["\u0000\u0001<<>>&&&", 1]);
  doms.set("hostile-unit", [
    `<domain><name>hostile-unit</name><memory unit='parsecs'>1</memory></domain>`,
    1,
  ]);
  // Ours: readable, unreadable with a readable mark, and a mark too garbled to read.
  doms.set("default_web", [good("default_web", mark("web", "uid-web")), 1]);
  doms.set("default_db", [
    `<domain><name>default_db</name>${mark("db", "uid-db")}<memory unit='furlongs'>1</memory></domain>`,
    1,
  ]);
  doms.set("default_cache", [
    `<domain><name>default_cache</name><metadata><vw:owner xmlns:vw="${NS}" uid="uid-cache"`,
    5,
  ]);
  return doms;
}

const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

/** A fake libvirtd serving `doms` to the calls listDomains / getDomainState / getDomainSpec make. */
async function daemonServing(doms: Map<string, [string, number]>) {
  const names = [...doms.keys()];
  const uuid = (name: string) => {
    const b = Buffer.alloc(16);
    b.writeUInt32BE(names.indexOf(name) + 1, 0);
    return b;
  };
  const domName = (body: XdrReader) => body.string();
  /** remote_error: code, domain, message, level, dom, str1..3, int1, int2, net. */
  const libvirtError = (code: number, message: string) => (w: XdrWriter) =>
    w.int(code).int(10).optString(message).int(2).uint(0).uint(0).uint(0).uint(0).int(0).int(0).uint(0);
  const d = await startFakeDaemon({
    onCall: (h, body, s: Session) => {
      switch (h.procedure) {
        case Proc.ConnectListAllDomains:
          s.send(
            s.reply(h, MessageStatus.Ok, (w) => {
              w.uint(names.length);
              for (const n of names) w.string(n).fixedOpaque(uuid(n), 16).int(-1);
              w.uint(names.length);
            }),
          );
          return;
        case Proc.DomainLookupByName: {
          const n = domName(body);
          if (!doms.has(n)) {
            s.send(s.reply(h, MessageStatus.Error, libvirtError(42, `Domain not found: ${n}`)));
            return;
          }
          s.send(s.reply(h, MessageStatus.Ok, (w) => w.string(n).fixedOpaque(uuid(n), 16).int(-1)));
          return;
        }
        case Proc.DomainGetState: {
          const st = doms.get(domName(body))?.[1] ?? 0;
          s.send(s.reply(h, MessageStatus.Ok, (w) => w.int(st).int(1)));
          return;
        }
        case Proc.DomainGetXMLDesc: {
          const xml = doms.get(domName(body))?.[0] ?? "";
          s.send(s.reply(h, MessageStatus.Ok, (w) => w.string(xml)));
          return;
        }
        case Proc.DomainIsPersistent:
          s.send(s.reply(h, MessageStatus.Ok, (w) => w.int(1)));
          return;
        default:
          s.send(s.reply(h, MessageStatus.Error, libvirtError(3, "unsupported")));
      }
    },
  });
  stops.push(() => d.stop());
  return d;
}

function recordingLog() {
  const warnings: { fields: Record<string, unknown>; message: string }[] = [];
  const log: ProviderLog = { warn: (fields, message) => warnings.push({ fields, message }) };
  return { log, warnings };
}

describe("listDomains with domains whose XML cannot be read", () => {
  it("leaves out unreadable foreign domains, lists 500 other guests, and lists ours with the error", async () => {
    const d = await daemonServing(host(500));
    const { log, warnings } = recordingLog();
    const p = new LibvirtProvider(d.uri, { keepaliveIntervalMs: 0, log });
    stops.push(() => p.close());
    await p.connect();

    const first = await p.listDomains();
    const second = await p.listDomains();
    for (const listing of [first, second]) {
      const names = listing.map((x) => x.name).sort();
      const expected = [
        ...Array.from({ length: 500 }, (_, i) => `admin-${i}`),
        "default_cache",
        "default_db",
        "default_web",
      ].sort();
      expect(names).toEqual(expected);
      const byName = new Map(listing.map((x) => [x.name, x]));
      expect(byName.get("admin-7")).toMatchObject({ vcpus: 2, memoryBytes: 65536 * 1024 });
      expect(byName.get("admin-7")?.ownership).toBeUndefined();
      expect(byName.get("admin-7")?.parseError).toBeUndefined();
      expect(byName.get("default_web")?.parseError).toBeUndefined();
      expect(byName.get("default_web")?.ownership).toMatchObject({ namespace: "default", name: "web" });

      const db = byName.get("default_db");
      expect(db?.ownership).toEqual({
        uid: "uid-db",
        kind: "VirtualMachine",
        namespace: "default",
        name: "db",
        generation: 3,
        specHash: "h-db",
      });
      expect(db?.state.state).toBe("running");
      expect(db?.parseError).toMatch(/127\.0\.0\.1.*domain default_db.*furlongs/);
      expect(db).toMatchObject({ vcpus: 0, memoryBytes: 0, persistent: true });

      // The mark is there but cannot be read: listed (present, shut off), with no owner to key on.
      const cache = byName.get("default_cache");
      expect(cache?.ownership).toBeUndefined();
      expect(cache?.state.state).toBe("shutoff");
      expect(cache?.parseError).toMatch(/127\.0\.0\.1.*domain default_cache.*not well-formed/);
    }

    // Once per name, at warn, naming host and domain; every omission counted.
    const skipped = warnings.filter((w) => /foreign domain left out/.test(w.message));
    expect(skipped.map((w) => w.fields.domain).sort()).toEqual(["hostile-binary", "hostile-unit"]);
    for (const w of skipped) expect(w.fields.host).toBe("127.0.0.1");
    expect(p.unreadableForeignDomains).toBe(4);
    expect(p.health().connected).toBe(true);
  });

  it("one of ours that cannot be read is an error naming host and domain, never 'missing'", async () => {
    const d = await daemonServing(host(0));
    const p = new LibvirtProvider(d.uri, { keepaliveIntervalMs: 0 });
    stops.push(() => p.close());
    await p.connect();
    expect(await p.getDomainState("default_db")).toEqual({ state: "running", reason: "booted" });
    const err = await p.getDomainSpec("default_db").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isProviderError(err, "OperationFailed")).toBe(true);
    expect((err as Error).message).toMatch(/^127\.0\.0\.1: getDomainSpec: domain default_db: .*furlongs/);
    // A domain that really is not there still reads as missing.
    expect(await p.getDomainSpec("default_nothing")).toBeUndefined();
    expect(await p.getDomainState("default_nothing")).toBeUndefined();
    expect(p.health().connected).toBe(true);
  });
});
