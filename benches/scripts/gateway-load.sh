#!/usr/bin/env bash
# Gateway load bench: direct backend vs nginx vs haproxy vs palisade-gateway (minimal chain and a
# typical chain), same backend, same wrk load, interleaved rounds, as in
# ../shared/reference/gateway-bench-baseline.md.
#
# usage: benches/scripts/gateway-load.sh [pinned|unpinned] [ROUNDS] [DURATION]
#   pinned:   wrk on CPU0; backend (1 worker), nginx (1 worker), haproxy (nbthread 1) and the
#             gateway (--workers 1) on CPU1
#   unpinned: no pinning; 2 workers/threads each
# env: NICE=-15 (written to /proc/self/autogroup when allowed), SKIP_BUILD=1, CONNS=64,
#      BASE_PORT=28180 (uses BASE_PORT..BASE_PORT+6)
# Needs: wrk, nginx, haproxy, redis-server (Debian: apt-get install -y --no-install-recommends
# nginx-light haproxy wrk redis-server).
set -euo pipefail
MODE=${1:-pinned}
ROUNDS=${2:-3}
DUR=${3:-10s}
CONNS=${CONNS:-64}
BASE_PORT=${BASE_PORT:-28180}
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN="$TARGET_DIR/release"

for tool in wrk nginx haproxy redis-server redis-cli taskset; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found (apt-get install -y --no-install-recommends nginx-light haproxy wrk)" >&2; exit 1; }
done

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && export CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 &&
    cargo build --release -p palisade-gateway --features mimalloc --bin palisade-gateway &&
    # The example is built on its own: building it with the binary would unify the dev-dependencies'
    # features (tokio's test-util, whose clock checks for pause) into the gateway binary.
    cargo build --release -p palisade-gateway --example bench-backend)
fi
BACKEND_BIN="$BIN/examples/bench-backend"
GATEWAY_BIN="$BIN/palisade-gateway"
[ -x "$BACKEND_BIN" ] && [ -x "$GATEWAY_BIN" ] || { echo "error: release binaries missing under $BIN" >&2; exit 1; }

if [ -n "${NICE:-}" ]; then echo "$NICE" > /proc/self/autogroup 2>/dev/null || echo "note: could not set autogroup nice" >&2; fi

P_BE=$BASE_PORT; P_NG=$((BASE_PORT+1)); P_HA=$((BASE_PORT+2)); P_GW=$((BASE_PORT+3)); P_GT=$((BASE_PORT+4))
P_GR=$((BASE_PORT+5)); P_RD=$((BASE_PORT+6))
for p in $P_BE $P_NG $P_HA $P_GW $P_GT $P_GR $P_RD; do
  if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "error: port $p is taken; set BASE_PORT" >&2; exit 1; fi
done

if [ "$MODE" = pinned ]; then
  WRK_PIN="taskset -c 0"; SRV_PIN="taskset -c 1"; WORKERS=1
else
  WRK_PIN=""; SRV_PIN=""; WORKERS=2
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/nginx/tmp"
cat > "$WORK/nginx/nginx.conf" <<NGX
worker_processes $WORKERS;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http { access_log off;
  client_body_temp_path $WORK/nginx/tmp; proxy_temp_path $WORK/nginx/tmp;
  fastcgi_temp_path $WORK/nginx/tmp; uwsgi_temp_path $WORK/nginx/tmp; scgi_temp_path $WORK/nginx/tmp;
  upstream backend { server 127.0.0.1:$P_BE; keepalive 128; keepalive_requests 100000; }
  server { listen 127.0.0.1:$P_NG backlog=4096;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGX
cat > "$WORK/haproxy.cfg" <<HAP
global
    nbthread $WORKERS
    maxconn 8000
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:$P_HA
    default_backend be
backend be
    server s1 127.0.0.1:$P_BE
HAP
# Minimal chain: what every proxied request gets (hop-by-hop strip, X-Forwarded-*/Forwarded,
# request id, traceparent); no route filters.
cat > "$WORK/gw-empty.yaml" <<GW
listen: 127.0.0.1:$P_GW
routes:
  - id: all
    upstream: http://127.0.0.1:$P_BE
GW
# Typical chain (issue 8: request id, rate limit, breaker, header rewrite): path predicate +
# method, header rewrites both ways, an in-process rate limit per client IP (a bucket large enough
# never to refuse; its RateLimit-* headers are written on every answer), a circuit breaker with a
# fallback and a timeout. Every chain also gets the request id, trace and forwarded headers.
cat > "$WORK/gw-typical.yaml" <<GW
listen: 127.0.0.1:$P_GT
routes:
  - id: api
    upstream: http://127.0.0.1:$P_BE
    timeout: 5s
    predicates: { path_prefix: /, method: [GET, HEAD] }
    local_rate_limit: { rate: 1000000, period: 1s, burst: 1000000, key: client_ip }
    filters:
      - add_request_header: { name: x-gateway, value: palisade }
      - remove_request_header: cookie
      - set_response_header: { name: x-frame-options, value: DENY }
      - remove_response_header: server
    breaker:
      settings: { window: { type: count, size: 100 }, minimum_calls: 20, trip: { failure_rate: 0.5 } }
      fallback: { status: 503, body: "resting" }
GW

# Typical chain plus a cluster-wide rate limit: one Redis token-bucket script call per request
# (a bucket large enough never to refuse), Redis on the server CPU.
sed -e "s/$P_GT/$P_GR/" -e 's/^  - id: api$/  - id: api-rl/' "$WORK/gw-typical.yaml" > "$WORK/gw-typical-rl.yaml"
cat >> "$WORK/gw-typical-rl.yaml" <<GW
    rate_limit: { replenish_rate: 10000000, burst: 100000000 }
redis: redis://127.0.0.1:$P_RD
GW

$SRV_PIN redis-server --bind 127.0.0.1 --port "$P_RD" --save "" --appendonly no >"$WORK/redis.log" 2>&1 & PID_RD=$!; PIDS+=($PID_RD)
for _ in $(seq 1 50); do [ "$(redis-cli -p "$P_RD" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
$SRV_PIN "$BACKEND_BIN" "127.0.0.1:$P_BE" "$WORKERS" & PID_BE=$!; PIDS+=($PID_BE)
$SRV_PIN nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>"$WORK/nginx/stderr" & PID_NG=$!; PIDS+=($PID_NG)
$SRV_PIN haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 & PID_HA=$!; PIDS+=($PID_HA)
$SRV_PIN "$GATEWAY_BIN" "$WORK/gw-empty.yaml" --workers "$WORKERS" 2>"$WORK/gw-empty.log" & PID_GW=$!; PIDS+=($PID_GW)
$SRV_PIN "$GATEWAY_BIN" "$WORK/gw-typical.yaml" --workers "$WORKERS" 2>"$WORK/gw-typical.log" & PID_GT=$!; PIDS+=($PID_GT)
$SRV_PIN "$GATEWAY_BIN" "$WORK/gw-typical-rl.yaml" --workers "$WORKERS" 2>"$WORK/gw-typical-rl.log" & PID_GR=$!; PIDS+=($PID_GR)

for p in $P_BE $P_NG $P_HA $P_GW $P_GT $P_GR; do
  ok=0
  for _ in $(seq 1 100); do
    if curl -fs -o /dev/null "http://127.0.0.1:$p/"; then ok=1; break; fi
    sleep 0.1
  done
  [ $ok = 1 ] || { echo "error: nothing answers on 127.0.0.1:$p" >&2; cat "$WORK"/*.log "$WORK/nginx/stderr" >&2 || true; exit 1; }
done

# CPU ticks of a process and its direct children (nginx workers): utime+stime by default, or the
# /proc/PID/stat fields given (`ticks_of PID '$15'`: stime, where the loopback TCP work lands).
ticks_of() {
  local total=0 pid fields=${2:-'$14 + $15'}
  for pid in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$pid/stat" ] || continue
    total=$((total + $(awk "{print $fields}" "/proc/$pid/stat")))
  done
  echo "$total"
}
cpu_of() { ticks_of "$1"; }
sys_of() { ticks_of "$1" '$15'; }
TICKS=$(getconf CLK_TCK)
to_ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v+0} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000} else print v }'; }

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
declare -A URL=( [direct]=$P_BE [nginx]=$P_NG [haproxy]=$P_HA [gateway-min]=$P_GW [gateway-typical]=$P_GT [gateway-typical-rl]=$P_GR )
declare -A PROXY=( [direct]="" [nginx]=$PID_NG [haproxy]=$PID_HA [gateway-min]=$PID_GW [gateway-typical]=$PID_GT [gateway-typical-rl]=$PID_GR )
ORDER=(direct nginx haproxy gateway-min gateway-typical gateway-typical-rl)
for round in $(seq 1 "$ROUNDS"); do
  for t in "${ORDER[@]}"; do
    be0=$(cpu_of $PID_BE); px0=0; [ -n "${PROXY[$t]}" ] && px0=$(cpu_of "${PROXY[$t]}")
    bs0=$(sys_of $PID_BE); ps0=0; [ -n "${PROXY[$t]}" ] && ps0=$(sys_of "${PROXY[$t]}")
    out=$($WRK_PIN wrk -t1 -c"$CONNS" -d"$DUR" --latency "http://127.0.0.1:${URL[$t]}/")
    be1=$(cpu_of $PID_BE); px1=0; [ -n "${PROXY[$t]}" ] && px1=$(cpu_of "${PROXY[$t]}")
    bs1=$(sys_of $PID_BE); ps1=0; [ -n "${PROXY[$t]}" ] && ps1=$(sys_of "${PROXY[$t]}")
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    total=$(awk '/requests in/ {print $1}' <<<"$out")
    p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
    errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
    # Proxy CPU per request in microseconds (backend excluded); direct: the backend's own.
    if [ -n "${PROXY[$t]}" ]; then ticks=$((px1 - px0)); sticks=$((ps1 - ps0)); else ticks=$((be1 - be0)); sticks=$((bs1 - bs0)); fi
    us=$(awk -v t="$ticks" -v hz="$TICKS" -v n="$total" 'BEGIN{ printf "%.1f", (n>0) ? t/hz/n*1e6 : 0 }')
    sus=$(awk -v t="$sticks" -v hz="$TICKS" -v n="$total" 'BEGIN{ printf "%.1f", (n>0) ? t/hz/n*1e6 : 0 }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$t" "$rps" "$p99" "$us" "$sus" "$errs" >> "$RESULTS"
    printf 'round %s %-16s %10s req/s  p99 %7s ms  proxy CPU %6s us/req (kernel %5s) %s\n' "$round" "$t" "$rps" "$p99" "$us" "$sus" "$errs"
  done
done

echo
echo "mode=$MODE rounds=$ROUNDS duration=$DUR conns=$CONNS (median of rounds; req/s min-max)"
median() { sort -n | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
declare -A MED
printf '| target | req/s median (min-max) | p99 ms (median) | proxy CPU us/req (median) | of which kernel |\n|---|---|---|---|---|\n'
for t in "${ORDER[@]}"; do
  r=$(awk -v t="$t" '$2==t {print $3}' "$RESULTS" | median)
  lo=$(awk -v t="$t" '$2==t {print $3}' "$RESULTS" | sort -n | head -1)
  hi=$(awk -v t="$t" '$2==t {print $3}' "$RESULTS" | sort -n | tail -1)
  p=$(awk -v t="$t" '$2==t {print $4}' "$RESULTS" | median)
  u=$(awk -v t="$t" '$2==t {print $5}' "$RESULTS" | median)
  k=$(awk -v t="$t" '$2==t {print $6}' "$RESULTS" | median)
  MED[$t]=$r
  printf '| %s | %s (%s-%s) | %s | %s | %s |\n' "$t" "$r" "$lo" "$hi" "$p" "$u" "$k"
done
echo
for g in gateway-min gateway-typical gateway-typical-rl; do
  awk -v g="$g" -v a="${MED[$g]}" -v n="${MED[nginx]}" -v h="${MED[haproxy]}" \
    'BEGIN{ printf "%s: %.2fx nginx, %.2fx haproxy (req/s)\n", g, a/n, a/h }'
done
