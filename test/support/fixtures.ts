/**
 * Fixture builders that keep tests short: `vm("web-1").onHost("a").phase("Running").build()`,
 * `hostResource("a").build()`.
 */
import type { Host, VirtualMachine, VirtualMachineSpec, VirtualMachineStatus } from "../../src/api/types.js";

export class VMBuilder {
  private readonly obj: VirtualMachine;

  constructor(name: string, namespace = "default") {
    this.obj = {
      apiVersion: "virtwarden.io/v1alpha1",
      kind: "VirtualMachine",
      metadata: {
        name,
        namespace,
        uid: `uid-${namespace}-${name}`,
        generation: 1,
        labels: {},
        finalizers: ["virtwarden.io/cleanup"],
      },
      spec: { runStrategy: "Always", resources: { cpu: 1, memory: "512Mi" } },
    };
  }

  spec(patch: Partial<VirtualMachineSpec>): this {
    Object.assign(this.obj.spec, patch);
    return this;
  }

  labels(labels: Record<string, string>): this {
    this.obj.metadata.labels = { ...this.obj.metadata.labels, ...labels };
    return this;
  }

  strategy(s: VirtualMachineSpec["runStrategy"]): this {
    this.obj.spec.runStrategy = s;
    return this;
  }

  onHost(host: string): this {
    this.status({ host });
    return this;
  }

  phase(phase: VirtualMachineStatus["phase"]): this {
    this.status({ phase });
    return this;
  }

  status(patch: Partial<VirtualMachineStatus>): this {
    this.obj.status = { ...(this.obj.status ?? {}), ...patch };
    return this;
  }

  generation(g: number): this {
    this.obj.metadata.generation = g;
    return this;
  }

  noFinalizer(): this {
    this.obj.metadata.finalizers = [];
    return this;
  }

  deleting(at = "2026-01-01T00:00:00Z"): this {
    this.obj.metadata.deletionTimestamp = at;
    return this;
  }

  build(): VirtualMachine {
    return structuredClone(this.obj);
  }
}

export const vm = (name: string, namespace?: string) => new VMBuilder(name, namespace);

/** The Host resource of a test-bed host: its URI, and the domain type that works on this machine. */
export function testbedHost(h: { name: string; uri: string; domainType: "kvm" | "qemu" }, labels = {}): Host {
  const r = hostResource(h.name, h.uri, labels);
  r.spec.domainType = h.domainType;
  return r;
}

export function hostResource(name: string, uri = `sim://${name}`, labels: Record<string, string> = {}): Host {
  return {
    apiVersion: "virtwarden.io/v1alpha1",
    kind: "Host",
    metadata: { name, uid: `uid-host-${name}`, generation: 1, labels },
    spec: { uri },
  };
}
