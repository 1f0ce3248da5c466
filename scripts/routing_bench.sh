#!/usr/bin/env bash
# The routing step alone (logits z[N,E] → routing plan), switchyard vs PyTorch, as ratios, for
# N ∈ {2048, 8192}, E ∈ {16, 64}, K ∈ {4, 6}: top-K, loss-free, Expert Choice, BIP (T = 1, 2, 4),
# Sinkhorn (issue 4, "Speed"). Then BIP (T = 2, N 2048, E 16, K 4) as a share of a SMALL training
# step measured in the same run. Results: $BUILD/routing-bench.json.
# Usage: scripts/routing_bench.sh [BUILD_DIR]     (env: MIN_TIME seconds per case, default 0.2)
# It uses both cores: on the shared machine run it under the lock,
#   flock /tmp/sy-build.lock scripts/routing_bench.sh build
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
MIN_TIME=${MIN_TIME:-0.2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== routing step alone, 2 threads: switchyard (bench/routing_bench.cc)"
"$BUILD/bench/routing_bench" --benchmark_min_time="$MIN_TIME" --benchmark_format=json \
  >"$tmp/sy.json" 2>/dev/null

echo "== routing step alone, 2 threads: PyTorch (bench/torch_routing_bench.py, best environment)"
# bench/run_torch_peer.sh's environment: OpenBLAS's own AVX-512 kernels (no OPENBLAS_CORETYPE),
# its OpenMP build (one thread pool with PyTorch), tcmalloc.
openmp_blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
tcmalloc=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
for f in "$openmp_blas/libblas.so.3" "$tcmalloc"; do
  [[ -e "$f" ]] || { echo "routing_bench.sh: $f not found (apt-get install libopenblas0-openmp libtcmalloc-minimal4)" >&2; exit 2; }
done
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_NUM_THREADS=2 \
  LD_LIBRARY_PATH="$openmp_blas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" LD_PRELOAD="$tcmalloc" \
  /usr/bin/python3 bench/torch_routing_bench.py --threads 2 --min-time "$MIN_TIME" >"$tmp/pt.jsonl"

echo "== SMALL training step (train_step_bench --steps 5 --warmup 2)"
"$BUILD/bench/train_step_bench" --steps 5 --warmup 2 --threads 2 >"$tmp/step.json"

/usr/bin/python3 - "$tmp/sy.json" "$tmp/pt.jsonl" "$tmp/step.json" "$BUILD/routing-bench.json" <<'PYEOF'
import json, re, sys
sy_raw = json.load(open(sys.argv[1]))
names = {"BM_TopK": "topk", "BM_LossFree": "lossfree", "BM_ExpertChoice": "ec",
         "BM_Bip": "bip", "BM_Sinkhorn": "sinkhorn"}
ours = {}
for b in sy_raw["benchmarks"]:
    parts = b["name"].split("/")
    args = [int(a) for a in parts[1:] if re.fullmatch(r"\d+", a)]
    algo = names[parts[0]] + (str(args[3]) if parts[0] == "BM_Bip" else "")
    scale = {"us": 1.0, "ms": 1e3, "ns": 1e-3, "s": 1e6}[b["time_unit"]]
    ours[(algo, args[0], args[1], args[2])] = b["real_time"] * scale
peer = {}
for line in open(sys.argv[2]):
    d = json.loads(line)
    peer[(d["algo"], d["n"], d["E"], d["K"])] = d["us"]
step = json.loads(open(sys.argv[3]).read().strip().splitlines()[-1])
order = ["topk", "lossfree", "ec", "bip1", "bip2", "bip4", "sinkhorn"]
rows = []
print("%-9s %5s %3s %2s %14s %12s %7s" % ("algorithm", "n", "E", "K", "switchyard µs", "PyTorch µs",
                                          "ratio"))
for key in sorted(ours, key=lambda k: (order.index(k[0]), k[1], k[2], k[3])):
    if key not in peer:
        continue
    r = peer[key] / ours[key]
    rows.append({"algo": key[0], "n": key[1], "E": key[2], "K": key[3], "switchyard_us": ours[key],
                 "pytorch_us": peer[key], "ratio": r})
    print("%-9s %5d %3d %2d %14.1f %12.1f %6.1fx%s" % (*key, ours[key], peer[key], r,
                                                     "" if r >= 10 else "   < 10x"))
miss = [r for r in rows if r["ratio"] < 10]
print("routers at >= 10x PyTorch: %d of %d cases" % (len(rows) - len(miss), len(rows)))
bip = ours[("bip2", 2048, 16, 4)]
step_ms = step["step_ms_median"]
layers = 4  # SMALL: one routing call per MoE layer per step (grad_accum = 1)
pct = 100 * bip / 1e3 / step_ms
print("BIP T=2 (n 2048, E 16, K 4): %.0f µs per call = %.2f%% of a SMALL step (%.1f ms); "
      "x%d layers = %.2f%% (target <= 2%%)" % (bip, pct, step_ms, layers, layers * pct))
json.dump({"rows": rows, "step_ms_median": step_ms, "bip2_us": bip, "bip2_pct_of_step": pct,
           "bip2_pct_of_step_all_layers": layers * pct, "context": sy_raw.get("context", {}),
           "torch": json.loads(open(sys.argv[2]).readline())["torch"]},
          open(sys.argv[4], "w"), indent=2)
print("results:", sys.argv[4])
PYEOF
