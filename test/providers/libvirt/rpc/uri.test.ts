import { describe, expect, it } from "vitest";
import { parseLibvirtUri } from "../../../../src/providers/libvirt/rpc/uri.js";

describe("libvirt URIs", () => {
  it.each([
    [
      "qemu:///system",
      { transport: "unix", socket: "/var/run/libvirt/libvirt-sock", name: "qemu:///system" },
    ],
    ["qemu+unix:///system?socket=/tmp/s", { transport: "unix", socket: "/tmp/s", name: "qemu:///system" }],
    [
      "test+unix:///default?socket=/tmp/t",
      { transport: "unix", socket: "/tmp/t", name: "test:///default", driver: "test" },
    ],
    ["qemu+tcp://kvm-01/system", { transport: "tcp", host: "kvm-01", name: "qemu:///system" }],
    ["qemu+tcp://10.0.0.1:16600/system", { transport: "tcp", host: "10.0.0.1", port: 16600 }],
    [
      "qemu+tls://kvm-03/system?pkipath=/etc/vw/pki&no_verify=1",
      {
        transport: "tls",
        host: "kvm-03",
        name: "qemu:///system",
        params: { pkipath: "/etc/vw/pki", no_verify: "1" },
      },
    ],
    ["qemu://kvm-04/system", { transport: "tls", host: "kvm-04" }],
    [
      "qemu+ssh://root@kvm-05:2222/system?keyfile=/k",
      { transport: "ssh", user: "root", host: "kvm-05", port: 2222, name: "qemu:///system" },
    ],
    ["qemu:///system?mode=legacy", { name: "qemu:///system?mode=legacy" }],
  ])("%s", (uri, want) => {
    expect(parseLibvirtUri(uri)).toMatchObject(want);
  });

  it.each([
    ["test:///default", /in-process test driver/],
    ["qemu+libssh2://h/system", /not supported/],
    ["qemu+tcp:///system", /needs a host/],
    ["http://x", /not a libvirt driver/],
    ["not a uri", /not a libvirt URI/],
  ])("rejects %s with a reason", (uri, why) => {
    expect(() => parseLibvirtUri(uri)).toThrow(why);
  });
});
