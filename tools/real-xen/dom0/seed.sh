#!/bin/sh
# The seed's failure on real libxl, and its fix (issue 14, part 3), run in the test dom0 by
# dom0-run.sh (ferryxen=seed). A real PV guest is saved by xl (a v2 image), Ferry's down-converter
# turns the save into the legacy xl image a 32-bit (then a 64-bit) Xen <= 4.5 toolstack writes (xl
# header without the STREAM_V2 flag), and `xl restore` takes it back:
#   - with Xen's own converter, which libxl runs with --width of its own word size (64 here):
#     once as Debian installs it, once with PYTHONPATH set so its Python modules load;
#   - with Ferry's convert-legacy-stream as the plain drop-in (it too is told --width 64; it must
#     fail as cleanly as Xen's script: xl exits 1 and no half-built domain stays);
#   - with LIBXL_CONVERT_HELPER=/guests/ferry-convert-helper, the two-line wrapper adding -w auto.
# A restore that works must bring the guest back with its memory: the console's "tick N" goes on
# from the number it had at the save, and the init's banner is not printed again.
# Prints "PASS|FAIL seed:<step> <ms>ms <details>" lines (also to /out/seed/results.txt); images go
# to /var/tmp/seed, each step's output to /out/seed/<step>.log.
REPO=$(cat /guests/repo-path)
XL=/usr/lib/xen-4.17/bin/xl
XEN_PY=/usr/lib/xen-4.17/lib/python
HELPER=/guests/ferry-convert-helper
CON=/out/console/guest-pv.log
OUT=/out/seed
IMG=/var/tmp/seed
mkdir -p "$OUT" "$IMG"
: > "$OUT/results.txt"

ms() { date +%s%3N; }
say() { echo "$*" | tee -a "$OUT/results.txt"; }
lasttick() { t=$(grep -o 'tick [0-9]*' "$CON" 2>/dev/null | tail -1 | cut -d' ' -f2); echo "${t:-0}"; }
banners() { grep -c 'REALXEN guest init up' "$CON" 2>/dev/null || echo 0; }
domains() { $XL list | awk 'NR>2 {print $1}' | tr '\n' ' '; }
destroy_all() { for d in $($XL list | awk 'NR>2 {print $1}'); do $XL destroy "$d"; done; }
# wait_tick AFTER SECONDS: until the console shows a tick above AFTER
wait_tick() {
  i=0
  while [ "$i" -lt "$2" ]; do
    [ "$(lasttick)" -gt "$1" ] && return 0
    sleep 1
    i=$((i + 1))
  done
  return 1
}

# save NAME: xl save the running guest into $IMG/NAME.v2 (xl destroys it afterwards); sets TICK
save() {
  TICK=$(lasttick)
  t0=$(ms)
  if $XL save pv "$IMG/$1.v2" > "$OUT/save-$1.log" 2>&1; then
    say "PASS seed:save-$1 $(($(ms) - t0))ms $(stat -c %s "$IMG/$1.v2") bytes at tick $TICK; domains left: $(domains)"
  else
    say "FAIL seed:save-$1 $(($(ms) - t0))ms $(tail -3 "$OUT/save-$1.log" | tr '\n' ' ')"
    return 1
  fi
}

# down NAME WIDTH: Ferry's down-conversion of $IMG/NAME.v2 into $IMG/NAME-wWIDTH.legacy
down() {
  t0=$(ms)
  if (cd "$REPO" && node apps/cli/bin/ferry.js stream convert "$IMG/$1.v2" "$IMG/$1-w$2.legacy" --to legacy --width "$2" --json) > "$OUT/down-$1-w$2.log" 2>&1; then
    head=$(od -A n -t x4 -j 36 -N 4 "$IMG/$1-w$2.legacy" | tr -d ' ')
    det=$(cd "$REPO" && node apps/cli/bin/ferry.js stream detect "$IMG/$1-w$2.legacy" 2>&1 | sed -n 's/^ *toolstack width: *//p')
    say "PASS seed:down-$1-w$2 $(($(ms) - t0))ms $(stat -c %s "$IMG/$1-w$2.legacy") bytes; xl mandatory flags 0x$head (no STREAM_V2); ferry stream detect: $det toolstack"
  else
    say "FAIL seed:down-$1-w$2 $(($(ms) - t0))ms $(tail -2 "$OUT/down-$1-w$2.log" | tr '\n' ' ')"
    return 1
  fi
}

# restore STEP EXPECT(ok|fail|clean-fail) IMAGE [VAR=VALUE]: xl restore with the given environment
# (clean-fail: xl must exit 1, not crash, and leave no domain behind)
restore() {
  step=$1 expect=$2 image=$3
  shift 3
  b0=$(banners)
  t0=$(ms)
  env "$@" $XL restore "$IMAGE_DIR$image" > "$OUT/$step.log" 2>&1
  rc=$?
  t=$(($(ms) - t0))
  # the converter's own words: the line libxl logs from its stderr, else xl's last lines
  why=$(grep -E 'Error|error:|Traceback|ModuleNotFound|marker|Unexpected|refus' "$OUT/$step.log" | grep -v '^ *File ' | head -4 | tr '\n' ' ' | cut -c1-600)
  if [ "$expect" = clean-fail ]; then
    left=$(domains)
    if [ "$rc" -eq 1 ] && [ -z "$left" ]; then
      say "PASS seed:$step ${t}ms xl restore failed cleanly (rc 1, no domain left): $why"
    else
      say "FAIL seed:$step ${t}ms xl restore rc $rc (want 1), domains left: '$left': $why"
    fi
    destroy_all
    return 0
  fi
  if [ "$expect" = fail ]; then
    left=$(domains)
    if [ "$rc" -ne 0 ]; then
      say "PASS seed:$step ${t}ms xl restore failed as expected (rc $rc): $why; domains left: $left"
    else
      say "FAIL seed:$step ${t}ms xl restore succeeded where it was expected to fail"
    fi
    destroy_all
    return 0
  fi
  if [ "$rc" -ne 0 ]; then
    say "FAIL seed:$step ${t}ms xl restore rc $rc: $why $(tail -2 "$OUT/$step.log" | tr '\n' ' ' | cut -c1-300)"
    destroy_all
    return 1
  fi
  if wait_tick "$TICK" 60 && [ "$(banners)" = "$b0" ]; then
    say "PASS seed:$step ${t}ms restored; console ticks on: tick $TICK at the save, tick $(lasttick) now, no new boot banner; $($XL list | awk '$1=="pv" {print $1, $2, $5}')"
  else
    say "FAIL seed:$step ${t}ms restored but no sign of the saved guest in 60s (tick $TICK at the save, last $(lasttick), banners $b0 -> $(banners)); $($XL list | awk '$1=="pv"')"
    return 1
  fi
}
IMAGE_DIR=$IMG/

echo "== seed: $(date -u +%T) repo $REPO; xl $($XL info | sed -n 's/^xen_version *: //p'), libxl's helper $(ls /usr/lib/xen-4.17/bin/convert-legacy-stream)"
t0=$(ms)
$XL create /guests/pv.cfg > "$OUT/create.log" 2>&1 || { say "FAIL seed:create $(tail -2 "$OUT/create.log")"; exit 1; }
i=0
while [ "$i" -lt 180 ] && ! grep -q 'REALXEN guest init up' "$CON" 2>/dev/null; do sleep 1; i=$((i + 1)); done
if wait_tick 2 60; then say "PASS seed:create $(($(ms) - t0))ms guest up, tick $(lasttick)"; else say "FAIL seed:create no ticks on $CON"; exit 1; fi

# 1. a 32-bit toolstack's legacy image
save a && down a 32 || exit 1
restore xen-helper-w32-as-installed fail a-w32.legacy
restore xen-helper-w32 fail a-w32.legacy PYTHONPATH=$XEN_PY
restore ferry-dropin-w32 clean-fail a-w32.legacy LIBXL_CONVERT_HELPER=$REPO/apps/cli/bin/convert-legacy-stream.js
restore ferry-helper-w32 ok a-w32.legacy LIBXL_CONVERT_HELPER=$HELPER || exit 1

# 2. a 64-bit toolstack's legacy image: Xen's converter guesses right
save b && down b 64 || exit 1
restore xen-helper-w64-as-installed fail b-w64.legacy
restore xen-helper-w64 ok b-w64.legacy PYTHONPATH=$XEN_PY || exit 1
save c && down c 64 || exit 1
restore ferry-helper-w64 ok c-w64.legacy LIBXL_CONVERT_HELPER=$HELPER || exit 1

# 3. the guest goes on: one more save and restore of the v2 image itself
save d || exit 1
restore v2-restore ok d.v2 || exit 1
destroy_all
echo "END seed $(date -u +%T)" >> "$OUT/results.txt"
echo "== seed done $(date -u +%T)"
