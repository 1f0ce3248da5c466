#!/usr/bin/env bash
# make bench: switchyard's training throughput on SMALL against the best-configured PyTorch peer,
# in fp32 and (where the CPU has AVX512-BF16) in bf16 against PyTorch's bf16 autocast, measured in
# the same run (the machine is noisy: compare ratios, not absolute figures).
# Then the GEMM backends on the model's shapes. Results: $BUILD/bench-results.json.
# Then MEDIUM, one round per engine (env MEDIUM_STEPS, default 3), and whether the machine held
# still (the GEMM peaks every run measured at its start; a warning when they or the steps spread).
# Usage: scripts/bench.sh [BUILD_DIR]     (env: STEPS, PEER_STEPS, THREADS, ROUNDS, MEDIUM_STEPS)
# The two sides alternate for ROUNDS rounds (default 2: switchyard, PyTorch, switchyard, PyTorch)
# and each keeps its best round: noise from other tenants only slows a round, and alternating
# gives both sides the same minutes. Every round is kept in the JSON.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
STEPS=${STEPS:-20}
PEER_STEPS=${PEER_STEPS:-10}
ROUNDS=${ROUNDS:-2}
PY=/usr/bin/python3
for v in THREADS STEPS PEER_STEPS ROUNDS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: $v must be a positive integer, got '${!v}'" >&2; exit 2; }
done

echo "== training step, SMALL config, $THREADS threads, $ROUNDS alternating rounds (switchyard, PyTorch peer)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# bf16 rows (system.precision = "bf16", and PyTorch's bf16 autocast) where the CPU has AVX512-BF16.
BF16=0
grep -qw avx512_bf16 /proc/cpuinfo && BF16=1
for r in $(seq "$ROUNDS"); do
  "$BUILD/bench/train_step_bench" --config configs/small.toml --steps "$STEPS" --warmup 3 \
    --threads "$THREADS" >"$tmp/ours.$r.json"
  if [[ $BF16 == 1 ]]; then
    # more warm-up: the bf16 GEMMs compile a kernel per new shape during the first steps
    "$BUILD/bench/train_step_bench" --config configs/small.toml --steps "$STEPS" --warmup 8 \
      --threads "$THREADS" --precision bf16 >"$tmp/ours16.$r.json"
  fi
  bench/run_torch_peer.sh --threads "$THREADS" --steps "$PEER_STEPS" --warmup 3 --config small \
    >"$tmp/peer.$r.json"
  if [[ $BF16 == 1 ]]; then
    bench/run_torch_peer.sh --threads "$THREADS" --steps "$PEER_STEPS" --warmup 3 --config small \
      --autocast-bf16 >"$tmp/peer16.$r.json"
  fi
done

"$PY" - "$tmp" "$ROUNDS" "$BUILD/bench-results.json" "$BF16" <<'PYEOF'
import json, sys
tmp, rounds, out, bf16 = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
load = lambda side: [json.load(open("%s/%s.%d.json" % (tmp, side, r))) for r in range(1, rounds + 1)]
ours_all, peer_all = load("ours"), load("peer")
ours = max(ours_all, key=lambda o: o["tokens_per_s"])
peer = max(peer_all, key=lambda o: o["tokens_per_s"])
peak = max(ours["sgemm_peak_gflops"].values())
flops = ours["flops_per_token"]
rows = [("switchyard (oneDNN sgemm)", ours["tokens_per_s"]),
        ("PyTorch %s, best env" % peer.get("torch", "?"), peer["tokens_per_s"])]
print("best of %d alternating rounds per side" % rounds)
print("%-34s %12s %8s" % ("engine", "tokens/s", "MFU"))
for name, tps in rows:
    print("%-34s %12.0f %7.1f%%" % (name, tps, 100 * tps * flops / (peak * 1e9)))
ratio = ours["tokens_per_s"] / peer["tokens_per_s"]
print("ratio switchyard / PyTorch: %.2fx   (sgemm peak %.0f GFLOP/s measured in the same run)"
      % (ratio, peak))
print("rounds, tokens/s: switchyard %s; PyTorch %s" %
      (", ".join("%.0f" % o["tokens_per_s"] for o in ours_all),
       ", ".join("%.0f" % o["tokens_per_s"] for o in peer_all)))
print("switchyard step: forward %.0f ms, backward %.0f ms, optimizer %.0f ms" %
      (ours["forward_ms"], ours["backward_ms"], ours["optimizer_ms"]))
results = {"switchyard": ours_all, "pytorch": peer_all, "ratio": ratio, "sgemm_peak_gflops": peak}
if bf16:
    o16_all, p16_all = load("ours16"), load("peer16")
    o16 = max(o16_all, key=lambda o: o["tokens_per_s"])
    p16 = max(p16_all, key=lambda o: o["tokens_per_s"])
    peak16 = o16["bf16_peak_gflops"]
    print("\nbf16 (MFU against the bf16 GEMM peak, %.0f GFLOP/s, measured the same way)" % peak16)
    print("%-34s %12s %8s" % ("engine", "tokens/s", "MFU"))
    for name, tps in (("switchyard bf16", o16["tokens_per_s"]),
                      ("PyTorch bf16 autocast", p16["tokens_per_s"])):
        print("%-34s %12.0f %7.1f%%" % (name, tps, 100 * tps * flops / (peak16 * 1e9)))
    print("ratios: switchyard bf16 / switchyard fp32 %.2fx; / PyTorch fp32 %.2fx; "
          "/ PyTorch bf16 autocast %.2fx" % (o16["tokens_per_s"] / ours["tokens_per_s"],
                                             o16["tokens_per_s"] / peer["tokens_per_s"],
                                             o16["tokens_per_s"] / p16["tokens_per_s"]))
    print("rounds, tokens/s: switchyard bf16 %s; PyTorch autocast %s" %
          (", ".join("%.0f" % o["tokens_per_s"] for o in o16_all),
           ", ".join("%.0f" % o["tokens_per_s"] for o in p16_all)))
    results.update({"switchyard_bf16": o16_all, "pytorch_bf16_autocast": p16_all,
                    "bf16_peak_gflops": peak16})
json.dump(results, open(out, "w"), indent=2)
PYEOF

echo
echo "== training step, MEDIUM config (configs/medium.toml), $THREADS threads, one round each"
MEDIUM_STEPS=${MEDIUM_STEPS:-3}
"$BUILD/bench/train_step_bench" --config configs/medium.toml --steps "$MEDIUM_STEPS" --warmup 2 \
  --threads "$THREADS" >"$tmp/m_ours.json"
if [[ $BF16 == 1 ]]; then
  "$BUILD/bench/train_step_bench" --config configs/medium.toml --steps "$MEDIUM_STEPS" --warmup 4 \
    --threads "$THREADS" --precision bf16 >"$tmp/m_ours16.json"
fi
bench/run_torch_peer.sh --threads "$THREADS" --steps "$MEDIUM_STEPS" --warmup 2 --config medium \
  >"$tmp/m_peer.json" 2>/dev/null
if [[ $BF16 == 1 ]]; then
  bench/run_torch_peer.sh --threads "$THREADS" --steps "$MEDIUM_STEPS" --warmup 2 --config medium \
    --autocast-bf16 >"$tmp/m_peer16.json" 2>/dev/null
fi
"$PY" - "$tmp" "$BUILD/bench-results.json" "$BF16" <<'PYEOF'
import json, os, sys
tmp, out, bf16 = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
load = lambda name: json.load(open(os.path.join(tmp, name + ".json")))
ours, peer = load("m_ours"), load("m_peer")
flops = ours["flops_per_token"]
peak = max(ours["sgemm_peak_gflops"].values())
rows = [("switchyard fp32", ours["tokens_per_s"], peak), ("PyTorch fp32", peer["tokens_per_s"], peak)]
if bf16:
    o16, p16 = load("m_ours16"), load("m_peer16")
    rows += [("switchyard bf16", o16["tokens_per_s"], o16["bf16_peak_gflops"]),
             ("PyTorch bf16 autocast", p16["tokens_per_s"], o16["bf16_peak_gflops"])]
print("%-34s %12s %8s %8s" % ("engine", "tokens/s", "MFU", "ratio"))
for name, tps, pk in rows:
    print("%-34s %12.0f %7.1f%% %7.2fx" % (name, tps, 100 * tps * flops / (pk * 1e9),
                                            tps / ours["tokens_per_s"]))
print("(MFU against the sgemm peak for fp32 rows, the bf16 GEMM peak for bf16 rows; ratio to "
      "switchyard fp32)")
res = json.load(open(out))
res["medium"] = {"switchyard": ours, "pytorch": peer}
if bf16:
    res["medium"].update({"switchyard_bf16": o16, "pytorch_bf16_autocast": p16})
json.dump(res, open(out, "w"), indent=2)
PYEOF

# Was the machine steady? (the GEMM peaks each run measured, its steps; a warning if not)
"$PY" scripts/bench_steady.py "$BUILD/bench-results.json"

echo
echo "== GEMM backends on the model's shapes (items/s = FLOP/s)"
"$BUILD/bench/gemm_bench" --benchmark_min_time=0.2 2>/dev/null | grep BM_Gemm || true
echo "results: $BUILD/bench-results.json"

echo
echo "== routing step alone: switchyard vs PyTorch (scripts/routing_bench.sh)"
scripts/routing_bench.sh "$BUILD"
