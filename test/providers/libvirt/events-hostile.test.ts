/**
 * Domain events from a hostile daemon (a fake on 127.0.0.1): a body with bytes left over, a
 * domain without a name, one event's body under another event's procedure, a truncated body,
 * and events for callbacks we never registered. None may become a DomainEvent; a body that does
 * not decode exactly closes the connection as a protocol error (the client's policy), an
 * unknown callback is dropped and logged. Each case ends with a well-formed event of ours, so
 * "no event" is not just "nothing arrived yet".
 */
import { afterEach, describe, expect, it } from "vitest";
import { LibvirtProvider } from "../../../src/providers/libvirt/provider.js";
import {
  EventId,
  MessageStatus,
  MessageType,
  Proc,
  REMOTE_PROGRAM,
} from "../../../src/providers/libvirt/rpc/protocol.js";
import { XdrWriter } from "../../../src/providers/libvirt/rpc/xdr.js";
import type { DomainEvent, ProviderHealth } from "../../../src/providers/types.js";
import { eventuallyWith } from "../../support/eventually.js";
import { rawFrame, type Session, startFakeDaemon } from "./rpc/fake-daemon.js";

const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

/** Callback ids the fake hands out: 10 + virDomainEventID, so each event type has its own. */
const cb = (eventId: number) => 10 + eventId;
const UUID = Buffer.from("00112233445566778899aabbccddeeff", "hex");

function event(procedure: number, body: Buffer): Buffer {
  return rawFrame(
    {
      program: REMOTE_PROGRAM,
      version: 1,
      procedure,
      type: MessageType.Message,
      serial: 0,
      status: MessageStatus.Ok,
    },
    body,
  );
}

/** remote_domain_event_callback_lifecycle_msg, by hand. */
function lifecycle(opts: { callbackId?: number; name?: string; event?: number; tail?: Buffer } = {}): Buffer {
  const w = new XdrWriter();
  w.int(opts.callbackId ?? cb(EventId.Lifecycle))
    .string(opts.name ?? "default_web")
    .fixedOpaque(UUID, 16)
    .int(7)
    .int(opts.event ?? 2) // started
    .int(0); // booted
  return Buffer.concat([w.bytes(), opts.tail ?? Buffer.alloc(0)]);
}

async function connected() {
  let session: Session | undefined;
  const d = await startFakeDaemon({ onReady: (s) => (session = s), eventCallbackId: cb });
  stops.push(() => d.stop());
  const warnings: string[] = [];
  const p = new LibvirtProvider(d.uri, {
    keepaliveIntervalMs: 0,
    log: { warn: (f, m) => warnings.push(`${m} ${JSON.stringify(f)}`) },
  });
  stops.push(() => p.close());
  const events: DomainEvent[] = [];
  p.onDomainEvent((e) => events.push(e));
  const health: ProviderHealth[] = [];
  p.onHealthChange((h) => health.push(h));
  await p.connect();
  return { p, s: session as Session, events, health, warnings };
}

const eventually = eventuallyWith({ timeoutMs: 10_000, everyMs: 5 });

describe("garbage domain events from the daemon", () => {
  it("a well-formed event of ours is delivered (the baseline the cases below depart from)", async () => {
    const { s, events } = await connected();
    s.send(event(Proc.DomainEventCallbackLifecycle, lifecycle()));
    const reboot = new XdrWriter().int(cb(EventId.Reboot)).string("default_db").fixedOpaque(UUID, 16).int(3);
    s.send(event(Proc.DomainEventCallbackReboot, reboot.bytes()));
    await eventually(() => events.length === 2, "two events");
    expect(events.map((e) => [e.domain, e.type, e.detail, e.uuid, e.host])).toEqual([
      ["default_web", "started", "booted", "00112233-4455-6677-8899-aabbccddeeff", "127.0.0.1"],
      ["default_db", "reboot", "", "00112233-4455-6677-8899-aabbccddeeff", "127.0.0.1"],
    ]);
  });

  const closing: [string, number, () => Buffer, RegExp][] = [
    [
      "a 'started' lifecycle body with 8 bytes left over",
      Proc.DomainEventCallbackLifecycle,
      () => lifecycle({ tail: Buffer.alloc(8, 0x41) }),
      /8 bytes left over/,
    ],
    [
      "a 'started' event for a domain without a name",
      Proc.DomainEventCallbackLifecycle,
      () => lifecycle({ name: "" }),
      /without a name/,
    ],
    [
      "a 'started' lifecycle body sent as a reboot event",
      Proc.DomainEventCallbackReboot,
      () => lifecycle({ callbackId: cb(EventId.Reboot) }),
      /8 bytes left over/,
    ],
    [
      "a watchdog event cut before its action",
      Proc.DomainEventCallbackWatchdog,
      () =>
        new XdrWriter().int(cb(EventId.Watchdog)).string("default_web").fixedOpaque(UUID, 16).int(7).bytes(),
      /undecodable event DomainEventCallbackWatchdog/,
    ],
    [
      "an I/O error event whose device string runs past the body",
      Proc.DomainEventCallbackIOError,
      () =>
        new XdrWriter()
          .int(cb(EventId.IOError))
          .string("default_web")
          .fixedOpaque(UUID, 16)
          .int(7)
          .string("/dev/sda")
          .uint(4096)
          .bytes(),
      /undecodable event DomainEventCallbackIOError/,
    ],
  ];
  it.each(closing)("%s: no event, the connection closed as a protocol error", async (_n, proc, body, why) => {
    const { p, s, events, health } = await connected();
    s.send(event(proc, body()));
    // Would be delivered were the connection still up: it must not be.
    s.send(event(Proc.DomainEventCallbackLifecycle, lifecycle({ name: "after" })));
    await s.closed;
    expect(events).toEqual([]);
    expect(p.health().connected).toBe(false);
    const last = health.at(-1);
    expect(last?.connected).toBe(false);
    expect(last?.error).toMatch(/127\.0\.0\.1:\d+\/system: protocol error from the daemon/);
    expect(last?.error).toMatch(why);
  });

  it("events for callbacks we never registered are dropped and logged; the connection stays", async () => {
    const { p, s, events, warnings } = await connected();
    s.send(event(Proc.DomainEventCallbackLifecycle, lifecycle({ callbackId: 99, name: "stranger" })));
    // The reboot callback's id on a lifecycle event: not the lifecycle callback.
    s.send(
      event(
        Proc.DomainEventCallbackLifecycle,
        lifecycle({ callbackId: cb(EventId.Reboot), name: "crossed" }),
      ),
    );
    s.send(event(Proc.DomainEventCallbackLifecycle, lifecycle({ name: "ours" })));
    await eventually(() => events.length >= 1, "the well-formed event");
    expect(events.map((e) => e.domain)).toEqual(["ours"]);
    expect(p.health().connected).toBe(true);
    expect(warnings.filter((w) => /event dropped/.test(w))).toHaveLength(2);
  });
});
