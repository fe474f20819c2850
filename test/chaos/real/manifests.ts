/**
 * The user's side of a chaos scenario: the declared resources, kept here (the harness knows what
 * it declared without reading it back through virtwarden) and written to the watched directory
 * the way users and tools write them: one file per VM, hosts in one file, and a whole directory
 * removed and written again when it is regenerated.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import type { BedHost } from "./bed.js";

export interface VMDecl {
  name: string;
  runStrategy: "Always" | "Halted";
  cpu: number;
  memoryMiB: number;
  /** Extra spec fields (availability, placement). */
  extra?: Record<string, unknown>;
}

export interface HostDecl {
  host: BedHost;
  maintenance?: boolean;
  allowPowerOff?: boolean;
  /** spec.reserved.memory, bytes. */
  reservedMemory?: number;
}

export interface Decl {
  hosts: HostDecl[];
  vms: Map<string, VMDecl>;
  /** VirtualMachineSnapshot name -> VM name. */
  snapshots: Map<string, string>;
  /** VirtualMachineRestore name -> snapshot name. */
  restores: Map<string, string>;
}

const API = "virtwarden.io/v1alpha1";

function hostDoc(h: HostDecl): unknown {
  const t = h.host.t;
  return {
    apiVersion: API,
    kind: "Host",
    metadata: { name: t.name, labels: { "chaos/host": t.name } },
    spec: {
      uri: t.uri,
      domainType: t.domainType,
      overcommit: { cpu: 16 },
      heartbeat: { intervalSeconds: 1, missedBeats: 3 },
      fencing: { agent: "exec", command: t.fenceCommand, timeoutSeconds: 15 },
      power: { agent: "exec", command: t.fenceCommand, timeoutSeconds: 30 },
      ...(h.maintenance ? { maintenance: true } : {}),
      ...(h.allowPowerOff ? { allowPowerOff: true } : {}),
      ...(h.reservedMemory !== undefined ? { reserved: { memory: String(h.reservedMemory) } } : {}),
    },
  };
}

function vmDoc(v: VMDecl): unknown {
  return {
    apiVersion: API,
    kind: "VirtualMachine",
    metadata: { name: v.name, namespace: "default" },
    spec: {
      runStrategy: v.runStrategy,
      // Edits must reach the running QEMU (an invariant): restarts that apply them are opted in.
      updateStrategy: "Automatic",
      resources: { cpu: v.cpu, memory: `${v.memoryMiB}Mi` },
      disks: [{ name: "root", size: "64Mi", source: { image: { name: "base.qcow2" } } }],
      ...(v.extra ?? {}),
    },
  };
}

export class ManifestDir {
  constructor(
    readonly dir: string,
    readonly decl: Decl,
  ) {
    mkdirSync(join(dir, "vms"), { recursive: true });
    mkdirSync(join(dir, "snapshots"), { recursive: true });
  }

  writeHosts(): void {
    writeFileSync(
      join(this.dir, "hosts.yaml"),
      this.decl.hosts.map((h) => stringify(hostDoc(h))).join("---\n"),
    );
  }
  writeVM(v: VMDecl): void {
    this.decl.vms.set(v.name, v);
    writeFileSync(join(this.dir, "vms", `${v.name}.yaml`), stringify(vmDoc(v)));
  }
  removeVM(name: string): void {
    this.decl.vms.delete(name);
    rmSync(join(this.dir, "vms", `${name}.yaml`), { force: true });
  }
  /** What a tool regenerating the directory does: every VM file removed. */
  removeAllVMFiles(): VMDecl[] {
    const all = [...this.decl.vms.values()];
    for (const f of readdirSync(join(this.dir, "vms"))) rmSync(join(this.dir, "vms", f), { force: true });
    this.decl.vms.clear();
    return all;
  }
  writeSnapshot(name: string, vmName: string): void {
    this.decl.snapshots.set(name, vmName);
    writeFileSync(
      join(this.dir, "snapshots", `${name}.yaml`),
      stringify({
        apiVersion: API,
        kind: "VirtualMachineSnapshot",
        metadata: { name, namespace: "default" },
        spec: { vmName, type: "disk" },
      }),
    );
  }
  writeRestore(name: string, snapshotName: string): void {
    this.decl.restores.set(name, snapshotName);
    writeFileSync(
      join(this.dir, "snapshots", `${name}.yaml`),
      stringify({
        apiVersion: API,
        kind: "VirtualMachineRestore",
        metadata: { name, namespace: "default" },
        spec: { snapshotName },
      }),
    );
  }
}

export const domainOf = (vm: string) => `default_${vm}`;
export const volumeOf = (vm: string) => `default_${vm}-root.qcow2`;
