#!/usr/bin/env bash
# User-space instructions per request of the gateway binary (callgrind), for the empty and the
# typical chain of gateway-load.sh: the difference between runs of 3,000 and 1,000 requests
# (16 keep-alive connections, `--workers 1`) divided by 2,000, so start-up and shutdown cancel.
# These counts do not move with the machine's load.
#
#   CARGO_TARGET_DIR=... benches/scripts/gateway-instructions.sh     # builds release, thin LTO, mimalloc
#   SKIP_BUILD=1 ... (reuse the binaries)
# Needs valgrind and python3. Starts and stops (by PID) everything it uses.
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=${CARGO_TARGET_DIR:-target}
if [ -z "${SKIP_BUILD:-}" ]; then
    CARGO_PROFILE_RELEASE_LTO=thin CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
        cargo build --release -p palisade-gateway --features mimalloc --bin palisade-gateway --example bench-backend
fi
GATEWAY_BIN=${GATEWAY_BIN:-$TARGET/release/palisade-gateway}
BACKEND_BIN=${BACKEND_BIN:-$TARGET/release/examples/bench-backend}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; if [ -n "${KEEP:-}" ]; then echo "callgrind files kept in $WORK" >&2; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

P_BE=$(free_port)
"$BACKEND_BIN" "127.0.0.1:$P_BE" 1 & PIDS+=($!)
wait_port "$P_BE"
P_GW=$(free_port)
cat > "$WORK/empty.yaml" <<GW
listen: 127.0.0.1:$P_GW
routes:
  - id: all
    upstream: http://127.0.0.1:$P_BE
GW
cat > "$WORK/typical.yaml" <<GW
listen: 127.0.0.1:$P_GW
routes:
  - id: api
    upstream: http://127.0.0.1:$P_BE
    timeout: 5s
    predicates: { path_prefix: /, method: [GET, HEAD] }
    filters:
      - add_request_header: { name: x-gateway, value: palisade }
      - remove_request_header: cookie
      - set_response_header: { name: x-frame-options, value: DENY }
      - remove_response_header: server
    breaker:
      settings: { window: { type: count, size: 100 }, minimum_calls: 20, trip: { failure_rate: 0.5 } }
      fallback: { status: 503, body: "resting" }
GW

# Instructions of one gateway run serving $2 requests with routes file $1.
run() {
    local out="$WORK/cg.$(basename "$1").$2"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$GATEWAY_BIN" "$1" --workers 1 2>"$out.log" &
    local pid=$!
    PIDS+=($pid)
    wait_port "$P_GW"
    python3 benches/scripts/http-load.py "$P_GW" "$2" 16
    kill -TERM "$pid"
    wait "$pid" || true
    grep -E '^(summary|totals):' "$out" | head -1 | awk '{print $2}'
}

for chain in ${CHAINS:-empty typical}; do
    lo=$(run "$WORK/$chain.yaml" 1000)
    hi=$(run "$WORK/$chain.yaml" 3000)
    echo "$chain: 1000 requests $lo, 3000 requests $hi, instructions/request $(( (hi - lo) / 2000 ))"
done
