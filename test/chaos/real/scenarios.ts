/**
 * The real-bed chaos scenarios: user actions and faults, in seeded order and timing. Every action
 * goes through ctx.act (which may SIGKILL the controller 0-3 s later and restart it); the harness
 * stops the faults at the end and checks the invariants (harness.ts).
 */
import { execFileSync } from "node:child_process";
import type { Ctx, Scenario } from "./harness.js";
import { domainOf, type VMDecl } from "./manifests.js";
import { scanQemus } from "./watcher.js";

const tiny = (name: string, extra: Partial<VMDecl> = {}): VMDecl => ({
  name,
  runStrategy: "Always",
  cpu: 1,
  memoryMiB: 64,
  ...extra,
});

const four = (ctx: Ctx) => {
  for (const n of ["a", "b", "c", "d"]) ctx.m.writeVM(tiny(n));
};

/** The host running the most guests now (from /proc), or a seeded one. */
function busiestHost(ctx: Ctx) {
  const counts = new Map<string, number>();
  for (const hs of ctx.running().values()) for (const h of hs) counts.set(h, (counts.get(h) ?? 0) + 1);
  const best = [...counts.entries()].sort((x, y) => y[1] - x[1])[0]?.[0];
  return ctx.bed.hosts.find((h) => h.name === best) ?? ctx.pick(ctx.bed.hosts);
}

const create: Scenario = {
  name: "create",
  waitBaseline: false,
  baseline: () => undefined,
  run: async (ctx) => {
    const n = 4 + Math.floor(ctx.rng() * 2);
    for (let i = 0; i < n; i++) await ctx.act(`create vm-${i}`, () => ctx.m.writeVM(tiny(`vm-${i}`)));
  },
};

const recreate: Scenario = {
  name: "recreate",
  baseline: four,
  run: async (ctx) => {
    const rounds = 1 + Math.floor(ctx.rng() * 2);
    for (let r = 0; r < rounds; r++) {
      let removed: VMDecl[] = [];
      await ctx.act("remove every VM file", () => {
        removed = ctx.m.removeAllVMFiles();
      });
      await ctx.pause(0, 3);
      // Written again as they were, or (seeded) pinned to another host than the one running it:
      // its disk is then made again through another host of the shared pool.
      const where = ctx.running();
      await ctx.act("write every VM file again", () => {
        for (const v of removed) {
          const now = where.get(domainOf(v.name))?.[0];
          const others = ctx.bed.hosts.filter((h) => h.name !== now);
          ctx.m.writeVM(
            ctx.rng() < 0.5
              ? { ...v, extra: { placement: { hostSelector: { "chaos/host": ctx.pick(others).name } } } }
              : { ...v, extra: {} },
          );
        }
      });
    }
  },
};

const edit: Scenario = {
  name: "edit",
  baseline: four,
  run: async (ctx) => {
    for (let i = 0; i < 3; i++) {
      const v = ctx.pick([...ctx.m.decl.vms.values()]);
      const change = ctx.pick(["memory", "cpu", "runStrategy"] as const);
      const next: VMDecl =
        change === "memory"
          ? { ...v, memoryMiB: v.memoryMiB === 64 ? 96 : 64 }
          : change === "cpu"
            ? { ...v, cpu: v.cpu === 1 ? 2 : 1 }
            : { ...v, runStrategy: v.runStrategy === "Always" ? "Halted" : "Always" };
      await ctx.act(`edit ${v.name}: ${change}`, () => ctx.m.writeVM(next));
    }
  },
};

const poweroff: Scenario = {
  name: "poweroff",
  baseline: four,
  run: async (ctx) => {
    const h = busiestHost(ctx);
    await ctx.act(`power off ${h.name}`, () => void h.switchPower("off"));
    await ctx.pause(1, 8);
    await ctx.act(`power on ${h.name}`, () => void h.switchPower("on"));
  },
};

const partition: Scenario = {
  name: "partition",
  baseline: four,
  run: async (ctx) => {
    const h = busiestHost(ctx);
    await ctx.act(`cut ${h.name}'s link`, () => h.linkDown());
    await ctx.pause(0.5, 8);
    await ctx.act(`heal ${h.name}'s link`, () => h.linkUp());
    // Fenced meanwhile (its power switch turned it off): the operator turns it on again.
    if (!h.poweredOn()) await ctx.act(`power on fenced ${h.name}`, () => void h.switchPower("on"));
  },
};

const libvirtd: Scenario = {
  name: "libvirtd",
  baseline: four,
  run: async (ctx) => {
    const h = busiestHost(ctx);
    await ctx.act(`kill libvirtd on ${h.name}`, () => h.killDaemon());
    await ctx.pause(1, 6);
    await ctx.act(`start libvirtd on ${h.name}`, () => h.startDaemon());
  },
};

const drain: Scenario = {
  name: "drain",
  baseline: four,
  run: async (ctx) => {
    const h = busiestHost(ctx);
    const decl = ctx.m.decl.hosts.find((x) => x.host === h);
    if (!decl) throw new Error("no such host");
    await ctx.act(`maintenance on ${h.name}`, () => {
      decl.maintenance = true;
      ctx.m.writeHosts();
    });
    await ctx.pause(2, 10);
    if (ctx.rng() < 0.5)
      await ctx.act(`maintenance off ${h.name}`, () => {
        decl.maintenance = false;
        ctx.m.writeHosts();
      });
  },
};

/** The host's memory as its libvirtd reports it (`virsh nodeinfo`), which placement counts from. */
function libvirtMemoryBytes(uri: string): number {
  const out = execFileSync("virsh", ["-c", uri, "nodeinfo"], { encoding: "utf8" });
  const kib = /Memory size:\s+(\d+)\s+KiB/.exec(out)?.[1];
  if (!kib) throw new Error(`virsh nodeinfo: no memory size in ${out}`);
  return Number(kib) * 1024;
}

const consolidate: Scenario = {
  name: "consolidate",
  args: ["--consolidate-interval", "1000"],
  baseline: (ctx) => {
    // About 1 GiB for VMs on each host, so room is scarce enough for power-on to be needed.
    for (const h of ctx.m.decl.hosts)
      h.reservedMemory = libvirtMemoryBytes(h.host.unixUri) - 1024 * 1024 ** 2;
    for (const n of ["a", "b", "c"]) ctx.m.writeVM(tiny(n, { memoryMiB: 256 }));
  },
  run: async (ctx) => {
    ctx.powerManaged = true;
    await ctx.act("allow power-off on every host", () => {
      for (const h of ctx.m.decl.hosts) h.allowPowerOff = true;
      ctx.m.writeHosts();
    });
    // Consolidation empties one host by live migration and switches it off: kills meanwhile.
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline && ctx.bed.hosts.every((h) => h.poweredOn())) {
      await ctx.pause(1, 4);
      await ctx.act("(kill while consolidating)", () => undefined);
    }
    ctx.log(
      `hosts off: ${
        ctx.bed.hosts
          .filter((h) => !h.poweredOn())
          .map((h) => h.name)
          .join(",") || "none"
      }`,
    );
    await ctx.act("add 4 x 512 MiB VMs (a host must be switched on)", () => {
      for (let i = 0; i < 4; i++) ctx.m.writeVM(tiny(`big${i}`, { memoryMiB: 512 }));
    });
    await ctx.pause(1, 4);
    await ctx.act("(kill while powering on)", () => undefined);
  },
};

const snapshot: Scenario = {
  name: "snapshot",
  baseline: (ctx) => {
    for (const n of ["a", "b", "c"]) ctx.m.writeVM(tiny(n));
  },
  run: async (ctx) => {
    await ctx.act("snapshot s1 of a", () => ctx.m.writeSnapshot("s1", "a"));
    await ctx.act("snapshot s2 of b", () => ctx.m.writeSnapshot("s2", "b"));
    await ctx.pause(0, 3);
    await ctx.act("snapshot s3 of a", () => ctx.m.writeSnapshot("s3", "a"));
    // A restore names a snapshot that exists: wait until s1 is in a's disk (qemu-img).
    const taken = await ctx.until(
      async () => (await ctx.bed.snapshotTags("default_a-root.qcow2"))?.includes("s1") ?? false,
      90_000,
    );
    if (!taken) throw new Error("s1 never appeared in a's disk");
    await ctx.act("restore r1 from s1", () => ctx.m.writeRestore("r1", "s1"));
    await ctx.pause(0, 3);
    await ctx.act("snapshot s4 of c", () => ctx.m.writeSnapshot("s4", "c"));
  },
};

const crashloop: Scenario = {
  name: "crashloop",
  baseline: (ctx) => {
    ctx.m.writeVM(tiny("a"));
    ctx.m.writeVM(
      tiny("cl", {
        extra: {
          availability: {
            restartBackoff: { initialSeconds: 1, maxSeconds: 2 },
            crashLoopThreshold: 2,
            crashLoopWindowSeconds: 300,
            onCrashLoop: "RestoreLatestSnapshot",
          },
        },
      }),
    );
    ctx.m.writeSnapshot("cl-good", "cl");
  },
  run: async (ctx) => {
    for (let i = 0; i < 2; i++) {
      const up = await ctx.until(
        () => scanQemus(ctx.bed.hosts).some((q) => q.guest === domainOf("cl")),
        60_000,
      );
      if (!up) throw new Error(`cl did not run again before crash ${i + 1}`);
      await ctx.pause(0.5, 2);
      await ctx.act(`crash cl's QEMU (${i + 1})`, () => {
        for (const q of scanQemus(ctx.bed.hosts).filter((x) => x.guest === domainOf("cl")))
          try {
            process.kill(q.pid, "SIGKILL");
          } catch {}
      });
    }
  },
  check: async (ctx) => {
    const restores = ctx
      .view()
      .filter(
        (r) =>
          r.kind === "VirtualMachineRestore" && r.metadata.labels?.["virtwarden.io/crashloop-of"] === "cl",
      );
    if (restores.length === 1 && restores[0]?.status?.phase === "Succeeded") return [];
    return [
      `crash loop of cl: ${restores.length} restores (${restores.map((r) => `${r.metadata.name} ${r.status?.phase}`).join(", ")}), want exactly one, Succeeded`,
    ];
  },
};

export const SCENARIOS: Scenario[] = [
  create,
  recreate,
  edit,
  poweroff,
  partition,
  libvirtd,
  drain,
  consolidate,
  snapshot,
  crashloop,
];
