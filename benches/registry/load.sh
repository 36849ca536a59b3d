#!/usr/bin/env bash
# Registry load comparison, one run, same machine: our palisade-registry against the stock Java
# Eureka server (Spring Cloud 2025.1.4, registry-server/tests/java). For each server: register N
# instances, keep simulated heartbeats going (N per 30 s), then full fetches (JSON, gzip) from C
# concurrent clients for S seconds; report latency, throughput and the server's RSS, then ratios.
# Both servers run with their default read-only response cache (30 s).
#
#   bash benches/registry/load.sh [INSTANCES=10000] [SECS=10] [CONCURRENCY=4]
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-10000}"; SECS="${2:-10}"; C="${3:-4}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"

cargo build --release -q -p palisade-registry-server --bin palisade-registry --example registry_load
BIN="$CARGO_TARGET_DIR/release/palisade-registry"
LOAD="$CARGO_TARGET_DIR/release/examples/registry_load"
JAVA_DIR="registry-server/tests/java"
JAR="$JAVA_DIR/eureka-server/target/eureka-server.jar"
[ -f "$JAR" ] || (cd "$JAVA_DIR" && mvn -B -q -DskipTests package)

free_port() { local p=$1; while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done; echo "$p"; }
wait_up() { for _ in $(seq 1 180); do curl -sf -o /dev/null "$1/apps/" && return 0; sleep 1; done; echo "server at $1 did not start" >&2; return 1; }

PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

port=$(free_port 28761)
"$BIN" --bind "127.0.0.1:$port" >/dev/null 2>&1 &
ours=$!; PIDS+=("$ours")
wait_up "http://127.0.0.1:$port/eureka"
OURS=$("$LOAD" --url "http://127.0.0.1:$port/eureka" --instances "$N" --secs "$SECS" --concurrency "$C" --pid "$ours" | grep '^RESULT')
kill "$ours"; wait "$ours" 2>/dev/null || true

port=$(free_port 28861)
java -jar "$JAR" --server.port="$port" --eureka.server.use-read-only-response-cache=true >/dev/null 2>&1 &
java_pid=$!; PIDS+=("$java_pid")
wait_up "http://127.0.0.1:$port/eureka"
JAVA=$("$LOAD" --url "http://127.0.0.1:$port/eureka" --instances "$N" --secs "$SECS" --concurrency "$C" --pid "$java_pid" | grep '^RESULT')
kill "$java_pid"; wait "$java_pid" 2>/dev/null || true

field() { sed -E "s/.* $2=([^ ]+).*/\1/" <<<"$1"; }
echo "$OURS"
echo "$JAVA"
printf '\n| server | instances | full fetches/s | p50 ms | p99 ms | max ms | gzip body bytes | RSS MiB |\n|---|---|---|---|---|---|---|---|\n'
for row in "palisade-registry:$OURS" "Java Eureka (Spring Cloud 2025.1.4):$JAVA"; do
  name="${row%%:RESULT*}"; r="RESULT${row#*:RESULT}"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$(field "$r" instances)" "$(field "$r" throughput_rps)" \
    "$(field "$r" p50_ms)" "$(field "$r" p99_ms)" "$(field "$r" max_ms)" "$(field "$r" body_bytes)" "$(field "$r" rss_mib)"
done
awk -v a="$(field "$OURS" throughput_rps)" -v b="$(field "$JAVA" throughput_rps)" \
    -v ra="$(field "$OURS" rss_mib)" -v rb="$(field "$JAVA" rss_mib)" \
    'BEGIN { printf "\nthroughput ratio (ours / Java): %.1fx; memory ratio (ours / Java): %.3f\n", a / b, ra / rb }'
