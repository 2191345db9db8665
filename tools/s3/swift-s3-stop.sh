#!/usr/bin/env bash
# Stops the Swift s3api server that tools/s3/swift-s3.sh started and removes its folder.
B=${SWIFT_BASE:-/tmp/ferry-s3}
for f in "$B"/pid/*.pid; do
  [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
done
sleep 0.5
for f in "$B"/pid/*.pid; do
  [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
done
rm -rf "$B"
echo "swift s3api stopped"
