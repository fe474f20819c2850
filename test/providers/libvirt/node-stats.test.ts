/**
 * nodeStats on the wire, against a fake libvirtd that checks the arguments as
 * remote_protocol.x lays them out: NodeGetCPUStats (int cpuNum, int nparams, unsigned flags) and
 * NodeGetMemoryStats (int nparams, int cellNum, unsigned flags: the other order), the whole host
 * (-1), and libvirt's two-step convention (nparams 0 answers only the count; asked with it, the
 * fields, padded with empty ones when the host has fewer, as libvirt's server pads them). The
 * expected figures are written out by hand. The real daemon's answers are checked by the
 * provider contract (test/providers/contract.ts) on the test bed.
 */
import { afterEach, describe, expect, it } from "vitest";
import { LibvirtProvider } from "../../../src/providers/libvirt/provider.js";
import { MessageStatus, Proc } from "../../../src/providers/libvirt/rpc/protocol.js";
import type { XdrWriter } from "../../../src/providers/libvirt/rpc/xdr.js";
import { isProviderError } from "../../../src/providers/types.js";
import { startFakeDaemon } from "./rpc/fake-daemon.js";

const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const s of stops.splice(0).reverse()) await s();
});

type Fields = [string, number][];

/** A fake host with these CPU (ns) and memory (KiB) fields; records every stats call's arguments. */
async function host(cpu: Fields, mem: Fields) {
  const calls: { proc: "cpu" | "memory"; nparams: number; which: number; flags: number }[] = [];
  const answer = (fields: Fields, nparams: number) => (w: XdrWriter) => {
    if (nparams === 0) {
      w.uint(0).int(fields.length);
      return;
    }
    // libvirt's server sends as many entries as asked, the host's first, then empty ones; nparams 0.
    w.uint(nparams);
    for (let i = 0; i < nparams; i++) {
      const f = fields[i];
      w.string(f ? f[0] : "").uhyper(f ? f[1] : 0);
    }
    w.int(0);
  };
  const d = await startFakeDaemon({
    onCall: (h, body, s) => {
      if (h.procedure === Proc.NodeGetCPUStats) {
        const which = body.int();
        const nparams = body.int();
        calls.push({ proc: "cpu", which, nparams, flags: body.uint() });
        s.send(s.reply(h, MessageStatus.Ok, answer(cpu, nparams)));
      } else if (h.procedure === Proc.NodeGetMemoryStats) {
        const nparams = body.int();
        const which = body.int();
        calls.push({ proc: "memory", which, nparams, flags: body.uint() });
        s.send(s.reply(h, MessageStatus.Ok, answer(mem, nparams)));
      } else {
        s.send(
          s.reply(h, MessageStatus.Error, (w) =>
            w
              .int(3)
              .int(10)
              .optString("unsupported")
              .int(2)
              .uint(0)
              .uint(0)
              .uint(0)
              .uint(0)
              .int(0)
              .int(0)
              .uint(0),
          ),
        );
      }
    },
  });
  stops.push(() => d.stop());
  const p = new LibvirtProvider(d.uri, { keepaliveIntervalMs: 0 });
  stops.push(() => p.close());
  await p.connect();
  return { p, calls };
}

const LINUX_CPU: Fields = [
  ["kernel", 2_000_000_000],
  ["user", 5_000_000_000],
  ["idle", 90_000_000_000],
  ["iowait", 300_000_000],
];
const LINUX_MEM: Fields = [
  ["total", 16_000_000],
  ["free", 4_000_000],
  ["buffers", 500_000],
  ["cached", 3_000_000],
];

describe("nodeStats over libvirt's remote protocol", () => {
  it("asks the count, then the fields, for all CPUs and all cells, and reads them", async () => {
    const { p, calls } = await host(LINUX_CPU, LINUX_MEM);
    expect(await p.nodeStats()).toEqual({
      cpu: { userNs: 5_000_000_000, kernelNs: 2_000_000_000, idleNs: 90_000_000_000, iowaitNs: 300_000_000 },
      memory: {
        totalBytes: 16_000_000 * 1024,
        freeBytes: 4_000_000 * 1024,
        buffersBytes: 500_000 * 1024,
        cachedBytes: 3_000_000 * 1024,
      },
    });
    expect(calls.filter((c) => c.proc === "cpu")).toEqual([
      { proc: "cpu", which: -1, nparams: 0, flags: 0 },
      { proc: "cpu", which: -1, nparams: 4, flags: 0 },
    ]);
    expect(calls.filter((c) => c.proc === "memory")).toEqual([
      { proc: "memory", which: -1, nparams: 0, flags: 0 },
      { proc: "memory", which: -1, nparams: 4, flags: 0 },
    ]);
  });

  it("takes a host's fields in any order and a missing one as 0", async () => {
    const { p } = await host(
      [
        ["idle", 7],
        ["user", 3],
      ],
      [
        ["free", 1],
        ["total", 2],
      ],
    );
    expect(await p.nodeStats()).toEqual({
      cpu: { userNs: 3, kernelNs: 0, idleNs: 7, iowaitNs: 0 },
      memory: { totalBytes: 2048, freeBytes: 1024, buffersBytes: 0, cachedBytes: 0 },
    });
  });

  it("a host without idle time cannot be measured: Unsupported, naming the fields it has", async () => {
    const { p } = await host([["utilization", 40]], LINUX_MEM);
    const err = await p.nodeStats().catch((e: unknown) => e);
    expect(isProviderError(err, "Unsupported")).toBe(true);
    expect(String(err)).toContain("no idle CPU time (CPU fields: utilization;");
  });
});
