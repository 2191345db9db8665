#!/bin/sh
# Regenerates libs/stream-codec/test/v2/golden/ with Xen's own Python tools
# (Python 2.7: under Python 3 their -x and EMULATOR_XENSTORE_DATA paths are broken).
#   XEN=/tmp/xen PY2=$(pyenv root)/versions/2.7.18/bin/python tools/golden/make-golden.sh
# Needs a Xen source tree at $XEN (tools/python). Builds a throwaway PYTHONPATH
# under /tmp with the xen.util shim the scripts import.
set -eu
XEN=${XEN:-/tmp/xen}
PY2=${PY2:-$(pyenv root)/versions/2.7.18/bin/python}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE/../../libs/stream-codec/test/v2/golden
PYP=$(mktemp -d /tmp/xenpy.XXXXXX)
mkdir -p "$PYP/xen" "$OUT"
cp -r "$XEN/tools/python/xen/migration" "$PYP/xen/"
touch "$PYP/xen/__init__.py" "$PYP/xen/migration/__init__.py"
cat > "$PYP/xen/util.py" <<'PY'
import os
def open_file_or_fd(val, *argl, **kwargs):
    try:
        return os.fdopen(int(val), *argl, **kwargs)
    except ValueError:
        return open(val, *argl, **kwargs)
PY
convert() { PYTHONPATH=$PYP "$PY2" "$XEN/tools/python/scripts/convert-legacy-stream" "$@"; }
verify() { PYTHONPATH=$PYP "$PY2" "$XEN/tools/python/scripts/verify-stream-v2" "$@"; }
T=$(mktemp -d /tmp/golden.XXXXXX)
"$PY2" "$HERE/legacy_hvm.py" 64 > "$T/hvm64.legacy"
"$PY2" "$HERE/legacy_hvm.py" 32 > "$T/hvm32.legacy"
"$PY2" "$HERE/legacy_hvm.py" 64 xl > "$T/hvm64-xl.legacy"
convert -i "$T/hvm64.legacy" -o "$OUT/hvm64.libxl" -w 64 -g hvm -f libxl
convert -i "$T/hvm32.legacy" -o "$OUT/hvm32.libxl" -w 32 -g hvm -f libxl
convert -i "$T/hvm64.legacy" -o "$OUT/hvm64.libxc" -w 64 -g hvm -f libxc --skip-qemu
convert -i "$T/hvm64-xl.legacy" -o "$OUT/hvm64.xl" -w 64 -g hvm -f libxl -x
: > "$OUT/xen-verify.txt"
for f in hvm64.libxl:libxl hvm32.libxl:libxl hvm64.libxc:libxc hvm64.xl:xl; do
  name=${f%%:*}; fmt=${f##*:}
  set +e; verify -v -f "$fmt" -i "$OUT/$name" > "$T/v.out" 2>&1; rc=$?; set -e
  { echo "== verify-stream-v2 -v -f $fmt -i $name -> exit $rc"; cat "$T/v.out"; } >> "$OUT/xen-verify.txt"
done
rm -rf "$T" "$PYP"
ls -l "$OUT"
