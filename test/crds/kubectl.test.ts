/**
 * What a user sees with the real client: the CRDs from crds/ applied to a real kube-apiserver
 * (test/support/kube), then `kubectl explain` and `kubectl get` as a user runs them.
 *
 * - explain prints each field's description from the CRD (issue 17: it printed
 *   `<no description>`; kubectl 1.32 prints `<empty>` for such a field, as the probe CRD shows),
 *   read back from the YAML in crds/ rather than copied into this test.
 * - the printer columns render: SnapshotPolicy's NEXT (a future time) is not `<invalid>`, which a
 *   `date` column prints for a future time (shown by a probe CRD that has one), and every short
 *   name, the unambiguous vw* ones included, resolves to its kind.
 *
 * Under CI=true a missing kube-apiserver or etcd fails the harness, never skips.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { type KubeApiServer, startKubeApiServer } from "../support/kube/apiserver.js";

const ROOT = join(import.meta.dirname, "..", "..");
let kube: KubeApiServer;

type Schema = { description?: string; properties?: Record<string, Schema>; items?: Schema };
const crdDoc = (file: string) => parse(readFileSync(join(ROOT, "crds", file), "utf8"));

/** The description crds/ gives a field path (spec.disks.source.image.clone: arrays step into items). */
function described(file: string, path: string): string {
  let s: Schema = crdDoc(file).spec.versions[0].schema.openAPIV3Schema;
  for (const part of path.split(".")) {
    const next: Schema | undefined = s.properties?.[part] ?? s.items?.properties?.[part];
    if (!next) throw new Error(`${file}: no field ${path}`);
    s = next;
  }
  if (!s.description) throw new Error(`${file}: ${path} has no description`);
  return s.description;
}

/** What kubectl 1.32 prints for a field without a description: `<empty>` (OpenAPI v3), `<no description>` (v2). */
const NO_DESCRIPTION = /<empty>|<no description>/;

const words = (s: string) => s.replace(/\s+/g, " ").trim();

/**
 * `kubectl explain`, once the API server publishes the CRDs' OpenAPI (it follows Established
 * by a moment). Waits for the document to exist, not for any particular text.
 */
async function explain(resource: string): Promise<string> {
  for (let i = 0; ; i++) {
    const r = kube.kubectl(["explain", resource], { allowFail: true });
    if (r.status === 0) return r.stdout;
    if (i >= 120) throw new Error(`kubectl explain ${resource}: ${r.stderr}`);
    await sleep(500);
  }
}

/** The DESCRIPTION block of `kubectl explain` output, its lines joined. */
function descriptionBlock(out: string): string {
  const m = /\nDESCRIPTION:\n([\s\S]*?)(\n\S[^\n]*:\n|\n*$)/.exec(out);
  if (!m?.[1]) throw new Error(`no DESCRIPTION in:\n${out}`);
  return words(m[1]);
}

beforeAll(async () => {
  kube = await startKubeApiServer();
  kube.kubectl(["apply", "-k", join(ROOT, "crds")]);
  kube.kubectl(["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"]);
}, 900_000);

afterAll(async () => {
  await kube?.stop();
});

describe("kubectl explain shows the CRDs' descriptions", () => {
  const fields: [string, string, string][] = [
    ["virtualmachine.spec.availability", "virtualmachines.yaml", "spec.availability"],
    ["virtualmachine.spec.runStrategy", "virtualmachines.yaml", "spec.runStrategy"],
    ["virtualmachine.spec.disks.source.image.clone", "virtualmachines.yaml", "spec.disks.source.image.clone"],
    [
      "virtualmachine.spec.placement.antiAffinity.selector.matchExpressions.operator",
      "virtualmachines.yaml",
      "spec.placement.antiAffinity.selector.matchExpressions.operator",
    ],
    ["virtualmachine.status.lastRecovery.failedAt", "virtualmachines.yaml", "status.lastRecovery.failedAt"],
    ["host.spec.heartbeat.missedBeats", "hosts.yaml", "spec.heartbeat.missedBeats"],
    ["host.spec.fencing.credentialsSecretRef.key", "hosts.yaml", "spec.fencing.credentialsSecretRef.key"],
    ["virtualnetwork.spec.dhcp.leases.ip", "virtualnetworks.yaml", "spec.dhcp.leases.ip"],
    ["snapshotpolicy.spec.startingDeadlineSeconds", "snapshotpolicies.yaml", "spec.startingDeadlineSeconds"],
    ["virtualmachinerestore.spec.targetHost", "virtualmachinerestores.yaml", "spec.targetHost"],
    ["virtualmachinesnapshot.status.members.state", "virtualmachinesnapshots.yaml", "status.members.state"],
  ];
  for (const [resource, file, path] of fields)
    it(`kubectl explain ${resource}`, async () => {
      const out = await explain(resource);
      expect(out).not.toMatch(NO_DESCRIPTION);
      expect(descriptionBlock(out)).toBe(words(described(file, path)));
    });

  it("the kind itself and the fields listed under it are described too", async () => {
    const out = await explain("virtualmachine.spec");
    expect(out).not.toMatch(NO_DESCRIPTION);
    const root = await explain("virtualmachine");
    expect(descriptionBlock(root)).toBe(
      words(crdDoc("virtualmachines.yaml").spec.versions[0].schema.openAPIV3Schema.description),
    );
    const all = kube.kubectl(["explain", "virtualmachine", "--recursive"]).stdout;
    expect(all).toContain("availability");
    // --recursive lists field names only; every field explained one level down is described.
    for (const field of ["spec.migration", "spec.networks", "status.migration", "status.availability"]) {
      const o = await explain(`virtualmachine.${field}`);
      expect(o, field).not.toMatch(NO_DESCRIPTION);
    }
  });
});

const policy = `apiVersion: virtwarden.io/v1alpha1
kind: SnapshotPolicy
metadata: {name: nightly, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  schedule: "30 2 * * *"
  retention: {keepLast: 3}
`;

/** Rows of `kubectl get` as header -> value maps. */
function table(out: string): Record<string, string>[] {
  const [head, ...rows] = out.trimEnd().split("\n");
  if (!head) return [];
  // Columns start where the header's words start; values are cut at those offsets.
  const starts = [...head.matchAll(/\S+/g)].map((m) => m.index ?? 0);
  const names = [...head.matchAll(/\S+/g)].map((m) => m[0]);
  return rows.map((r) =>
    Object.fromEntries(names.map((n, i) => [n, r.slice(starts[i], starts[i + 1]).trim()])),
  );
}

describe("printer columns and short names with kubectl get", () => {
  const future = new Date(Date.now() + 6 * 3600_000).toISOString().replace(/\.\d+Z$/, "Z");
  const past = new Date(Date.now() - 3600_000).toISOString().replace(/\.\d+Z$/, "Z");

  beforeAll(() => {
    kube.kubectl(["apply", "-f", "-"], { input: policy });
    kube.kubectl([
      "patch",
      "snapshotpolicy",
      "nightly",
      "--subresource=status",
      "--type=merge",
      "-p",
      JSON.stringify({ status: { nextRunTime: future, lastSuccessfulTime: past } }),
    ]);
  });

  it("SnapshotPolicy's NEXT shows the future run time, not <invalid>", () => {
    for (const name of ["snapshotpolicies", "snappol", "vwsnappol"]) {
      const out = kube.kubectl(["get", name]).stdout;
      expect(out, name).not.toContain("<invalid>");
      const [row] = table(out);
      expect(row, name).toMatchObject({
        NAME: "nightly",
        SCHEDULE: "30 2 * * *",
        NEXT: future,
      });
      expect(out).toMatch(/NAME\s+SCHEDULE\s+TYPE\s+CONSISTENCY\s+LAST\s+NEXT\s+AGE/);
      expect(out).toContain("30 2 * * *");
      // Defaults applied by the API server from the CRD show in their columns.
      expect(out).toMatch(/\bdisk\s+perVM\b/);
      // LAST is a date column of a past time: kubectl prints an age such as 59m or 60m.
      expect(row?.LAST, name).toMatch(/^\d+m$/);
    }
  });

  it("a date column would have printed <invalid> for the same future time (the probe)", async () => {
    // The same CRD under a probe group, with NEXT typed `date` as it once was.
    const crd = crdDoc("snapshotpolicies.yaml");
    crd.metadata.name = "snapshotpolicies.probe.virtwarden.io";
    crd.spec.group = "probe.virtwarden.io";
    crd.spec.names.shortNames = ["probesnappol"];
    crd.spec.names.categories = [];
    for (const c of crd.spec.versions[0].additionalPrinterColumns) if (c.name === "Next") c.type = "date";
    // And one field without its description: what explain prints then, to show the check bites.
    delete crd.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.suspend.description;
    kube.kubectl(["apply", "-f", "-"], { input: stringify(crd) });
    kube.kubectl([
      "wait",
      "--for=condition=Established",
      "crd/snapshotpolicies.probe.virtwarden.io",
      "--timeout=60s",
    ]);
    kube.kubectl(["apply", "-f", "-"], {
      input: policy.replace("virtwarden.io/v1alpha1", "probe.virtwarden.io/v1alpha1"),
    });
    kube.kubectl([
      "patch",
      "probesnappol",
      "nightly",
      "--subresource=status",
      "--type=merge",
      "-p",
      JSON.stringify({ status: { nextRunTime: future } }),
    ]);
    const [row] = table(kube.kubectl(["get", "probesnappol"]).stdout);
    expect(row?.NEXT).toBe("<invalid>");
    const bare = await explain("probesnappol.spec.suspend");
    expect(bare, bare).toMatch(/DESCRIPTION:\s+<empty>/);
    // One level up, the field list shows the missing description too.
    const parent = await explain("probesnappol.spec");
    expect(parent, parent).toMatch(NO_DESCRIPTION);
    expect(await explain("snappol.spec")).not.toMatch(NO_DESCRIPTION);
    const ours = await explain("snappol.spec.suspend");
    expect(ours).not.toMatch(NO_DESCRIPTION);
    expect(descriptionBlock(ours)).toBe(words(described("snapshotpolicies.yaml", "spec.suspend")));
  });

  it("a VirtualMachine's columns render, under every short name", () => {
    kube.kubectl(["apply", "-f", "-"], {
      input: `apiVersion: virtwarden.io/v1alpha1
kind: VirtualMachine
metadata: {name: db-0, namespace: default, labels: {app: db}}
spec: {instanceType: small}
`,
    });
    kube.kubectl([
      "patch",
      "vm",
      "db-0",
      "--subresource=status",
      "--type=merge",
      "-p",
      JSON.stringify({
        status: {
          phase: "Running",
          host: "kvm-01",
          restartCount: 2,
          conditions: [
            {
              type: "Ready",
              status: "True",
              reason: "Running",
              message: "running on kvm-01",
              lastTransitionTime: past,
            },
          ],
        },
      }),
    ]);
    for (const name of ["virtualmachines", "vm", "vms", "vwvm", "vwvms"]) {
      const [row] = table(kube.kubectl(["get", name]).stdout);
      expect(row, name).toMatchObject({
        NAME: "db-0",
        PHASE: "Running",
        HOST: "kvm-01",
        READY: "True",
        RESTARTS: "2",
      });
    }
    const wide = kube.kubectl(["get", "vwvm", "-o", "wide"]).stdout;
    expect(table(wide)[0]?.REASON).toBe("Running");
  });

  it("every other kind answers to its vw* short name", () => {
    kube.kubectl(["apply", "-f", "-"], {
      input: `apiVersion: virtwarden.io/v1alpha1
kind: Host
metadata: {name: kvm-01}
spec: {uri: "qemu+tcp://kvm-01/system"}
---
apiVersion: virtwarden.io/v1alpha1
kind: VirtualNetwork
metadata: {name: lan, namespace: default}
spec: {mode: nat, subnet: 10.10.0.0/24}
---
apiVersion: virtwarden.io/v1alpha1
kind: VirtualMachineSnapshot
metadata: {name: db-0-now, namespace: default}
spec: {vmName: db-0}
---
apiVersion: virtwarden.io/v1alpha1
kind: VirtualMachineRestore
metadata: {name: db-0-back, namespace: default}
spec: {snapshotName: db-0-now}
`,
    });
    const cases: [string[], Record<string, string>][] = [
      [["vwhost"], { NAME: "kvm-01", URI: "qemu+tcp://kvm-01/system" }],
      [["vnet", "vnets", "vwnet", "vwnets"], { NAME: "lan", MODE: "nat", SUBNET: "10.10.0.0/24" }],
      [["vmsnap", "vmsnaps", "vwsnap", "vwsnaps"], { NAME: "db-0-now", VM: "db-0" }],
      [["vmrestore", "vmrestores", "vwrestore", "vwrestores"], { NAME: "db-0-back", SNAPSHOT: "db-0-now" }],
    ];
    for (const [names, want] of cases)
      for (const n of names) {
        const out = kube.kubectl(["get", n]).stdout;
        expect(out, n).not.toContain("<invalid>");
        expect(table(out)[0], n).toMatchObject(want);
      }
    // The category lists all six kinds at once.
    const all = kube.kubectl(["get", "virtwarden"]).stdout;
    for (const kind of [
      "virtualmachine",
      "host",
      "virtualnetwork",
      "snapshotpolicy",
      "virtualmachinesnapshot",
      "virtualmachinerestore",
    ])
      expect(all).toContain(`${kind}.virtwarden.io/`);
  });

  it("a Host's status.reliability and status.usage are kept by the API server and shown by get -o wide", () => {
    kube.kubectl(["apply", "-f", "-"], {
      input: `apiVersion: virtwarden.io/v1alpha1
kind: Host
metadata: {name: desk-7}
spec: {uri: "qemu+tcp://desk-7/system"}
`,
    });
    const reliability = {
      failures: 4,
      observedSeconds: 90_000,
      upSeconds: 86_400,
      downSeconds: 3_600,
      mtbfSeconds: 21_600,
      mttrSeconds: 900,
      availability: 0.96,
      since: past,
      lastFailureTime: past,
    };
    const usage = {
      cpuPercent: 42.5,
      memoryUsedBytes: 10 * 1024 ** 3,
      memoryTotalBytes: 16 * 1024 ** 3,
      memoryPercent: 62.5,
      sampledAt: past,
    };
    kube.kubectl([
      "patch",
      "host",
      "desk-7",
      "--subresource=status",
      "--type=merge",
      "-p",
      JSON.stringify({ status: { phase: "Ready", reliability, usage } }),
    ]);
    // Not pruned: the schema declares every field (Kubernetes mode keeps the figures across restarts).
    const back = JSON.parse(kube.kubectl(["get", "host", "desk-7", "-o", "json"]).stdout);
    expect(back.status.reliability).toEqual(reliability);
    expect(back.status.usage).toEqual(usage);
    const [row] = table(kube.kubectl(["get", "host", "desk-7", "-o", "wide"]).stdout);
    expect(row).toMatchObject({
      NAME: "desk-7",
      FAILURES: "4",
      "MTBF-S": "21600",
      "MTTR-S": "900",
      AVAILABILITY: "0.96",
      // The same columns as virtwarden get host -o wide (test/cli/get-wide.test.ts).
      "CPU%": "42.5",
      "MEM%": "62.5",
    });
    // The narrow table keeps its columns.
    expect(kube.kubectl(["get", "host", "desk-7"]).stdout).not.toContain("FAILURES");
  });
});
