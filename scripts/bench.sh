#!/usr/bin/env bash
# make bench: switchyard's training throughput on SMALL against the best-configured PyTorch peer,
# measured in the same run (the machine is noisy: compare ratios, not absolute figures).
# Then the GEMM backends on the model's shapes. Results: $BUILD/bench-results.json.
# Usage: scripts/bench.sh [BUILD_DIR]     (env: STEPS, PEER_STEPS, THREADS)
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
STEPS=${STEPS:-20}
PEER_STEPS=${PEER_STEPS:-10}
PY=/usr/bin/python3

echo "== training step, SMALL config, $THREADS threads (switchyard, PyTorch peer, switchyard again)"
ours1=$("$BUILD/bench/train_step_bench" --config configs/small.toml --steps "$STEPS" --warmup 3 --threads "$THREADS")
peer=$(bench/run_torch_peer.sh --threads "$THREADS" --steps "$PEER_STEPS" --warmup 3 --config small)
ours2=$("$BUILD/bench/train_step_bench" --config configs/small.toml --steps "$STEPS" --warmup 3 --threads "$THREADS")

"$PY" - "$ours1" "$ours2" "$peer" "$BUILD/bench-results.json" <<'PYEOF'
import json, sys
o1, o2, peer = (json.loads(s) for s in sys.argv[1:4])
ours = o1 if o1["tokens_per_s"] >= o2["tokens_per_s"] else o2
peak = max(ours["sgemm_peak_gflops"].values())
flops = ours["flops_per_token"]
rows = [("switchyard (oneDNN sgemm)", ours["tokens_per_s"]),
        ("PyTorch %s, best env" % peer.get("torch", "?"), peer["tokens_per_s"])]
print("%-34s %12s %8s" % ("engine", "tokens/s", "MFU"))
for name, tps in rows:
    print("%-34s %12.0f %7.1f%%" % (name, tps, 100 * tps * flops / (peak * 1e9)))
ratio = ours["tokens_per_s"] / peer["tokens_per_s"]
print("ratio switchyard / PyTorch: %.2fx   (sgemm peak %.0f GFLOP/s measured in the same run; "
      "switchyard runs: %.0f and %.0f tokens/s)" % (ratio, peak, o1["tokens_per_s"], o2["tokens_per_s"]))
print("switchyard step: forward %.0f ms, backward %.0f ms, optimizer %.0f ms" %
      (ours["forward_ms"], ours["backward_ms"], ours["optimizer_ms"]))
json.dump({"switchyard": [o1, o2], "pytorch": peer, "ratio": ratio, "sgemm_peak_gflops": peak},
          open(sys.argv[4], "w"), indent=2)
PYEOF

echo
echo "== GEMM backends on the model's shapes (items/s = FLOP/s)"
"$BUILD/bench/gemm_bench" --benchmark_min_time=0.2 2>/dev/null | grep BM_Gemm || true
echo "results: $BUILD/bench-results.json"

echo
echo "== routing step alone: switchyard vs PyTorch (scripts/routing_bench.sh)"
scripts/routing_bench.sh "$BUILD"
