#!/bin/sh
# Boots Xen 4.17 + the dom0 on disk.img under QEMU (TCG; no network). dom0 runs dom0-init.sh, which
# runs /guests/dom0-run.sh and powers off; QEMU then exits.
# usage: boot.sh <serial log> <what dom0-run.sh does, e.g. pv+pvmig+hvm>
# env: SMP (default 1), CPU (default max,-smap,-smep), MEM (MiB, default 3072)
RX=${RX:-/tmp/realxen}
cd "$RX" || exit 1
KV=$(ls rootfs/boot | sed -n 's/^vmlinuz-//p' | sort -V | tail -1)
exec qemu-system-x86_64 -accel tcg,thread=multi -cpu "${CPU:-max,-smap,-smep}" -smp "${SMP:-1}" -m "${MEM:-3072}" \
  -display none -serial "file:$1" -monitor none -no-reboot -nic none \
  -kernel xen-4.17 \
  -append "console=com1 com1=115200,8n1 dom0_mem=1536M,max:1536M dom0_max_vcpus=1 loglvl=all guest_loglvl=all" \
  -initrd "rootfs/boot/vmlinuz-$KV root=/dev/vda rw console=hvc0 earlyprintk=xen init=/dom0-init.sh ferryxen=$2,rootfs/boot/initrd.img-$KV" \
  -drive "file=disk.img,if=virtio,format=raw"
