#!/usr/bin/env bash
# Resilience4j 2.4.0 (JMH) beside Palisade (criterion), same machine, same run, same trivial
# payload. Prints per-call overhead (each row's median minus its own baseline's median: JMH
# `direct`, criterion `bare service` of the same group) and the ratio. Our benches build without
# tokio's `test-util` (`--no-default-features`), as a production build would. Usage: benches/scripts/jvm-compare.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/../.."
quick=${1:-}
jmh_args=(-f 1 -wi 3 -w 2s -i 5 -r 2s)
crit_args=(--warm-up-time 2 --measurement-time 5)
if [ "$quick" = "--quick" ]; then jmh_args=(-f 1 -wi 1 -w 1s -i 2 -r 1s); crit_args=(--warm-up-time 1 --measurement-time 2); fi

echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
(cd benches/jmh && mvn -q -B -DskipTests package)
out=$(mktemp -d)
java -jar benches/jmh/target/benchmarks.jar "${jmh_args[@]}" -rf json -rff "$out/jmh.json" >"$out/jmh.log" 2>&1 \
  || { tail -30 "$out/jmh.log" >&2; exit 1; }

# Every criterion bench file that has a row to compare; missing files are skipped.
for bench in breaker resilience; do
  if [ -f "benches/benches/$bench.rs" ]; then
    cargo bench -q -p palisade-benches --no-default-features --bench "$bench" -- "${crit_args[@]}" >"$out/$bench.log" 2>&1 \
      || { tail -30 "$out/$bench.log" >&2; exit 1; }
  fi
done

target=${CARGO_TARGET_DIR:-target}
python3 - "$out/jmh.json" "$target/criterion" <<'PY'
import json, os, statistics, sys
# Medians on both sides: JMH's score is the mean of its iterations, criterion's estimate a median
# of its samples; each JMH iteration and each criterion sample is itself an average over many
# calls, so the median of the iterations is the like-for-like figure (and resists the noise of
# the shared machine the same way on both sides).
jmh = {}
for b in json.load(open(sys.argv[1])):
    runs = [x for fork in b["primaryMetric"]["rawData"] for x in fork]
    jmh[b["benchmark"].rsplit(".", 1)[1]] = statistics.median(runs)
crit = sys.argv[2]
def median(group, name):
    p = os.path.join(crit, group, name, "new", "estimates.json")
    return json.load(open(p))["median"]["point_estimate"] if os.path.exists(p) else None
# (label, JMH benchmark, criterion group/id, criterion baseline group/id)
rows = [
    ("circuit breaker, closed", "circuitBreaker", ("closed", "palisade"), ("closed", "bare service")),
    ("circuit breaker, closed, static state", "circuitBreaker", ("closed", "palisade static"), ("closed", "bare service")),
    ("circuit breaker, rejection", "circuitBreakerOpen", ("open", "palisade"), ("closed", "bare service")),
    ("bulkhead", "bulkhead", ("bulkhead", "palisade"), ("bulkhead", "bare service")),
    ("bulkhead, static state", "bulkhead", ("bulkhead", "palisade static"), ("bulkhead", "bare service")),
    ("bulkhead floor: fetch_add + fetch_sub", "bulkhead", ("bulkhead", "floor (fetch_add + fetch_sub)"), ("bulkhead", "bare service")),
    ("rate limiter", "rateLimiter", ("rate_limit", "palisade"), ("rate_limit", "bare service")),
    ("rate limiter floor: clock read + CAS", "rateLimiter", ("rate_limit", "floor (clock read + CAS)"), ("rate_limit", "bare service")),
    ("rate limiter, coarse clock", "rateLimiter", ("rate_limit", "palisade coarse clock"), ("rate_limit", "bare service")),
    ("rate limiter floor: coarse clock load + CAS", "rateLimiter", ("rate_limit", "floor (coarse clock load + CAS)"), ("rate_limit", "bare service")),
    ("retry", "retry", ("retry", "palisade"), ("retry", "bare service")),
    ("retry, static state", "retry", ("retry", "palisade static"), ("retry", "bare service")),
]
print("| primitive | Resilience4j ns/call | overhead | Palisade ns/call | overhead | R4j overhead / ours |")
print("|---|---:|---:|---:|---:|---:|")
direct = jmh["direct"]
for label, j, ours, base in rows:
    o, b = median(*ours), median(*base)
    if j not in jmh or o is None or b is None:
        print(f"| {label} | {jmh.get(j, float('nan')):.1f} | - | not measured | - | - |")
        continue
    ro, po = jmh[j] - direct, max(o - b, 0.01)
    print(f"| {label} | {jmh[j]:.1f} | {ro:.1f} | {o:.1f} | {po:.1f} | {ro / po:.1f}x |")
print(f"\nbaselines (medians): JMH direct {direct:.2f} ns, criterion bare service {median('closed', 'bare service') or float('nan'):.2f} ns (closed), "
      f"{median('bulkhead', 'bare service') or float('nan'):.2f} (bulkhead), {median('rate_limit', 'bare service') or float('nan'):.2f} (rate_limit), "
      f"{median('retry', 'bare service') or float('nan'):.2f} (retry)")
PY
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
