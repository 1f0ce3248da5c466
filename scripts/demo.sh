#!/usr/bin/env bash
# make demo: train the demo config (configs/demo.toml) and report.
# Until the data pipeline lands, the demo trains on switchyard's built-in synthetic corpus
# (docs/data.md) and says so. Re-running resumes (or, if finished, only reports); delete
# runs/demo to start over.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-runs/demo}

echo "switchyard demo: the SMALL MoE (16 experts, top-4, 4 layers) with micro-batch LBL"
echo "data: the built-in synthetic corpus (4 Markov 'domains'); the real multi-domain corpus"
echo "      arrives with the data pipeline"
"$BUILD/switchyard" train --config configs/demo.toml --set out_dir="$OUT"
echo
/usr/bin/python3 scripts/summarize.py "$OUT"
echo
REPORT_INDEX=$(/usr/bin/python3 scripts/report.py "$OUT" --out "$OUT/report")
echo "report: $REPORT_INDEX (open it in a browser; the PNGs are next to it)"
