/**
 * The unchanged Runtime against two fake libvirt hosts (fake daemons on 127.0.0.1: real libvirt
 * never serves XML we cannot read). Host A carries an admin's domain that is not XML at all and
 * two of ours whose XML we cannot read: "db", assigned to A, and "cache", whose status was lost
 * (a controller restart) although its copy runs on A. Host B is empty and healthy.
 * - A stays Ready: one unreadable domain must not fail its listing, which the Host reconciler
 *   counts as a missed heartbeat.
 * - Neither VM is ever defined or started anywhere (a copy of each runs on A): "db" fails its
 *   reconcile with an error naming the host and the domain, "cache" is adopted on A.
 * - A third VM with no domain anywhere is defined on some host: the fakes do take a define, so
 *   the silence above is not a broken setup.
 */
import { Writable } from "node:stream";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Runtime } from "../../src/cli/runtime.js";
import { createLibvirtProviderFactory } from "../../src/providers/libvirt/index.js";
import { type Header, MessageStatus, Proc } from "../../src/providers/libvirt/rpc/protocol.js";
import type { XdrReader, XdrWriter } from "../../src/providers/libvirt/rpc/xdr.js";
import { type Session, startFakeDaemon } from "../providers/libvirt/rpc/fake-daemon.js";
import { eventuallyWith } from "../support/eventually.js";
import { hostResource, vm } from "../support/fixtures.js";
import { MemoryStore } from "../support/memory-store.js";

const NS = "https://virtwarden.io/xmlns/domain/v1";
const mark = (name: string) =>
  `<metadata><vw:owner xmlns:vw="${NS}" uid="uid-default-${name}" kind="VirtualMachine" namespace="default" name="${name}" generation="1" specHash="old"/></metadata>`;

/** remote_error: code, domain, message, level, dom, str1..3, int1, int2, net. */
const libvirtError = (code: number, message: string) => (w: XdrWriter) =>
  w.int(code).int(10).optString(message).int(2).uint(0).uint(0).uint(0).uint(0).int(0).int(0).uint(0);

/** A fake libvirtd answering what the Host and VM reconcilers ask of a host, serving `doms`. */
async function fakeHost(doms: Map<string, string>) {
  const calls: { procedure: number; arg?: string }[] = [];
  const names = () => [...doms.keys()];
  const uuid = (name: string) => {
    const b = Buffer.alloc(16);
    b.write(name.padEnd(16, "-").slice(0, 16));
    return b;
  };
  const reply = (h: Header, s: Session, body?: (w: XdrWriter) => void) =>
    s.send(s.reply(h, MessageStatus.Ok, body));
  const fail = (h: Header, s: Session, code: number, msg: string) =>
    s.send(s.reply(h, MessageStatus.Error, libvirtError(code, msg)));
  const d = await startFakeDaemon({
    onCall: (h, body: XdrReader, s) => {
      const domArg = () => {
        const n = body.string();
        calls.push({ procedure: h.procedure, arg: n });
        return n;
      };
      switch (h.procedure) {
        case Proc.ConnectGetHostname:
          return reply(h, s, (w) => w.string("fake"));
        case Proc.NodeGetInfo:
          return reply(h, s, (w) => {
            for (let i = 0; i < 32; i++) w.int(i < 6 ? "x86_64".charCodeAt(i) : 0);
            w.uhyper(16 * 1024 * 1024)
              .int(8)
              .int(2000)
              .int(1)
              .int(1)
              .int(8)
              .int(1);
          });
        case Proc.NodeGetFreeMemory:
          return reply(h, s, (w) => w.uhyper(12 * 1024 ** 3));
        case Proc.ConnectGetVersion:
        case Proc.ConnectGetLibVersion:
          return reply(h, s, (w) => w.uhyper(9_000_000));
        case Proc.ConnectListAllDomains:
          calls.push({ procedure: h.procedure });
          return reply(h, s, (w) => {
            w.uint(doms.size);
            for (const n of names()) w.string(n).fixedOpaque(uuid(n), 16).int(1);
            w.uint(doms.size);
          });
        case Proc.DomainLookupByName: {
          const n = domArg();
          if (!doms.has(n)) return fail(h, s, 42, `Domain not found: no domain with matching name '${n}'`);
          return reply(h, s, (w) => w.string(n).fixedOpaque(uuid(n), 16).int(1));
        }
        case Proc.DomainGetState:
          domArg();
          return reply(h, s, (w) => w.int(1).int(1)); // running, booted
        case Proc.DomainGetXMLDesc:
          return reply(h, s, (w) => w.string(doms.get(domArg()) ?? ""));
        case Proc.DomainIsPersistent:
          domArg();
          return reply(h, s, (w) => w.int(1));
        case Proc.ConnectListAllStoragePools:
        case Proc.ConnectListAllNetworks:
          return reply(h, s, (w) => w.uint(0).uint(0));
        case Proc.DomainDefineXMLFlags: {
          const xml = body.string();
          calls.push({ procedure: h.procedure, arg: /<name>([^<]*)<\/name>/.exec(xml)?.[1] ?? "?" });
          return fail(h, s, 1, "this fake defines nothing");
        }
        default:
          calls.push({ procedure: h.procedure });
          return fail(h, s, 3, `this fake does not do procedure ${h.procedure}`);
      }
    },
  });
  return { ...d, calls };
}

const MUTATING = new Set<number>([
  Proc.DomainDefineXMLFlags,
  Proc.DomainCreateWithFlags,
  Proc.DomainDestroy,
  Proc.DomainUndefineFlags,
  Proc.DomainShutdown,
  Proc.DomainMigratePerform3Params,
  Proc.StorageVolCreateXML,
]);

let a: Awaited<ReturnType<typeof fakeHost>>;
let b: Awaited<ReturnType<typeof fakeHost>>;
let rt: Runtime;
const store = new MemoryStore();
const logLines: Record<string, unknown>[] = [];

const eventually = eventuallyWith({ timeoutMs: 60_000, everyMs: 50 });

beforeAll(async () => {
  a = await fakeHost(
    new Map([
      ["admin-hostile", "\u0000\u0001<<>>&&&"],
      [
        "default_db",
        `<domain><name>default_db</name>${mark("db")}<memory unit='furlongs'>1</memory></domain>`,
      ],
      [
        "default_cache",
        `<domain><name>default_cache</name>${mark("cache")}<vcpu current='4'>2</vcpu><memory>65536</memory></domain>`,
      ],
    ]),
  );
  b = await fakeHost(new Map());
  store.apply(hostResource("host-a", a.uri));
  store.apply(hostResource("host-b", b.uri));
  const small = { resources: { cpu: 1, memory: "64Mi" } };
  store.apply(vm("db").noFinalizer().spec(small).onHost("host-a").phase("Running").build());
  store.apply(vm("cache").noFinalizer().spec(small).build());
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split("\n")) if (line) logLines.push(JSON.parse(line));
      done();
    },
  });
  rt = new Runtime({
    store,
    providerFactory: createLibvirtProviderFactory({ keepaliveIntervalMs: 0 }),
    registry: new Registry(),
    logger: pino({ level: "debug" }, sink),
    heartbeatIntervalMs: 300,
    inventoryIntervalMs: 600,
  });
  await rt.start();
}, 60_000);

afterAll(async () => {
  await rt?.stop(2000);
  await a?.stop();
  await b?.stop();
}, 30_000);

describe("a host carrying domains whose XML cannot be read", () => {
  it("stays Ready, and no copy of our unreadable VMs is defined or started anywhere", async () => {
    await eventually(
      () =>
        store.get("Host", "host-a")?.status?.phase === "Ready" &&
        store.get("Host", "host-b")?.status?.phase === "Ready",
      "both hosts Ready",
    );
    // "cache" lost its status: its running copy on host-a is adopted, not started again on host-b.
    await eventually(
      () => store.get("VirtualMachine", "default/cache")?.status?.host === "host-a",
      "cache adopted",
    );
    // "db" is reported: the reconcile fails naming the host and the domain, and retries.
    await eventually(
      () =>
        logLines.some((l) =>
          /127\.0\.0\.1: getDomainSpec: domain default_db: its XML cannot be read/.test(
            String(l.err ?? l.msg ?? ""),
          ),
        ),
      "db's reconcile error logged",
    );
    await eventually(
      () =>
        logLines.some((l) =>
          /127\.0\.0\.1: getDomainSpec: domain default_cache: its XML cannot be read/.test(
            String(l.err ?? l.msg ?? ""),
          ),
        ),
      "cache's reconcile error logged once adopted",
    );

    // Control: a VM with no domain anywhere is defined on one of the fakes.
    store.apply(
      vm("fresh")
        .noFinalizer()
        .spec({ resources: { cpu: 1, memory: "64Mi" } })
        .build(),
    );
    await eventually(
      () =>
        [...a.calls, ...b.calls].some(
          (c) => c.procedure === Proc.DomainDefineXMLFlags && c.arg === "default_fresh",
        ),
      "fresh defined somewhere",
    );

    // Several heartbeats later, still Ready, and nothing of db or cache was touched anywhere.
    const beats = a.calls.filter((c) => c.procedure === Proc.ConnectListAllDomains).length;
    await eventually(
      () => a.calls.filter((c) => c.procedure === Proc.ConnectListAllDomains).length >= beats + 1,
      "another listing of host-a",
    );
    expect(store.get("Host", "host-a")?.status?.phase).toBe("Ready");
    const touched = [...a.calls, ...b.calls].filter(
      (c) =>
        MUTATING.has(c.procedure) &&
        (c.arg === "default_db" || c.arg === "default_cache" || c.arg === undefined),
    );
    expect(touched).toEqual([]);
    expect(store.get("VirtualMachine", "default/db")?.status?.host).toBe("host-a");
  }, 90_000);
});
