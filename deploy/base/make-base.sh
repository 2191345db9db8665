#!/usr/bin/env bash
# Makes a stand-in for the Node base image from this machine's own files, for builds where no image
# registry is reachable (deploy:check, CI): this machine's node and npm, a POSIX shell and the few
# coreutils the Dockerfiles' RUN lines use, each with the shared libraries ldd names, CA certificates,
# and a `node` user (uid 1000) as in the official node images. Imports it with `podman import`.
#
#   deploy/base/make-base.sh [IMAGE]     (default localhost/ferry-base:node)
#
# The image is rebuilt only when this script or the node binary changed (a label records both).
set -euo pipefail
image=${1:-localhost/ferry-base:node}
node_bin=$(readlink -f "$(command -v node)")
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
stamp=$( { sha256sum "$0"; stat -c '%s %Y' "$node_bin"; node --version; } | sha256sum | cut -c1-16)

if [ "$(podman image inspect --format '{{ index .Labels "ferry.base.stamp" }}' "$image" 2>/dev/null || true)" = "$stamp" ]; then
  echo "base image $image is current ($stamp)"
  exit 0
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,usr/bin,usr/local/bin,usr/lib,etc/ssl/certs,tmp,root,home/node,app,var/tmp,dev,proc,sys}
chmod 1777 "$root/tmp" "$root/var/tmp"

# Copies a file to the same path under the root, following symlinks, with the libraries it loads.
copy_with_libs() {
  local f=$1
  install -D -m "$(stat -c '%a' "$(readlink -f "$f")")" "$(readlink -f "$f")" "$root$f"
  ldd "$f" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
    [ -e "$root$lib" ] || install -D "$(readlink -f "$lib")" "$root$lib"
  done
}

copy_with_libs /usr/bin/node
# The whole C library (as a Debian image has it), for native addons in npm packages (rollup, swc...).
dpkg -L libc6 | grep -E '^/lib.*\.so[.0-9]*$' | while read -r lib; do
  [ -e "$root$lib" ] || install -D "$(readlink -f "$lib")" "$root$lib"
done
for tool in sh rm find mkdir chown chmod touch ls cat env cp mv ln id; do
  p=$(command -v "$tool")
  copy_with_libs "$p"
  # Debian keeps these in /usr/bin with /bin as a symlink: both paths must work.
  [ -e "$root/bin/$tool" ] || ln -s "$p" "$root/bin/$tool"
  [ -e "$root/usr/bin/$tool" ] || ln -s "$p" "$root/usr/bin/$tool"
done
mkdir -p "$root/usr/local/lib/node_modules"
cp -a "$npm_dir/." "$root/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnode:x:1000:\nnogroup:x:65534:\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
chown 1000:1000 "$root/home/node"

tar --numeric-owner -C "$root" -cf "$root.tar" .
podman import --quiet \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  --change "LABEL ferry.base.stamp=$stamp" \
  --change 'CMD ["node"]' \
  "$root.tar" "$image" >/dev/null
rm -f "$root.tar"
echo "base image $image made ($(du -sh "$root" | cut -f1), node $(node --version), stamp $stamp)"
