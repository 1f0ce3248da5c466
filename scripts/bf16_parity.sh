#!/usr/bin/env bash
# bf16 against fp32 on the demo run (docs/benchmarks.md, "bf16"): trains configs/demo.toml
# (the `make demo` model, corpus and 1,200 steps) once per precision, then compares the final
# validation loss (issue bar: bf16 within 1% of fp32), AvgMaxVio over the last 200 steps, dead
# experts at the end and tokens/s. Resumable: re-running continues or only reports.
#   scripts/bf16_parity.sh [BUILD]      env: STEPS (default 1200), OUT (default runs/bf16-parity)
# Needs the demo corpus (make demo builds it) and a CPU with AVX512-BF16.
set -euo pipefail
BUILD=${1:-build}
STEPS=${STEPS:-1200}
OUT=${OUT:-runs/bf16-parity}
"$BUILD/switchyard" data demo --out data/demo >/dev/null
for p in fp32 bf16; do
  echo "== $p: $STEPS steps into $OUT/$p"
  "$BUILD/switchyard" train --config configs/demo.toml --set out_dir="$OUT/$p" \
    --set train.steps="$STEPS" --set system.precision=$p 2>&1 | grep -E "^(eval|done|switchyard|  )" || true
done
/usr/bin/python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = {}
for p in ("fp32", "bf16"):
    recs = [json.loads(l) for l in open(f"{out}/{p}/metrics.jsonl")]
    tr = [r for r in recs if r["type"] == "train"]
    ev = [r for r in recs if r["type"] == "eval"]
    tail = tr[-200:]
    rows[p] = {
        "steps": tr[-1]["step"],
        "precision": tr[-1].get("precision", "fp32"),
        "valid_loss": ev[-1]["loss"],
        "avg_maxvio_last200": sum(r["avg_maxvio"] for r in tail) / len(tail),
        "dead_experts_end": sum(l["dead_experts"] for l in tr[-1]["layers"]),
        "tokens_per_s_median": sorted(r["tokens_per_s"] for r in tr)[len(tr) // 2],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in tr),
    }
a, b = rows["fp32"], rows["bf16"]
print("| precision | steps | valid loss | AvgMaxVio (last 200) | dead experts | tokens/s | peak RSS MB |")
print("|---|---:|---:|---:|---:|---:|---:|")
for p, r in rows.items():
    print(f"| {r['precision']} | {r['steps']} | {r['valid_loss']:.4f} | {r['avg_maxvio_last200']:.3f} "
          f"| {r['dead_experts_end']} | {r['tokens_per_s_median']:.0f} | {r['peak_rss_mb']:.0f} |")
rel = (b["valid_loss"] - a["valid_loss"]) / a["valid_loss"]
print(f"\nbf16 - fp32 validation loss: {rel * 100:+.2f}% ({'within' if abs(rel) <= 0.01 else 'OUTSIDE'} 1%); "
      f"speed bf16/fp32 {b['tokens_per_s_median'] / a['tokens_per_s_median']:.2f}x")
json.dump(rows, open(f"{out}/parity.json", "w"), indent=1)
PY
