#!/bin/sh
# Real Xen runs from a fresh clone on a Debian bookworm x86_64 machine, as root. Opt-in: not part of
# npm test or .ci/run. Installs QEMU and Xen 4.17 from Debian, builds the dom0 rootfs and disk
# (tools/real-xen/build-rootfs.sh, mkdisk.sh), boots Xen + dom0 under QEMU TCG, reads the results
# back from the disk, prints the PASS/FAIL lines and a summary; exits 0 only if all passed.
#
# usage: tools/real-xen/run.sh seed
#   seed  issue 14 part 3: a real PV save down-converted to 32- and 64-bit legacy xl images and
#         restored by real xl through Xen's converter and Ferry's (dom0/seed.sh)
# env: RX (work directory, default /tmp/realxen), DISK (default 6G), BOOT_TIMEOUT (s, default 2400),
#      SMP/CPU/MEM as boot.sh takes them.
set -eu
WHAT=${1:-}
case "$WHAT" in
  seed) ;;
  *) echo "usage: $0 seed" >&2; exit 2 ;;
esac
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export RX=${RX:-/tmp/realxen}
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (apt-get, debootstrap, mkfs)" >&2; exit 2; }
say() { echo "run.sh: $* ($(date -u +%T))"; }
T0=$(date +%s)

PKGS="qemu-system-x86 qemu-utils debootstrap e2fsprogs cpio xen-hypervisor-4.17-amd64 xen-utils-4.17"
missing=""
for p in $PKGS; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"; done
if [ -n "$missing" ]; then
  say "installing$missing"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
fi
command -v node > /dev/null || { echo "run.sh: node is needed (the repository's version, on PATH)" >&2; exit 2; }
if [ ! -d "$REPO/node_modules" ]; then
  say "npm ci"
  (cd "$REPO" && npm ci)
fi

mkdir -p "$RX"
say "rootfs (build-rootfs.sh; skips debootstrap when $RX/rootfs has xl)"
"$HERE/build-rootfs.sh" > "$RX/build-rootfs.log" 2>&1 || { tail -20 "$RX/build-rootfs.log"; exit 1; }
say "disk (mkdisk.sh ${DISK:-6G})"
"$HERE/mkdisk.sh" "${DISK:-6G}" > "$RX/mkdisk.log" 2>&1 || { tail -20 "$RX/mkdisk.log"; exit 1; }

SERIAL="$RX/serial-$WHAT.log"
TB=$(date +%s)
say "booting Xen + dom0 under QEMU (serial log $SERIAL; 10-20 min)"
"$HERE/boot.sh" "$SERIAL" "$WHAT" > "$RX/qemu-$WHAT.log" 2>&1 &
QEMU=$!
# QEMU is ours: stop it (by its pid) if we are stopped or it overruns
trap 'kill "$QEMU" 2>/dev/null || true' EXIT INT TERM HUP
T=0
while kill -0 "$QEMU" 2>/dev/null; do
  if [ "$T" -ge "${BOOT_TIMEOUT:-2400}" ]; then say "boot overran ${BOOT_TIMEOUT:-2400}s; stopping QEMU"; kill "$QEMU"; break; fi
  sleep 10
  T=$((T + 10))
done
wait "$QEMU" 2>/dev/null || true
trap - EXIT INT TERM HUP
BOOT_S=$(( $(date +%s) - TB ))

OUTDIR="$RX/out-$WHAT"
rm -rf "$OUTDIR" && mkdir -p "$OUTDIR"
debugfs -R "rdump /out $OUTDIR" "$RX/disk.img" > /dev/null 2>&1 || true
RES="$OUTDIR/out/$WHAT/results.txt"
echo
if [ ! -s "$RES" ]; then
  say "FAIL: no results on the disk ($RES); see $SERIAL and $OUTDIR/out/dom0.log"
  tail -30 "$SERIAL" 2>/dev/null || true
  exit 1
fi
cat "$RES"
pass=$(grep -c '^PASS' "$RES" || true)
fail=$(grep -c '^FAIL' "$RES" || true)
echo
grep -q "^END $WHAT" "$RES" || { fail=$((fail + 1)); echo "FAIL $WHAT:end the run stopped before its last step"; }
say "summary: $WHAT: $pass passed, $fail failed, $(( $(date +%s) - T0 ))s in all (QEMU boot to power-off ${BOOT_S}s); logs in $OUTDIR/out"
[ "$fail" = 0 ] && [ "$pass" -gt 0 ]
