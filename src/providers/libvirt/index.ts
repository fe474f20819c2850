/**
 * The libvirt provider: HypervisorProvider over libvirt's remote protocol for qemu*, test+unix
 * URIs. `createLibvirtProviderFactory` is what the CLI wires for non-simulated hosts.
 */
import type { HostProviderOptions, ProviderFactory } from "../types.js";
import { LibvirtProvider, type LibvirtProviderOptions } from "./provider.js";
import { parseLibvirtUri } from "./rpc/uri.js";

export { LibvirtProvider, type LibvirtProviderOptions } from "./provider.js";
export { LibvirtApi } from "./rpc/api.js";
export { ConnectionError, LibvirtClient, LibvirtError } from "./rpc/client.js";
export { parseLibvirtUri } from "./rpc/uri.js";

export function createLibvirtProviderFactory(opts: LibvirtProviderOptions = {}): ProviderFactory {
  return (uri: string, host?: HostProviderOptions) => {
    parseLibvirtUri(uri);
    return new LibvirtProvider(uri, host?.domainType ? { ...opts, domainType: host.domainType } : opts);
  };
}
