#!/bin/sh
# Installs the Ferry agent bundle this script came in on a Xen dom0: nothing is compiled or
# downloaded. Run as root from the unpacked bundle:
#   tar xzf ferry-agent-<version>-linux-<arch>.tar.gz && sudo ./ferry-agent-<version>/install.sh
# Puts the bundle in /opt/ferry/<version>, points /opt/ferry/current at it, installs the systemd unit,
# and creates /etc/ferry/agent.env from the example when there is none. Does not start the agent.
# ROOT=/some/dir installs under that folder instead of / (for checks; no systemctl then).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
version=$(cat "$here/VERSION")
root=${ROOT:-}
[ -n "$root" ] || [ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 1; }
"$here/node/bin/node" -e 'process.exit(0)' || { echo "install.sh: the bundled node does not run on this system (its C library too old, or another architecture?)" >&2; exit 1; }

mkdir -p "$root/opt/ferry" "$root/etc/ferry" "$root/etc/systemd/system"
if [ "$here" != "$root/opt/ferry/$version" ]; then
  rm -rf "$root/opt/ferry/$version.new"
  cp -a "$here" "$root/opt/ferry/$version.new"
  rm -rf "$root/opt/ferry/$version"
  mv "$root/opt/ferry/$version.new" "$root/opt/ferry/$version"
fi
ln -sfn "$version" "$root/opt/ferry/current"
cp "$here/ferry-agent.service" "$root/etc/systemd/system/ferry-agent.service"
if [ ! -e "$root/etc/ferry/agent.env" ]; then
  (umask 077 && cp "$here/agent.env.example" "$root/etc/ferry/agent.env")
  echo "created /etc/ferry/agent.env: fill it in (deploy/README.md, 'Adding a dom0 to a fleet')"
fi
chmod 600 "$root/etc/ferry/agent.env"
if [ -z "$root" ] && command -v systemctl >/dev/null; then systemctl daemon-reload; fi
echo "Ferry agent $version installed in /opt/ferry/$version; then: systemctl enable --now ferry-agent"
