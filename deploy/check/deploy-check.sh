#!/usr/bin/env bash
# npm run deploy:check: the deployment files, built and started as an operator would, on a machine
# with no image registry and no container runtime (only Debian's podman, which builds with
# --isolation=chroot but may not run containers here).
#
#  1. makes the stand-in base image (deploy/base/make-base.sh) and builds every Dockerfile on it;
#  2. for each image: its CMD's program and entry file exist, it runs as the `node` user;
#  3. runs each service straight from its image's root filesystem (podman create + mount, then
#     chroot as uid 1000 in a private mount namespace), on loopback: the suspend-store, the control
#     plane, a sim host agent holding only its own credential (minted by the control plane's
#     POST /v1/hosts/{id}/agent-credentials) and store token, and the dashboard; each answers
#     /healthz, and the agent registers with the control plane;
#  4. every service that takes a secret refuses the manifests' placeholder, naming the variable;
#  5. the dom0 agent bundle (deploy/xl-agent) builds, installs, and its xl agent starts and registers;
#  6. docker-compose.yml passes `docker-compose config`; every Kubernetes manifest passes the API
#     schemas (deploy/check/validate-k8s.mjs).
#
# Needs root (podman, mount, chroot), podman, docker-compose, and Redis on REDIS_URL (default
# redis://127.0.0.1:6379; its keys go under a prefix of their own and are removed at the end).
# Env: FERRY_CHECK_KEEP_IMAGES=1 keeps the built images (they are kept by default: a second run
# reuses their layers); FERRY_CHECK_SKIP_BUILD=1 uses images already built.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
BASE=localhost/ferry-base:node
TAG=check
SERVICES=(control-plane suspend-store host-agent dashboard)
RUN_ID=deploycheck-$$-$RANDOM
WORK=$(mktemp -d)
T0=$(date +%s)
pids=()
containers=()
failures=0

say() { printf '[deploy:check %3ss] %s\n' "$(($(date +%s) - T0))" "$*"; }
fail() {
  printf '[deploy:check] FAIL: %s\n' "$*" >&2
  failures=$((failures + 1))
}
need() { command -v "$1" >/dev/null || { echo "deploy:check: $1 is required ($2)" >&2; exit 2; }; }

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for c in "${containers[@]}"; do
    podman umount "$c" >/dev/null 2>&1 || true
    podman rm -f "$c" >/dev/null 2>&1 || true
  done
  if command -v redis-cli >/dev/null; then
    redis-cli -u "$REDIS_URL" --scan --pattern "$RUN_ID*" 2>/dev/null | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
    redis-cli -u "$REDIS_URL" acl deluser "$RUN_ID-agent-check-host" "$RUN_ID-agent-check-dom0" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

need podman 'apt-get install podman'
need docker-compose 'apt-get install docker-compose'
need unshare 'util-linux'
need curl 'apt-get install curl'
[ "$(id -u)" = 0 ] || { echo 'deploy:check: run as root (podman mount, chroot)' >&2; exit 2; }

free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
random_secret() { node -e "console.log(require('crypto').randomBytes(24).toString('base64url'))"; }

# --- 1. images -------------------------------------------------------------------------------
bash deploy/base/make-base.sh "$BASE"
npm_cache=$(npm config get cache)
mkdir -p "$npm_cache"
if [ "${FERRY_CHECK_SKIP_BUILD:-}" != 1 ]; then
  for s in "${SERVICES[@]}"; do
    t=$(date +%s)
    # --format docker keeps HEALTHCHECK; the host's npm cache makes `npm ci` in the build offline.
    if ! podman build --quiet --isolation=chroot --format docker --layers --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" \
      --build-arg NODE_IMAGE="$BASE" -v "$npm_cache:/root/.npm" \
      -f "deploy/$s/Dockerfile" -t "localhost/ferry/$s:$TAG" . >"$WORK/build-$s.log" 2>&1; then
      tail -40 "$WORK/build-$s.log" >&2
      fail "image $s does not build"
      continue
    fi
    say "built ferry/$s in $(($(date +%s) - t)) s ($(podman image inspect --format '{{.Size}}' "localhost/ferry/$s:$TAG" | awk '{printf "%d MB", $1/1e6}'))"
  done
fi
[ "$failures" = 0 ] || exit 1

# --- 2. entry points -------------------------------------------------------------------------
declare -A ROOT
for s in "${SERVICES[@]}"; do
  img="localhost/ferry/$s:$TAG"
  c=$(podman create --name "$RUN_ID-$s" "$img")
  containers+=("$c")
  ROOT[$s]=$(podman mount "$c")
  r=${ROOT[$s]}
  user=$(podman image inspect --format '{{.Config.User}}' "$img")
  wd=$(podman image inspect --format '{{.Config.WorkingDir}}' "$img")
  mapfile -t cmd < <(podman image inspect --format '{{range .Config.Cmd}}{{println .}}{{end}}' "$img" | sed '/^$/d')
  [ "$user" = node ] || fail "$s: runs as '$user', not node"
  [ -x "$r/usr/local/bin/${cmd[0]}" ] || [ -x "$r/usr/bin/${cmd[0]}" ] || fail "$s: ${cmd[0]} is not in the image"
  [ -f "$r$wd/${cmd[1]}" ] || fail "$s: entry ${cmd[1]} is missing from $wd"
  for f in "${cmd[@]:2}"; do case $f in *.ts) [ -f "$r$wd/$f" ] || fail "$s: $f is missing";; esac; done
  say "$s: CMD ${cmd[*]} (user $user, in $wd): present"
done
[ "$failures" = 0 ] || exit 1

# Runs the image's CMD (or the given command) from its root filesystem: a private mount namespace
# with /dev and /proc, chroot, uid 1000, the image's environment plus the given variables.
#   run_image SERVICE LOGFILE [VAR=value...] [-- command...]
run_image() {
  local s=$1 log=$2
  shift 2
  local img="localhost/ferry/$s:$TAG" vars=() cmd=()
  mapfile -t vars < <(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$img" | sed '/^$/d')
  while [ $# -gt 0 ] && [ "$1" != -- ]; do vars+=("$1"); shift; done
  [ "${1:-}" = -- ] && { shift; cmd=("$@"); }
  [ ${#cmd[@]} -gt 0 ] || mapfile -t cmd < <(podman image inspect --format '{{range .Config.Cmd}}{{println .}}{{end}}' "$img" | sed '/^$/d')
  local wd
  wd=$(podman image inspect --format '{{.Config.WorkingDir}}' "$img")
  unshare --mount --fork -- sh -c '
    r=$1; shift
    mount --make-rprivate / && mount --rbind /dev "$r/dev" && mount -t proc proc "$r/proc" || exit 97
    exec chroot --userspec=1000:1000 "$r" "$@"' sh "${ROOT[$s]}" /usr/bin/env -i -C "$wd" HOME=/home/node "${vars[@]}" "${cmd[@]}" >"$log" 2>&1
}

wait_http() { # URL SECONDS PID LOG
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { tail -20 "$4" >&2; return 1; }
    sleep 0.1
  done
  tail -20 "$4" >&2
  return 1
}

# --- 3. placeholders are refused alike ---------------------------------------------------------
# Each service is given the placeholder of the secret it needs most (the agent holds no admin token).
declare -A SECRET_OF=([control-plane]=FERRY_ADMIN_TOKEN [suspend-store]=FERRY_ADMIN_TOKEN [host-agent]=FERRY_AGENT_TOKEN)
for s in control-plane suspend-store host-agent; do
  v=${SECRET_OF[$s]}
  rc=0
  run_image "$s" "$WORK/placeholder-$s.log" "$v=replace-me" \
    REDIS_URL=redis://127.0.0.1:1 FERRY_HOST_ID=h FERRY_CONTROL_PLANE_URL=http://127.0.0.1:1 PORT=0 FERRY_DATA_PORT=0 || rc=$?
  if [ "$rc" = 1 ] && grep -q "$v: is a placeholder" "$WORK/placeholder-$s.log"; then
    say "$s refuses placeholders: $(head -1 "$WORK/placeholder-$s.log" | cut -c1-110)"
  else
    cat "$WORK/placeholder-$s.log" >&2
    fail "$s did not refuse a placeholder $v (exit $rc)"
  fi
done

# --- 4. the stack, each service from its image -------------------------------------------------
ADMIN=$(random_secret)
AGENT_SECRET=$(random_secret)
CP_STORE_TOKEN=$(random_secret)
AGENT_STORE_TOKEN=$(random_secret)
CP_PORT=$(free_port)
STORE_PORT=$(free_port)
AGENT_PORT=$(free_port)
DASH_PORT=$(free_port)

run_image suspend-store "$WORK/store.log" PORT="$STORE_PORT" HOST=127.0.0.1 FERRY_STORE_BACKEND=fs FERRY_STORE_DIR=/tmp/store \
  FERRY_ADMIN_TOKEN="$ADMIN" FERRY_STORE_TOKENS="$CP_STORE_TOKEN:read+write+admin,$AGENT_STORE_TOKEN:read+write" &
pids+=($!)
run_image control-plane "$WORK/cp.log" PORT="$CP_PORT" HOST=127.0.0.1 REDIS_URL="$REDIS_URL" FERRY_KEY_PREFIX="$RUN_ID" FERRY_QUEUE_PREFIX="$RUN_ID" \
  FERRY_ADMIN_TOKEN="$ADMIN" FERRY_AGENT_SECRET="$AGENT_SECRET" FERRY_STORE_URL="http://127.0.0.1:$STORE_PORT" FERRY_STORE_TOKEN="$CP_STORE_TOKEN" &
pids+=($!)
wait_http "http://127.0.0.1:$STORE_PORT/healthz" 60 "${pids[0]}" "$WORK/store.log" && say "suspend-store answers /healthz" || fail "suspend-store does not answer /healthz"
wait_http "http://127.0.0.1:$CP_PORT/healthz" 60 "${pids[1]}" "$WORK/cp.log" && say "control-plane answers /healthz" || fail "control-plane does not answer /healthz"
[ "$failures" = 0 ] || exit 1

cred=$(curl -fsS -X POST -H "authorization: Bearer $ADMIN" "http://127.0.0.1:$CP_PORT/v1/hosts/check-host/agent-credentials")
field() { node -e 'const o=JSON.parse(process.argv[1]); process.stdout.write(String(o[process.argv[2]]))' "$cred" "$1"; }
redis_host=${REDIS_URL#*://}
redis_host=${redis_host#*@}
agent_redis="redis://$(field redisUser):$(field redisPassword)@$redis_host"
# The agent gets its own token, its own Redis user and a read+write store token: no admin token, no S3 keys.
run_image host-agent "$WORK/agent.log" FERRY_HOST_ID=check-host FERRY_AGENT_TOKEN="$(field token)" REDIS_URL="$agent_redis" \
  FERRY_QUEUE_PREFIX="$RUN_ID" FERRY_CONTROL_PLANE_URL="http://127.0.0.1:$CP_PORT" FERRY_DATA_HOST=127.0.0.1 FERRY_DATA_PORT="$AGENT_PORT" \
  FERRY_DATA_URL="http://127.0.0.1:$AGENT_PORT" FERRY_STORE_TOKEN="$AGENT_STORE_TOKEN" \
  FERRY_DRIVER=sim FERRY_SIM_GUESTS=check-vm:pv64:64M:1 &
pids+=($!)
run_image dashboard "$WORK/dashboard.log" PORT="$DASH_PORT" HOST=127.0.0.1 FERRY_CONTROL_PLANE_URL="http://127.0.0.1:$CP_PORT" FERRY_STORE_URL="http://127.0.0.1:$STORE_PORT" &
pids+=($!)
wait_http "http://127.0.0.1:$AGENT_PORT/healthz" 60 "${pids[2]}" "$WORK/agent.log" && say "host-agent answers /healthz" || fail "host-agent does not answer /healthz"
wait_http "http://127.0.0.1:$DASH_PORT/healthz" 60 "${pids[3]}" "$WORK/dashboard.log" && say "dashboard answers /healthz (through to the control plane)" || fail "dashboard does not answer /healthz"
curl -fsS -o /dev/null "http://127.0.0.1:$DASH_PORT/" && say "dashboard serves its bundle" || fail "dashboard serves no index page"
state=
for _ in $(seq 100); do
  state=$(curl -fsS -H "authorization: Bearer $ADMIN" "http://127.0.0.1:$CP_PORT/v1/hosts/check-host" 2>/dev/null | node -e 'let t="";process.stdin.on("data",d=>t+=d).on("end",()=>{try{process.stdout.write(JSON.parse(t).state??"")}catch{}})' || true)
  [ "$state" = online ] && break
  sleep 0.2
done
[ "$state" = online ] && say "host-agent registered: check-host is online" || { tail -20 "$WORK/agent.log" >&2; fail "host-agent did not register (state '$state')"; }

# --- 5. the dom0 agent bundle ------------------------------------------------------------------
# Built, installed under a scratch root as install.sh does on a dom0, its unit verified, and its
# agent started from the installed tree with the xl driver (a scripted fake `xl` stands for Xen).
t=$(date +%s)
bundle=$(bash deploy/xl-agent/make-bundle.sh --out "$WORK/bundle" | tail -1 | cut -d' ' -f1)
mkdir -p "$WORK/dom0" && tar -C "$WORK/dom0" -xzf "$bundle"
ROOT="$WORK/root" sh "$WORK"/dom0/ferry-agent-*/install.sh >/dev/null
installed="$WORK/root/opt/ferry/current"
# The unit as installed, its paths pointed into the scratch root, so that systemd checks them too.
sed "s#/opt/ferry/current#$installed#g" "$WORK/root/etc/systemd/system/ferry-agent.service" >"$WORK/ferry-agent.service"
if ! command -v systemd-analyze >/dev/null; then
  say "xl agent bundle: $(basename "$bundle") installed (no systemd-analyze here: unit not verified)"
elif systemd-analyze verify "$WORK/ferry-agent.service" >"$WORK/unit.log" 2>&1; then
  say "xl agent bundle: $(basename "$bundle") ($(du -h "$bundle" | cut -f1)), installed, unit verified"
else
  cat "$WORK/unit.log" >&2
  fail "ferry-agent.service does not verify"
fi
mkdir -p "$WORK/fake-xl" && echo '[]' >"$WORK/fake-xl/domains.json"
cred=$(curl -fsS -X POST -H "authorization: Bearer $ADMIN" "http://127.0.0.1:$CP_PORT/v1/hosts/check-dom0/agent-credentials")
XL_PORT=$(free_port)
(cd "$installed/app" && exec env -i PATH=/usr/bin:/bin HOME=/tmp NODE_ENV=production FERRY_DRIVER=xl FERRY_XL_PATH="$REPO/apps/host-agent/test/fake-xl/xl" \
  FAKE_XL_DIR="$WORK/fake-xl" FERRY_STATE_DIR="$WORK/dom0-state" FERRY_HOST_ID=check-dom0 FERRY_AGENT_TOKEN="$(field token)" \
  REDIS_URL="redis://$(field redisUser):$(field redisPassword)@$redis_host" FERRY_QUEUE_PREFIX="$RUN_ID" FERRY_CONTROL_PLANE_URL="http://127.0.0.1:$CP_PORT" \
  FERRY_DATA_HOST=127.0.0.1 FERRY_DATA_PORT="$XL_PORT" FERRY_STORE_TOKEN="$AGENT_STORE_TOKEN" \
  "$installed/node/bin/node" apps/cli/bin/ferry.js serve host-agent) >"$WORK/xl-agent.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$XL_PORT/healthz" 60 "$!" "$WORK/xl-agent.log" || fail "the installed xl agent does not answer /healthz"
state=
for _ in $(seq 100); do
  state=$(curl -fsS -H "authorization: Bearer $ADMIN" "http://127.0.0.1:$CP_PORT/v1/hosts/check-dom0" 2>/dev/null | node -e 'let t="";process.stdin.on("data",d=>t+=d).on("end",()=>{try{const h=JSON.parse(t);process.stdout.write(h.state+" "+h.toolstack.xenVersion)}catch{}})' || true)
  [ "$state" = "online 4.17" ] && break
  sleep 0.2
done
[ "$state" = "online 4.17" ] && say "xl agent from the installed bundle registered: check-dom0 online, Xen 4.17 (from xl info) in $(($(date +%s) - t)) s" \
  || { tail -20 "$WORK/xl-agent.log" >&2; fail "the installed xl agent did not register (got '$state')"; }

# --- 6. compose and Kubernetes ---------------------------------------------------------------
compose_env=$WORK/compose.env
bash deploy/compose/make-env.sh >"$compose_env"
if docker-compose --env-file "$compose_env" -f docker-compose.yml config -q 2>"$WORK/compose.err"; then
  say "docker-compose.yml: valid ($(docker-compose --env-file "$compose_env" -f docker-compose.yml config --services | wc -l) services)"
else
  cat "$WORK/compose.err" >&2
  fail "docker-compose.yml does not validate"
fi
if docker-compose -f docker-compose.yml config -q >/dev/null 2>&1; then
  fail "docker-compose.yml accepts a missing FERRY_ADMIN_TOKEN"
fi
node deploy/check/validate-k8s.mjs deploy/k8s && say "Kubernetes manifests: valid" || fail "Kubernetes manifests do not validate"

if [ "$failures" != 0 ]; then
  say "$failures check(s) failed"
  exit 1
fi
say "all deployment checks passed"
