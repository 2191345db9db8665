#!/usr/bin/env bash
# Starts a real S3 server on loopback for tests: OpenStack Swift (Debian packages) with its s3api
# middleware and tempauth, all in one folder ($SWIFT_BASE, default /tmp/ferry-s3). Idempotent: if
# the server already answers, it only exports the variables.
#
#   bash tools/s3/swift-s3.sh          # start, print the variables
#   source tools/s3/swift-s3.sh        # start and export them into this shell (what .ci/run does)
#   bash tools/s3/swift-s3-stop.sh     # stop and remove the folder
#
# Client settings it exports: S3_ENDPOINT=http://127.0.0.1:$S3_PORT (default 18080),
# S3_ACCESS_KEY_ID=test:tester, S3_SECRET_ACCESS_KEY=testing, S3_REGION=us-east-1,
# S3_FORCE_PATH_STYLE=true. With AWS SDK v3 set requestChecksumCalculation and
# responseChecksumValidation to 'WHEN_REQUIRED' (Swift refuses aws-chunked streamed uploads).
# Installs swift swift-proxy swift-object swift-container swift-account python3-swift memcached
# with apt-get when they are missing (needs root).

_ferry_s3_main() {
  local B=${SWIFT_BASE:-/tmp/ferry-s3}
  local PORT=${S3_PORT:-18080}
  local MC_PORT=${MEMCACHE_PORT:-11299}
  local endpoint="http://127.0.0.1:$PORT"

  _ferry_s3_export() {
    export S3_ENDPOINT="$endpoint" S3_ACCESS_KEY_ID=test:tester S3_SECRET_ACCESS_KEY=testing
    export S3_REGION=us-east-1 S3_FORCE_PATH_STYLE=true
    echo "S3_ENDPOINT=$S3_ENDPOINT S3_ACCESS_KEY_ID=$S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY=$S3_SECRET_ACCESS_KEY S3_REGION=$S3_REGION S3_FORCE_PATH_STYLE=$S3_FORCE_PATH_STYLE"
  }

  if curl -sf "$endpoint/healthcheck" >/dev/null 2>&1; then
    echo "swift s3api already up on $PORT"
    _ferry_s3_export
    return 0
  fi

  local need=()
  command -v swift-proxy-server >/dev/null 2>&1 || need+=(swift swift-proxy swift-object swift-container swift-account python3-swift)
  command -v memcached >/dev/null 2>&1 || [ -x /usr/bin/memcached ] || need+=(memcached)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}"
    apt-get update -qq || return 1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || return 1
    # The packages' own services are not wanted (we run ours on other ports).
    service memcached stop >/dev/null 2>&1 || true
  fi

  # A stale half-started tree from an earlier run: stop what it left, start afresh.
  if [ -d "$B/pid" ]; then
    local f
    for f in "$B"/pid/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
    sleep 0.3
  fi
  rm -rf "$B"
  mkdir -p "$B"/etc "$B"/node/d1 "$B"/log "$B"/pid || return 1

  cat > "$B/etc/swift.conf" <<C
[swift-hash]
swift_hash_path_suffix = ferry
swift_hash_path_prefix = ferry
[storage-policy:0]
name = Policy-0
default = yes
C
  local user; user=$(id -un)
  local common="[DEFAULT]
swift_dir = $B/etc
devices = $B/node
mount_check = false
bind_ip = 127.0.0.1
user = $user
workers = 0
log_level = WARNING
"
  local srv port
  for srv in account:16202 container:16201 object:16200; do
    port=${srv##*:}; srv=${srv%%:*}
    printf '%s\nbind_port = %s\n[pipeline:main]\npipeline = %s-server\n[app:%s-server]\nuse = egg:swift#%s\n' \
      "$common" "$port" "$srv" "$srv" "$srv" > "$B/etc/$srv-server.conf"
  done
  cat > "$B/etc/proxy-server.conf" <<C
[DEFAULT]
swift_dir = $B/etc
bind_ip = 127.0.0.1
bind_port = $PORT
user = $user
workers = 0
log_level = WARNING
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk s3api tempauth copy slo dlo proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
[filter:s3api]
use = egg:swift#s3api
location = us-east-1
[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MC_PORT
[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
C
  local ring
  for srv in account:16202 container:16201 object:16200; do
    port=${srv##*:}; ring=${srv%%:*}
    (cd "$B/etc" && swift-ring-builder "$ring.builder" create 6 1 1 >/dev/null \
      && swift-ring-builder "$ring.builder" add "r1z1-127.0.0.1:$port/d1" 100 >/dev/null \
      && { swift-ring-builder "$ring.builder" rebalance >/dev/null || true; }) || return 1
  done

  local mc; mc=$(command -v memcached || echo /usr/bin/memcached)
  nohup "$mc" -l 127.0.0.1 -p "$MC_PORT" -U 0 -m 64 -u "$user" > "$B/log/memcached.log" 2>&1 &
  echo $! > "$B/pid/memcached.pid"
  for srv in account container object proxy; do
    nohup "swift-$srv-server" "$B/etc/$srv-server.conf" > "$B/log/$srv.log" 2>&1 &
    echo $! > "$B/pid/$srv.pid"
  done
  local i
  for i in $(seq 1 900); do
    if curl -sf "$endpoint/healthcheck" >/dev/null 2>&1; then
      echo "swift s3api up on $PORT"
      _ferry_s3_export
      return 0
    fi
    sleep 0.1
  done
  echo "swift failed to start; logs in $B/log" >&2
  tail -n 20 "$B"/log/*.log >&2
  return 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  _ferry_s3_main; exit $?
else
  _ferry_s3_main
fi
