#!/usr/bin/env bash
# Resilience4j 2.4.0 under JMH beside Palisade's criterion numbers, on the same machine.
#
#   bash benches/jmh/run.sh
#
# 1. runs the criterion benches (breaker, resilience) unless SKIP_CRITERION=1,
# 2. builds and runs the JMH benchmarks (one fork, single thread, average time per call),
# 3. prints per-call overhead over the bare call for each primitive and the ratio
#    Palisade / Resilience4j (goal: at most 0.2).
#
# Both sides call a trivial payload (return the argument); overhead = primitive - bare.
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(cd ../.. && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

if [ "${SKIP_CRITERION:-0}" != 1 ]; then
  (cd "$ROOT" && cargo bench -p palisade-benches --bench breaker --bench resilience)
fi

[ -f target/benchmarks.jar ] || mvn -q -B package -DskipTests
java -jar target/benchmarks.jar -f 1 -wi 3 -w 1s -i 5 -r 1s -t 1 -rf json -rff target/jmh.json \
  Resilience4jBenchmark

python3 - "$TARGET/criterion" target/jmh.json <<'PY'
import json, os, sys
crit, jmh_path = sys.argv[1], sys.argv[2]

def median(group, name):
    p = os.path.join(crit, group, name, "new", "estimates.json")
    try:
        with open(p) as f:
            return json.load(f)["median"]["point_estimate"]
    except OSError:
        return None

jmh = {r["benchmark"].rsplit(".", 1)[1]: r["primaryMetric"]["score"] for r in json.load(open(jmh_path))}
rows = [
    ("circuit breaker", "circuitBreaker", "closed"),
    ("bulkhead", "bulkhead", "resilience-bulkhead"),
    ("rate limiter", "rateLimiter", "resilience-ratelimit"),
    ("retry", "retry", "resilience-retry"),
]
print("| primitive | Resilience4j ns/call | R4j overhead ns | Palisade ns/call | Palisade overhead ns | Palisade / R4j overhead |")
print("|---|---:|---:|---:|---:|---:|")
for label, jname, group in rows:
    r4j, direct = jmh.get(jname), jmh.get("direct")
    ours, bare = median(group, "palisade"), median(group, "bare service")
    if None in (r4j, direct, ours, bare):
        print(f"| {label} | missing data | | | | |")
        continue
    ro, po = r4j - direct, ours - bare
    ratio = f"{po / ro:.2f}" if ro > 0 else "-"
    print(f"| {label} | {r4j:.1f} | {ro:.1f} | {ours:.1f} | {po:.1f} | {ratio} |")
print(f"\nJMH direct call: {jmh.get('direct', float('nan')):.2f} ns")
PY
