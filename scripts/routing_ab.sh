#!/usr/bin/env bash
# Before/after timing of routing_bench binaries on the shared machine: runs the binaries in turn,
# ROUNDS times, and prints for every benchmark the best (lowest) real time of each binary. Noise
# from other tenants only slows a run, and alternating gives every binary the same minutes.
#
# Usage: scripts/routing_ab.sh FILTER BINARY BINARY...
#   FILTER   a Google Benchmark filter regex, e.g. 'BM_(TopK|LossFree)/8192/'
#   BINARY   routing_bench executables, e.g. a copy built at the old commit and build/bench/routing_bench
#   env: ROUNDS (default 4), MIN_TIME seconds per case and run (default 0.1),
#        SY_BENCH_THREADS (default 1: one core is steadier than two on this machine)
# Example (old = a worktree of the base commit built with `cmake --build build --target routing_bench`):
#   flock /tmp/sy-build.lock scripts/routing_ab.sh 'BM_TopK/' /tmp/old/build/bench/routing_bench build/bench/routing_bench
set -euo pipefail
if [[ $# -lt 2 ]]; then
  sed -n '2,12p' "$0" >&2
  exit 2
fi
filter=$1
shift
ROUNDS=${ROUNDS:-4}
MIN_TIME=${MIN_TIME:-0.1}
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "routing_ab.sh: ROUNDS must be a positive integer, got '$ROUNDS'" >&2; exit 2; }
for b in "$@"; do
  [[ -x "$b" ]] || { echo "routing_ab.sh: '$b' is not an executable routing_bench" >&2; exit 2; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$ROUNDS"); do
  i=0
  for b in "$@"; do
    SY_BENCH_THREADS=${SY_BENCH_THREADS:-1} "$b" --benchmark_filter="$filter" \
      --benchmark_min_time="$MIN_TIME" --benchmark_format=json >"$tmp/$i.$r.json" 2>/dev/null
    i=$((i + 1))
  done
done
/usr/bin/python3 - "$tmp" "$ROUNDS" "$@" <<'PYEOF'
import json, sys
tmp, rounds, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
best = {}  # name → [best µs per binary]
scale = {"us": 1.0, "ms": 1e3, "ns": 1e-3, "s": 1e6}
for i in range(len(bins)):
    for r in range(1, rounds + 1):
        text = open("%s/%d.%d.json" % (tmp, i, r)).read()
        # Google Benchmark writes nothing when the filter matches no benchmark.
        for b in (json.loads(text)["benchmarks"] if text.strip() else []):
            row = best.setdefault(b["name"], [float("inf")] * len(bins))
            row[i] = min(row[i], b["real_time"] * scale[b["time_unit"]])
if not best:
    sys.exit("routing_ab.sh: no benchmark matched the filter (names look like "
             "'BM_TopK/2048/16/4/real_time'; list them with BINARY --benchmark_list_tests)")
print("best of %d rounds, µs; ratio = first / last binary" % rounds)
for i, b in enumerate(bins):
    print("  [%d] %s" % (i, b))
print("%-40s %s %8s" % ("benchmark", " ".join("%10s" % ("[%d]" % i) for i in range(len(bins))),
                         "ratio"))
for name, row in best.items():
    print("%-40s %s %7.2fx" % (name.replace("/real_time", ""), " ".join("%10.1f" % t for t in row),
                              row[0] / row[-1]))
PYEOF
