#!/usr/bin/env bash
# Instructions per request for each balancer, counted by callgrind: the difference between runs of
# 40,000 and 20,000 requests, divided by 20,000 (set-up, including Maglev's table build, cancels
# out). Unlike wall-clock medians, these counts do not move when the machine is busy.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build -q --release -p palisade-benches --example balancer_calls
bin="${CARGO_TARGET_DIR:-target}/release/examples/balancer_calls"
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" "$3" 2>&1 | grep -oP 'Collected : \K[0-9]+'; }
echo "| endpoints | implementation | instructions/request |"
echo "|---:|---|---:|"
for e in 10 100; do
  for impl in bare tower-peak-ewma tower-pending round-robin random weighted least-outstanding peak-ewma peak-ewma-outlier maglev; do
    a=$(count "$impl" "$e" 20000); b=$(count "$impl" "$e" 40000)
    echo "| $e | $impl | $(( (b - a) / 20000 )) |"
  done
done
