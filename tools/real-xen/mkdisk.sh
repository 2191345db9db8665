#!/bin/sh
# Copies the dom0 scripts, guest configs, node and the Ferry tree into the rootfs and makes disk.img.
# usage: mkdisk.sh [size]   (default 6G; the repository with node_modules is a few hundred MiB)
set -eu
RX=${RX:-/tmp/realxen}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
cd "$RX"
rm -rf rootfs/guests rootfs/out && mkdir -p rootfs/guests rootfs/out rootfs/usr/local/bin
cp "$HERE"/dom0/*.cfg "$HERE/dom0/dom0-run.sh" "$HERE/dom0/seed.sh" "$HERE/dom0/ferry-convert-helper" guest-initrd.gz rootfs/guests/
chmod +x rootfs/guests/ferry-convert-helper
cp "$HERE/dom0/dom0-init.sh" rootfs/dom0-init.sh && chmod +x rootfs/dom0-init.sh
cp "$(command -v node)" rootfs/usr/local/bin/node
# the tree at the SAME path as on the host, mtimes kept: the swc cache (node_modules/.cache/ferry-ts,
# keyed by path, size and mtime) warmed on the host is then valid in dom0 and nothing is transpiled there
node "$REPO/apps/cli/bin/run-ts.js" "$HERE/xl-check.ts" --warm
# and the commands seed.sh runs (the drop-in's bundle, the CLI's modules)
node "$REPO/apps/cli/bin/convert-legacy-stream.js" --version > /dev/null
node "$REPO/apps/cli/bin/ferry.js" stream convert --help > /dev/null
node "$REPO/apps/cli/bin/ferry.js" stream detect --help > /dev/null
mkdir -p "rootfs$(dirname "$REPO")" && rm -rf "rootfs$REPO"
cp -a "$REPO" "rootfs$REPO"
rm -rf "rootfs$REPO/.git" "rootfs$REPO/.nx"
echo "$REPO" > rootfs/guests/repo-path
rm -f disk.img
mkfs.ext4 -q -F -L rootfs -d rootfs disk.img "${1:-6G}"
ls -la disk.img
