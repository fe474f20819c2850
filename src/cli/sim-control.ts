/**
 * The fault-injection endpoint of `virtwarden run --simulate`: what `virtwarden sim` (sim.ts)
 * talks to, so that a user can power a simulated host off, partition it, break its BMC, crash a
 * guest or change a domain behind the controller's back while the controller runs.
 *
 * Contract:
 * - It listens on 127.0.0.1 only, never another address; the port is the caller's (0: any free).
 * - Every request carries the token of the control file, `<state-dir>/sim-control.json` (mode
 *   0600: address, port, token, pid). The file is written only once the controller holds the state
 *   dir's lock (a second `run` on it is refused before it could overwrite the file) and removed
 *   when the endpoint closes. A missing or wrong token is answered 401 and changes nothing.
 * - A host is named by its Host resource (or by its simulated host's name); a VM as
 *   NAMESPACE/NAME or NAME (namespace default). An unknown one is answered 404 naming it; a fault
 *   that cannot apply in the current state (power off a host that is off) 409 saying why.
 * - The faults are the simulator's own (world.ts), the ones the chaos suites inject; a domain
 *   destroyed or reconfigured "behind our back" goes through a connection of its own to the
 *   simulated host, as `virsh` would, and fails like it when the host does not answer.
 * - `GET /v1/state` is the simulator's ground truth (hosts, their power, partition and BMC, every
 *   domain and its state), read from the world and not from the controller: the tests use it as
 *   the oracle that no VM runs twice.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { chmod, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { Host } from "../api/types.js";
import type { Logger } from "../controller/log.js";
import { isActive, SimProvider, type Simulator } from "../providers/sim/index.js";
import { domainName } from "../reconcilers/fleet.js";
import type { ResourceStore } from "../store/types.js";

export const CONTROL_FILE = "sim-control.json";

/** What the control file holds. */
export interface ControlFile {
  /** Always 127.0.0.1:PORT. */
  address: string;
  token: string;
  /** The controller's pid (for a message when it is gone). */
  pid: number;
}

/** The ground truth `GET /v1/state` answers. */
export interface SimState {
  hosts: {
    /** The simulated host. */
    name: string;
    /** The Host resource simulated on it, when one is. */
    resource?: string;
    powered: boolean;
    partitioned: boolean;
    bmcBroken: boolean;
    domains: {
      name: string;
      /** NAMESPACE/NAME of the VirtualMachine it belongs to (its ownership mark). */
      vm?: string;
      state: string;
      reason: string;
      active: boolean;
      persistent: boolean;
      vcpus: number;
    }[];
  }[];
}

export const HOST_FAULTS = ["power-off", "power-on", "partition", "heal", "fail-fence", "fence-ok"] as const;
export const VM_FAULTS = ["crash", "destroy", "drift"] as const;

export interface SimControlOptions {
  sim: Simulator;
  store: ResourceStore;
  stateDir: string;
  /** Port on 127.0.0.1 (0: any free port). */
  port: number;
  /** The simulated host a Host resource runs on (run.ts's --simulate mapping). */
  simHostOf: (host: Host) => string;
  logger: Logger;
}

export interface SimControl {
  port: number;
  close(): Promise<void>;
}

class ControlError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const LOOPBACK = "127.0.0.1";

export async function startSimControl(opts: SimControlOptions): Promise<SimControl> {
  const token = randomBytes(32).toString("base64url");
  const digest = (s: string) => createHash("sha256").update(s).digest();
  const want = digest(`Bearer ${token}`);
  const log = opts.logger.child({ component: "sim-control" });
  const faults = new SimFaults(opts);

  const server: Server = createServer((req, res) => {
    const auth = req.headers.authorization ?? "";
    if (!timingSafeEqual(digest(auth), want)) {
      reply(res, 401, { error: "missing or wrong token (see sim-control.json in the state dir)" });
      return;
    }
    faults
      .handle(req)
      .then((body) => {
        if ("message" in body) log.info({ fault: body.message }, `simulated: ${body.message}`);
        reply(res, 200, body);
      })
      .catch((e: unknown) => {
        const status = e instanceof ControlError ? e.status : 500;
        reply(res, status, { error: e instanceof Error ? e.message : String(e) });
      });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, LOOPBACK, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const file = join(opts.stateDir, CONTROL_FILE);
  const content: ControlFile = { address: `${LOOPBACK}:${port}`, token, pid: process.pid };
  await mkdir(opts.stateDir, { recursive: true });
  const tmp = `${file}.tmp`;
  await rm(tmp, { force: true });
  // Created 0600 (the umask can only narrow it), and set again in case the file existed.
  await writeFile(tmp, `${JSON.stringify(content)}\n`, { mode: 0o600, flag: "wx" });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
  log.info({ address: content.address, file }, "simulator control listening (virtwarden sim ...)");
  return {
    port,
    close: async () => {
      await rm(file, { force: true }).catch(() => undefined);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A stale control file (an earlier `run --simulate` on this state dir was killed) goes. */
export async function removeControlFile(stateDir: string): Promise<void> {
  await rm(join(stateDir, CONTROL_FILE), { force: true });
}

function reply(res: ServerResponse, status: number, body: object): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(`${JSON.stringify(body)}\n`);
}

/** The faults by route, against the simulator world. */
class SimFaults {
  constructor(private readonly opts: SimControlOptions) {}

  async handle(req: IncomingMessage): Promise<SimState | { message: string }> {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    if (req.method === "GET" && path === "/v1/state") return this.state();
    if (req.method !== "POST")
      throw new ControlError(405, `${req.method} ${path}: faults are POSTed, the state is GET /v1/state`);
    if (parts[0] === "v1" && parts[1] === "hosts" && parts.length === 4)
      return { message: this.hostFault(parts[2] as string, parts[3] as string) };
    if (parts[0] === "v1" && parts[1] === "vms" && parts.length === 5)
      return { message: await this.vmFault(`${parts[2]}/${parts[3]}`, parts[4] as string) };
    throw new ControlError(404, `no such route: POST ${path}`);
  }

  private hostResources(): Map<string, string> {
    const out = new Map<string, string>();
    for (const h of this.opts.store.list("Host")) out.set(this.opts.simHostOf(h), h.metadata.name);
    return out;
  }

  state(): SimState {
    const resources = this.hostResources();
    return {
      hosts: this.opts.sim.hosts().map((h) => {
        const resource = resources.get(h.name);
        return {
          name: h.name,
          ...(resource ? { resource } : {}),
          powered: h.powered,
          partitioned: h.partitioned,
          bmcBroken: h.bmcBroken,
          domains: [...h.domains.values()].map((d) => {
            const own = d.spec.ownership;
            return {
              name: d.spec.name,
              ...(own ? { vm: `${own.namespace}/${own.name}` } : {}),
              state: d.state.state,
              reason: d.state.reason,
              // A powered-off host's domains are defined, not running, whatever state they held.
              active: h.powered && isActive(d.state),
              persistent: d.persistent,
              vcpus: d.spec.vcpus,
            };
          }),
        };
      }),
    };
  }

  /** The simulated host by Host resource name or its own name; 404 naming the known ones. */
  private simHost(name: string): string {
    const sim = this.opts.sim;
    const byResource = this.opts.store.list("Host").find((h) => h.metadata.name === name);
    const simName = byResource ? this.opts.simHostOf(byResource) : name;
    if (sim.hosts().some((h) => h.name === simName)) return simName;
    const known = [...new Set([...this.hostResources().values(), ...sim.hosts().map((h) => h.name)])].sort();
    throw new ControlError(
      404,
      byResource
        ? `Host ${name} has no simulated host yet (the controller has not connected to it)`
        : `no Host named ${name} (hosts: ${known.join(", ") || "none"})`,
    );
  }

  private hostFault(name: string, fault: string): string {
    if (!(HOST_FAULTS as readonly string[]).includes(fault))
      throw new ControlError(404, `no host fault ${fault} (one of: ${HOST_FAULTS.join(", ")})`);
    const simName = this.simHost(name);
    const sim = this.opts.sim;
    const h = sim.hosts().find((x) => x.name === simName);
    if (!h) throw new ControlError(404, `no simulated host ${simName}`);
    const conflict = (why: string) => new ControlError(409, `${name}: ${why}`);
    switch (fault) {
      case "power-off": {
        if (!h.powered) throw conflict("already powered off");
        const running = [...h.domains.values()].filter((d) => isActive(d.state)).length;
        sim.crashHost(simName);
        return `${name} lost power (${running} running domain(s) gone with it)`;
      }
      case "power-on":
        if (h.powered) throw conflict("already powered on");
        sim.restoreHost(simName);
        return `${name} powered on (it boots with its domains shut off)`;
      case "partition":
        if (!h.powered) throw conflict("powered off: nothing to cut off");
        if (h.partitioned) throw conflict("already partitioned");
        sim.partitionHost(simName);
        return `${name} cut off from the controller (its domains keep running)`;
      case "heal":
        if (!h.partitioned) throw conflict("not partitioned");
        sim.healPartition(simName);
        return `${name} reachable again`;
      case "fail-fence":
        if (h.bmcBroken) throw conflict("its BMC is already failing");
        sim.breakBmc(simName, true);
        return `${name}'s BMC stops answering: fencing and power control of ${name} fail`;
      default:
        if (!h.bmcBroken) throw conflict("its BMC is not failing");
        sim.breakBmc(simName, false);
        return `${name}'s BMC answers again`;
    }
  }

  private async vmFault(key: string, fault: string): Promise<string> {
    if (!(VM_FAULTS as readonly string[]).includes(fault))
      throw new ControlError(404, `no VM fault ${fault} (one of: ${VM_FAULTS.join(", ")})`);
    const [namespace = "", name = ""] = key.split("/");
    const domain = domainName(namespace, name);
    const sim = this.opts.sim;
    const copies = sim.hosts().filter((h) => h.domains.has(domain));
    const declared = this.opts.store.get("VirtualMachine", key) !== undefined;
    if (!declared && copies.length === 0) {
      const vms = this.opts.store
        .list("VirtualMachine")
        .map((v) => `${v.metadata.namespace ?? "default"}/${v.metadata.name}`)
        .sort();
      throw new ControlError(404, `no VirtualMachine ${key} (VMs: ${vms.join(", ") || "none"})`);
    }
    const running = copies.filter((h) => h.powered && isActive(h.domains.get(domain)?.state ?? STOPPED));
    if (running.length === 0)
      throw new ControlError(
        409,
        `${key} is not running on any simulated host${copies.length > 0 ? ` (defined on ${copies.map((h) => h.name).join(", ")})` : ""}: nothing to ${fault}`,
      );
    const hosts = running.map((h) => h.name).join(", ");
    switch (fault) {
      case "crash":
        for (const h of running) sim.crashDomain(h.name, domain);
        return `${key}'s QEMU died on ${hosts} (shut off, reason crashed)`;
      case "destroy":
        for (const h of running) await this.virsh(h.name, (p) => p.destroyDomain(domain));
        return `${key} destroyed on ${hosts} behind the controller's back (virsh destroy)`;
      default: {
        const changed: string[] = [];
        for (const h of running)
          await this.virsh(h.name, async (p) => {
            const spec = await p.getDomainSpec(domain);
            if (!spec) throw new ControlError(409, `${key}: its domain went from ${h.name}`);
            const vcpus = spec.vcpus + 1;
            await p.defineDomain({ ...spec, vcpus });
            changed.push(`${h.name}: vcpus ${spec.vcpus} -> ${vcpus}`);
          });
        return `${key}'s definition changed behind the controller's back (${changed.join("; ")}; virsh setvcpus --config)`;
      }
    }
  }

  /** A connection of its own to the simulated host, as virsh is next to the controller's. */
  private async virsh(host: string, fn: (p: SimProvider) => Promise<void>): Promise<void> {
    const p = new SimProvider(this.opts.sim, `sim://${host}`);
    try {
      await fn(p);
    } catch (e) {
      if (e instanceof ControlError) throw e;
      throw new ControlError(409, `${host}: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      await p.close();
    }
  }
}

const STOPPED = { state: "shutoff" as const, reason: "" };
