#!/bin/sh
# Builds the dom0 root filesystem and the guest initrd under $RX (default /tmp/realxen).
# Needs root, and the host packages listed in README.md (debootstrap, xen-hypervisor-4.17-amd64, ...).
set -eu
RX=${RX:-/tmp/realxen}
HERE=$(cd "$(dirname "$0")" && pwd)
MIRROR=${MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)}
MIRROR=${MIRROR:-$(sed -n 's/^deb \(http[^ ]*\) bookworm .*/\1/p' /etc/apt/sources.list 2>/dev/null | head -1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
mkdir -p "$RX"
cd "$RX"
if [ ! -x rootfs/usr/lib/xen-4.17/bin/xl ]; then
  debootstrap --variant=minbase \
    --include=linux-image-amd64,xen-hypervisor-4.17-amd64,xen-utils-4.17,xenstore-utils,qemu-system-xen,busybox-static,kmod,procps,initramfs-tools,cpio \
    bookworm rootfs "$MIRROR"
fi
# the hypervisor as a multiboot image for qemu -kernel: the HOST's copy (apt-get install above). On
# 2026-11-25 that was 4.17.7+13 from bookworm-security, while debootstrap (bookworm main only) put
# xen-utils 4.17.5+72 in the rootfs; all runs in results-2026-11-25.md used that pair.
# XEN_GZ=rootfs/boot/xen-4.17-amd64.gz takes the rootfs's own hypervisor instead.
zcat "${XEN_GZ:-/boot/xen-4.17-amd64.gz}" > xen-4.17
# guest: a busybox initrd whose init prints a banner and then ticks
rm -rf guest-initrd && mkdir -p guest-initrd/bin
cp rootfs/bin/busybox guest-initrd/bin/
cp "$HERE/dom0/guest-init" guest-initrd/init && chmod +x guest-initrd/init
(cd guest-initrd && find . | cpio -o -H newc --quiet | gzip -9) > guest-initrd.gz
echo "rootfs ready in $RX/rootfs; kernel $(ls rootfs/boot | sed -n 's/^vmlinuz-//p')"
