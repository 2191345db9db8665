#!/bin/sh
# What the test dom0 runs: Ferry's xl-check (tools/real-xen/xl-check.ts) per guest, picked by
# ferryxen=<a+b+...> on the dom0 kernel command line:
#   pv     PV guest: create, driver save/verify/destroy/restore/unpause
#   pvmig  the same, then a save piped through the codec into a restore in this dom0
#   hvm    HVM guest (no disk), the same as pv
#   hvmmig the same as hvm, plus the in-dom0 migration
#   hvmabort hvmmig, then a save and a restore aborted part way
#   pvabort pvmig, then a save and a restore aborted part way (AbortSignal)
#   pvh    PVH guest with the in-dom0 migration
#   slow   the vitest slow test apps/host-agent/src/xl/xl-driver.slow.test.ts (PV guest)
#   seed   legacy images of a real PV save restored by xl through Xen's and Ferry's converters (seed.sh)
REPO=$(cat /guests/repo-path)
WHAT=$(sed -n 's/.*ferryxen=\([a-z0-9+]*\).*/\1/p' /proc/cmdline)
echo "ferryxen=$WHAT repo=$REPO"
want() { echo "+$WHAT+" | grep -q "+$1+"; }
XL=/usr/lib/xen-4.17/bin/xl
check() { # log-name, xl-check args...
  name=$1; shift
  echo "== xl-check $name: $* ($(date -u +%T))"
  ( cd "$REPO" && timeout 3600 node apps/cli/bin/run-ts.js tools/real-xen/xl-check.ts --xl $XL "$@" ) > /out/xl-check-$name.log 2>&1
  echo "== xl-check $name rc=$? ($(date -u +%T))"
  cat /out/xl-check-$name.log
  $XL list
  for d in $($XL list | awk 'NR>2 {print $1}'); do $XL destroy "$d"; done
}
cd /guests
want pv && check pv --guest pv --cfg /guests/pv.cfg
want pvmig && check pvmig --guest pv --cfg /guests/pv.cfg --migrate
want pvabort && check pvabort --guest pv --cfg /guests/pv.cfg --migrate --abort
want pvh && check pvh --guest pvh --cfg /guests/pvh.cfg --migrate
if want slow; then
  echo "== vitest slow test ($(date -u +%T))"
  ( cd "$REPO" && FERRY_REAL_XEN=1 FERRY_REAL_XEN_CFG=/guests/pv.cfg FERRY_REAL_XEN_GUEST=pv FERRY_XL_PATH=$XL \
      FERRY_REAL_XEN_BOOT_WAIT_MS=40000 timeout 1800 ./node_modules/.bin/vitest run \
      --config apps/host-agent/test/vitest.slow.config.ts apps/host-agent/src/xl/xl-driver.slow.test.ts ) > /out/vitest-slow.log 2>&1
  echo "== vitest slow test rc=$? ($(date -u +%T))"
  cat /out/vitest-slow.log
  for d in $($XL list | awk 'NR>2 {print $1}'); do $XL destroy "$d"; done
fi
if want seed; then
  echo "== seed ($(date -u +%T))"
  sh /guests/seed.sh > /out/seed.log 2>&1
  echo "== seed rc=$? ($(date -u +%T))"
  cat /out/seed.log
  for d in $($XL list | awk 'NR>2 {print $1}'); do $XL destroy "$d"; done
fi
want hvm && check hvm --guest hvm --cfg /guests/hvm.cfg --up-marker none --boot-wait 90
want hvmmig && check hvmmig --guest hvm --cfg /guests/hvm.cfg --up-marker none --boot-wait 90 --migrate
want hvmabort && check hvmabort --guest hvm --cfg /guests/hvm.cfg --up-marker none --boot-wait 90 --migrate --abort
ls -la /out /out/ferry
