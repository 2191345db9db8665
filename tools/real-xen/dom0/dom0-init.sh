#!/bin/sh
# PID 1 of the test dom0 (init=/dom0-init.sh): mounts, starts the Xen daemons by hand (what the
# xencommons service would do), runs /guests/dom0-run.sh, writes everything under /out, powers off.
export PATH=/usr/local/bin:/usr/lib/xen-4.17/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -o remount,rw /
mkdir -p /out/console
# loopback and a hosts file: vitest (the slow test) listens on localhost
busybox ip link set lo up
grep -q localhost /etc/hosts 2>/dev/null || echo "127.0.0.1 localhost" >> /etc/hosts
{
  echo "dom0 up: $(date -u) $(uname -r)"; cat /proc/cmdline; free -m
  for m in xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd xen-blkback; do modprobe $m || echo "modprobe $m failed"; done
  mount -t xenfs xenfs /proc/xen
  mkdir -p /run/xen /run/xenstored /var/run/xen /var/lib/xen /var/log/xen /run/lock
  xenstored --pid-file /run/xen/xenstored.pid
  sleep 2
  xen-init-dom0
  xenconsoled --pid-file=/run/xen/xenconsoled.pid --log=guest --log-dir=/out/console
  sleep 1
  xl info
  sh /guests/dom0-run.sh
  echo "dom0-run.sh rc=$?"
  xl list
  xl dmesg > /out/xl-dmesg.txt 2>&1
  cp -a /var/log/xen /out/var-log-xen
} 2>&1 | tee /out/dom0.log
sync
echo FERRY-DOM0-DONE
sleep 1
# minbase has no poweroff of its own; busybox-static has one; sysrq as the last resort
busybox poweroff -f
echo o > /proc/sysrq-trigger
sleep 10
