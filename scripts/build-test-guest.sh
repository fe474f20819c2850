#!/usr/bin/env bash
# Builds the test guest that runs real code (TESTBED.md): Debian's cloud kernel and a busybox
# initramfs whose /init loads virtio-net, asks every NIC for a DHCP lease, prints what it got to
# the serial console ("vw-guest: lease IFACE MAC IP"), then prints "tick N" every second. It loads
# virtio_balloon too, so a live memory change (the balloon) is carried out by the guest.
#
# Output (cached, one directory per GUEST_VERSION so checkouts of different versions never
# rebuild each other's): $VW_GUEST_DIR or
# ~/.cache/virtwarden/guest-v$GUEST_VERSION/{vmlinuz,initrd.img,version}. Prints the directory.
set -euo pipefail
GUEST_VERSION=5
OUT="${VW_GUEST_DIR:-${HOME}/.cache/virtwarden/guest-v${GUEST_VERSION}}"
if [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.img" ] && [ "$(cat "$OUT/version" 2>/dev/null)" = "$GUEST_VERSION" ]; then
  echo "$OUT"
  exit 0
fi
for tool in busybox cpio dpkg-deb apt-get; do
  command -v "$tool" >/dev/null || { echo "build-test-guest: $tool is missing (scripts/install-test-deps.sh installs it)" >&2; exit 1; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

# The metapackage names the current kernel package; download it (no install: nothing touches /boot).
pkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')"
if [ -z "$pkg" ]; then
  apt-get update -qq >&2
  pkg="$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/{print $2; exit}')"
fi
apt-get download -q "$pkg" >&2 2>/dev/null || { apt-get update -qq >&2; apt-get download -q "$pkg" >&2; }
dpkg-deb -x ./*.deb kernel
kver="$(ls kernel/lib/modules)"
mods="kernel/lib/modules/$kver/kernel"

root="$tmp/root"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,lib/modules,etc}
cp "$(command -v busybox)" "$root/bin/busybox"
# Load order matters: each module needs the ones before it.
for m in drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko drivers/virtio/virtio_pci_legacy_dev.ko \
  drivers/virtio/virtio_pci_modern_dev.ko drivers/virtio/virtio_pci.ko net/core/failover.ko \
  drivers/net/net_failover.ko drivers/net/virtio_net.ko drivers/virtio/virtio_balloon.ko; do
  src="$mods/$m"
  [ -f "$src" ] || src="$(ls "$mods/$m".* 2>/dev/null | head -1)"
  case "$src" in
    *.xz) xz -dc "$src" >"$root/lib/modules/$(basename "$m")" ;;
    *.zst) zstd -dqc "$src" >"$root/lib/modules/$(basename "$m")" ;;
    *) cp "$src" "$root/lib/modules/$(basename "$m")" ;;
  esac
  echo "$(basename "$m")" >>"$root/lib/modules/order"
done

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m" || echo "vw-guest: insmod $m failed"; done
echo "vw-guest: up $(ls /sys/class/net | tr '\n' ' ')"
ip link set lo up
for n in /sys/class/net/*; do
  i="${n##*/}"
  [ "$i" = lo ] && continue
  ip link set "$i" up
  # stays running: renews the lease like a real guest's client
  udhcpc -i "$i" -s /dhcp.sh -t 30 -T 1 -A 1 &
done
n=0
while true; do
  echo "tick $n"
  n=$((n + 1))
  sleep 1
done
EOF
cat >"$root/dhcp.sh" <<'EOF'
#!/bin/sh
case "$1" in
  bound | renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    echo "vw-guest: lease $interface $(cat /sys/class/net/$interface/address) $ip" >/dev/console
    ;;
esac
EOF
chmod +x "$root/init" "$root/dhcp.sh"

mkdir -p "$OUT"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$OUT/initrd.img.tmp"
cp kernel/boot/vmlinuz-* "$OUT/vmlinuz.tmp"
mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
echo "$GUEST_VERSION" >"$OUT/version"
echo "$OUT"
