#!/usr/bin/env bash
# Makes the Ferry agent bundle for dom0s: a tarball with a Node.js runtime, the agent's code and its
# production dependencies (prebuilt; nothing to compile on the dom0), the systemd unit, an example
# configuration and install.sh. Run on a build machine with npm access, from the repository:
#   deploy/xl-agent/make-bundle.sh [--node /path/to/node] [--out DIR]
# --node: the node binary to ship (default: the one on PATH). Ship one built for the dom0's C
# library and architecture, e.g. bin/node of the official linux-x64 tarball (glibc >= 2.28).
set -euo pipefail
cd "$(dirname "$0")/../.."
node_bin=$(command -v node)
out=$PWD/dist
while [ $# -gt 0 ]; do
  case $1 in
    --node) node_bin=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--node PATH] [--out DIR]" >&2; exit 2 ;;
  esac
done
version=$(node -p 'require("./package.json").version')-$(git rev-parse --short HEAD 2>/dev/null || echo local)
arch=$("$node_bin" -p process.arch)
name=ferry-agent-$version
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
b=$stage/$name
mkdir -p "$b/app" "$b/node/bin"
cp package.json package-lock.json "$b/app/"
tar -c --exclude=node_modules --exclude=.state --exclude=dist libs apps | tar -x -C "$b/app"
(cd "$b/app" && npm ci --omit=dev --prefer-offline --no-audit --no-fund --loglevel=error)
(cd "$b/app" && find apps libs -name '*.test.ts' -delete && rm -rf apps/e2e apps/dashboard apps/*/test libs/*/test apps/*/bench libs/*/bench)
cp "$(readlink -f "$node_bin")" "$b/node/bin/node"
cp deploy/xl-agent/ferry-agent.service deploy/xl-agent/agent.env.example deploy/xl-agent/install.sh "$b/"
chmod +x "$b/install.sh"
echo "$version" >"$b/VERSION"
cat >"$b/README.md" <<EOT
Ferry agent $version for Xen dom0s ($arch). Install: sudo ./install.sh, fill /etc/ferry/agent.env,
systemctl enable --now ferry-agent. The walk-through is "Adding a dom0 to a fleet" in deploy/README.md
of the Ferry repository.
EOT
mkdir -p "$out"
tar -C "$stage" -I "gzip -1" -cf "$out/$name-linux-$arch.tar.gz" "$name"
echo "$out/$name-linux-$arch.tar.gz ($(du -h "$out/$name-linux-$arch.tar.gz" | cut -f1))"
