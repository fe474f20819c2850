/**
 * Keeping running guests attached to a libvirt network that has to be started again.
 *
 * libvirt (9.x) does not put running guests' tap devices back on a network's bridge when the
 * network is destroyed and started again — for a change it cannot apply live (subnet, mode,
 * MTU, ...) or after a `virsh net-destroy`: the guests run on, cut off. A live interface update
 * moves a tap only when the bridge it resolves to changes. So the guests hop: each NIC on the
 * network is moved to a transient isolated network (the hop) and, once the network is up again,
 * back onto its new bridge. The guests see their link go away for a moment, not their NIC.
 *
 * Only the live definitions change (the persistent one keeps naming the network). A hop left
 * by an interrupted ensure (controller crash) is reported by `relinkPending` and finished by the
 * next ensure. Networks in bridge mode use a host bridge that outlives them: no hop is needed.
 */
import { createHash } from "node:crypto";
import { XMLBuilder } from "fast-xml-parser";
import { xmlParser } from "./domain-xml.js";
import type { LibvirtApi } from "./rpc/api.js";
import { LibvirtError } from "./rpc/client.js";
import type { DomainRef } from "./rpc/protocol.js";

/** virErrorNumber: no network with that name. */
const VIR_ERR_NO_NETWORK = 43;
/** virConnectListAllDomains: running domains only. */
const LIST_ACTIVE = 1;
/** virDomainDeviceModifyFlags: the live definition. */
const AFFECT_LIVE = 1;

// biome-ignore lint/suspicious/noExplicitAny: parsed XML is untyped
type X = any;

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  suppressEmptyNode: true,
});

/** The hop of a network: a name no VirtualNetwork can render (`~`), a bridge of at most 15 chars. */
export const hopName = (network: string) => `${network}~relink`;
const hopBridge = (network: string) => `vwh-${createHash("sha1").update(network).digest("hex").slice(0, 8)}`;

interface AttachedNic {
  dom: DomainRef;
  iface: X;
}

/** The NICs of running domains that their live definitions put on `network`. */
async function nicsOn(api: LibvirtApi, network: string, signal?: AbortSignal): Promise<AttachedNic[]> {
  const out: AttachedNic[] = [];
  for (const dom of await api.listAllDomains(LIST_ACTIVE, signal)) {
    const xml = await api.xmlDesc(dom, 0, signal).catch(() => undefined); // gone meanwhile
    if (!xml) continue;
    const ifaces: X[] = xmlParser.parse(xml).domain?.devices?.interface ?? [];
    for (const iface of ifaces)
      if (iface["@_type"] === "network" && iface.source?.["@_network"] === network) out.push({ dom, iface });
  }
  return out;
}

/** Point each NIC's live definition at `network`; libvirt moves its tap to that bridge. */
async function moveNics(
  api: LibvirtApi,
  nics: AttachedNic[],
  network: string,
  signal?: AbortSignal,
): Promise<void> {
  await Promise.all(
    nics.map(({ dom, iface }) => {
      const { "@_portid": _p, "@_bridge": _b, ...source } = iface.source ?? {};
      const xml = builder.build({
        interface: { ...iface, source: { ...source, "@_network": network } },
      }) as string;
      return api.updateDevice(dom, xml, AFFECT_LIVE, signal);
    }),
  );
}

async function hopExists(api: LibvirtApi, network: string, signal?: AbortSignal): Promise<boolean> {
  try {
    await api.networkLookup(hopName(network), signal);
    return true;
  } catch (e) {
    if (e instanceof LibvirtError && e.code === VIR_ERR_NO_NETWORK) return false;
    throw e;
  }
}

/** Whether guests of `network` were left on its hop (an ensure was interrupted). */
export function relinkPending(api: LibvirtApi, network: string, signal?: AbortSignal): Promise<boolean> {
  return hopExists(api, network, signal);
}

/** Move the running guests on `network` (if any) to its hop, before it is destroyed or restarted. */
export async function stepAside(api: LibvirtApi, network: string, signal?: AbortSignal): Promise<number> {
  const nics = await nicsOn(api, network, signal);
  if (nics.length === 0) return 0;
  if (!(await hopExists(api, network, signal))) {
    await api.networkCreateTransient(
      `<network><name>${hopName(network)}</name><bridge name="${hopBridge(network)}" stp="off" delay="0"/></network>`,
      signal,
    );
  }
  await moveNics(api, nics, hopName(network), signal);
  return nics.length;
}

/** Bring the guests on the hop back onto `network` (now up) and remove the hop. */
export async function stepBack(api: LibvirtApi, network: string, signal?: AbortSignal): Promise<number> {
  if (!(await hopExists(api, network, signal))) return 0;
  const nics = await nicsOn(api, hopName(network), signal);
  await moveNics(api, nics, network, signal);
  await api.networkDestroy(await api.networkLookup(hopName(network), signal), signal);
  return nics.length;
}
