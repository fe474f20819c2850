/**
 * The VM's network interfaces as realised: for each of `spec.networks`, its MAC and the address
 * the network's DHCP server actually leased to it on the VM's host (what `virsh net-dhcp-leases`
 * shows). A lease appears only once the guest asked for one, seconds after it booted; until then
 * the reconciler looks again every few seconds, for a while, then leaves it to the resync.
 */
import type { VirtualMachine, VirtualMachineStatus } from "../../api/types.js";
import type { HypervisorProvider } from "../../providers/types.js";
import { libvirtNetworkName, renderDomain } from "./render.js";

type Interfaces = NonNullable<VirtualMachineStatus["interfaces"]>;

/** How long a running VM without its lease is looked at again quickly. */
export const LEASE_WAIT_MS = 120_000;
export const LEASE_POLL_MS = 2_000;

/**
 * The interfaces of a VM running on a host: MACs from its rendered domain, IPs from the leases of
 * each network there. A network whose leases cannot be read keeps the IP last reported.
 */
export async function realisedInterfaces(
  vm: VirtualMachine,
  provider: HypervisorProvider,
  opts: { nowSeconds: number; hasDhcp: (network: string) => boolean; signal?: AbortSignal },
): Promise<{ interfaces: Interfaces; missing: number }> {
  const { nowSeconds, hasDhcp, signal } = opts;
  const ns = vm.metadata.namespace ?? "default";
  const nics = renderDomain(vm).interfaces;
  const previous = vm.status?.interfaces ?? [];
  const byNetwork = new Map<string, Map<string, string>>();
  await Promise.all(
    [...new Set((vm.spec.networks ?? []).map((n) => n.network))].map(async (network) => {
      try {
        const leases = await provider.networkLeases(libvirtNetworkName(ns, network), signal);
        byNetwork.set(
          network,
          new Map(
            leases
              .filter((l) => l.expiresAt === 0 || l.expiresAt > nowSeconds)
              .map((l) => [l.mac.toLowerCase(), l.ip]),
          ),
        );
      } catch {
        // unreadable now: the last known addresses stand
      }
    }),
  );
  let missing = 0;
  const interfaces: Interfaces = (vm.spec.networks ?? []).map((n, i) => {
    const mac = nics[i]?.mac ?? "";
    const table = byNetwork.get(n.network);
    const ip = table ? table.get(mac) : previous.find((p) => p.network === n.network && p.mac === mac)?.ip;
    if (!ip && hasDhcp(n.network)) missing++;
    return { network: n.network, mac, ...(ip ? { ip } : {}) };
  });
  return { interfaces, missing };
}

/** Interfaces of a VM that is not running: MACs, no addresses. */
export function idleInterfaces(vm: VirtualMachine): Interfaces {
  const nics = renderDomain(vm).interfaces;
  return (vm.spec.networks ?? []).map((n, i) => ({ network: n.network, mac: nics[i]?.mac ?? "" }));
}
