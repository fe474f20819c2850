#!/usr/bin/env bash
# Installs the Debian packages the test suite and benchmarks need (idempotent: skips what is
# there). See ../shared/TESTBED.md for why each is needed.
set -euo pipefail
PKGS=(
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils iproute2
  etcd-server prometheus python3-libvirt busybox-static cpio ipmitool openssl dnsmasq-base iptables tini
  golang-github-digitalocean-go-libvirt-dev
  openipmi fence-agents openssh-server
)
# openipmi: ipmi_sim, a real IPMI-over-LAN BMC the ipmi and fence-agents agents are tested against;
# fence-agents: fence_ipmilan and the rest of the ClusterLabs agents the fence-agents kind runs.
# openssh-server: sshd, which the ssh:// Git remote tests start on loopback with their own config
# and keys (the system service is never used; in containers policy-rc.d keeps it from starting).
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  # No service is started by the install (sshd above all): the tests start what they need.
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    made_policy=1
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [ -n "$made_policy" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi
# The QEMU driver looks these up at start even when qemu.conf overrides them (TESTBED.md).
getent group kvm >/dev/null || groupadd -r kvm
getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd -r -g kvm libvirt-qemu
echo "test dependencies present"
