/**
 * bench:rpc — per-call throughput of virtwarden's libvirt RPC client against the C library
 * (python3-libvirt, Debian) and against one `virsh` process per call, side by side in one run,
 * on one libvirtd serving the test driver with 1,000 domains defined.
 *
 * Workload per domain: lookup by name + state + XML description (3 calls). Figures:
 * - ours_calls_per_s: sequential, one call at a time (comparable to python's sequential loop);
 * - ours_pipelined_calls_per_s: the same calls with up to 64 in flight (what the controller does
 *   when many reconciles run at once; the C library serialises calls per connection);
 * - python_calls_per_s: python3-libvirt, sequential;
 * - virsh_calls_per_s: `virsh -c URI domstate NAME`, one process per call (a sample of 60 calls).
 * Target (issue 4): ours >= 1.0x python, >= 50x virsh.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LibvirtApi } from "../src/providers/libvirt/rpc/api.js";
import { LibvirtClient } from "../src/providers/libvirt/rpc/client.js";
import { startTestDriverDaemon } from "../test/support/testbed/index.js";
import { type Metrics, printResult, writeResult } from "./env.js";

const DOMAINS = 1000;
const ROUNDS = 3;

const daemon = await startTestDriverDaemon();
// The test driver's state lives while a connection is open: this one holds it.
const holder = new LibvirtClient(daemon.uri, { keepaliveIntervalMs: 0 });
await holder.connect();
const api = new LibvirtApi(holder);
const names: string[] = [];
for (let i = 0; i < DOMAINS; i++) {
  const name = `bench-${i}`;
  names.push(name);
  await api.defineXML(
    `<domain type='test'><name>${name}</name><memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>`,
  );
}

async function oursSequential(): Promise<number> {
  const t0 = performance.now();
  for (const n of names) {
    const d = await api.lookupByName(n);
    await api.state(d);
    await api.xmlDesc(d);
  }
  return (names.length * 3) / ((performance.now() - t0) / 1000);
}

async function oursPipelined(): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const n = names[next++] as string;
      const d = await api.lookupByName(n);
      await Promise.all([api.state(d), api.xmlDesc(d)]);
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  return (names.length * 3) / ((performance.now() - t0) / 1000);
}

function python(): number {
  const script = join(tmpdir(), `vw-bench-rpc-${process.pid}.py`);
  writeFileSync(
    script,
    `import libvirt, sys, time
c = libvirt.open(sys.argv[1])
names = ["bench-%d" % i for i in range(${DOMAINS})]
best = 0
for _ in range(${ROUNDS}):
    t0 = time.perf_counter()
    for n in names:
        d = c.lookupByName(n)
        d.state()
        d.XMLDesc(0)
    best = max(best, len(names) * 3 / (time.perf_counter() - t0))
print(best)
`,
  );
  const out = execFileSync("/usr/bin/python3", [script, daemon.uri], { encoding: "utf8" });
  return Number(out.trim());
}

function virsh(): number {
  const sample = names.slice(0, 60);
  const t0 = performance.now();
  for (const n of sample) {
    const r = spawnSync("virsh", ["-c", daemon.uri, "domstate", n], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`virsh failed: ${r.stderr}`);
  }
  return sample.length / ((performance.now() - t0) / 1000);
}

try {
  let seq = 0;
  let pipe = 0;
  for (let i = 0; i < ROUNDS; i++) {
    seq = Math.max(seq, await oursSequential());
    pipe = Math.max(pipe, await oursPipelined());
  }
  const py = python();
  const vs = virsh();
  const round = (x: number) => Math.round(x);
  const metrics: Metrics = {
    ours_calls_per_s: { value: round(seq), unit: "calls/s" },
    ours_pipelined_calls_per_s: { value: round(pipe), unit: "calls/s" },
    python_calls_per_s: { value: round(py), unit: "calls/s" },
    virsh_calls_per_s: { value: Math.round(vs * 10) / 10, unit: "calls/s" },
    ratio_vs_python: { value: Math.round((seq / py) * 100) / 100, unit: "x" },
    ratio_pipelined_vs_python: { value: Math.round((pipe / py) * 100) / 100, unit: "x" },
    ratio_vs_virsh: { value: Math.round(seq / vs), unit: "x" },
  };
  printResult("rpc", metrics);
  console.log(
    `  written to ${writeResult("rpc", metrics, { workload: `lookup+state+XML over ${DOMAINS} test-driver domains, best of ${ROUNDS}` })}`,
  );
} finally {
  await holder.close();
  await daemon.stop();
}
