#!/usr/bin/env bash
# Instructions per closed-state call for each circuit breaker, counted by callgrind: the
# difference between runs of 200,000 and 100,000 calls, divided by 100,000 (set-up cancels out).
# Usage: breaker-instructions.sh [implementation...] (default: the breakers; also bulkhead,
# ratelimit, retry, floor: see benches/examples/breaker_calls.rs).
# Unlike wall-clock medians, these counts do not move when the machine is busy.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build -q --release -p palisade-benches --no-default-features --example breaker_calls
bin=${CARGO_TARGET_DIR:-target}/release/examples/breaker_calls
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 | grep -oP 'Collected : \K[0-9]+'; }
echo "| implementation | instructions/call |"
echo "|---|---:|"
impls=("$@")
[ ${#impls[@]} -gt 0 ] || impls=(bare palisade tower-resilience recloser recloser-async failsafe failsafe-async)
for impl in "${impls[@]}"; do
  a=$(count "$impl" 100000); b=$(count "$impl" 200000)
  echo "| $impl | $(( (b - a) / 100000 )) |"
done
