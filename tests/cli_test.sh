#!/usr/bin/env bash
# End-to-end through the command line, as a user runs it: train the tiny config, interrupt and
# resume, evaluate a checkpoint, and check that bad input fails with a clear message and status 1.
# Usage: tests/cli_test.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "${1:?usage: cli_test.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
SY="$BUILD/switchyard"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
source "$SRC/tests/lib.sh"  # check, fails_with, finish
usage_error() {  # usage_error NAME TEXT COMMAND...: a command-line error (non-zero status) naming TEXT
  local name=$1 text=$2; shift 2
  "$@" >"$WORK/out" 2>&1
  local rc=$?
  if [[ $rc -ne 0 ]] && grep -qF -- "$text" "$WORK/out"; then passed=$((passed + 1)); else
    failed=$((failed + 1)); echo "FAIL: $name (status $rc, wanted non-zero and \"$text\")"; cat "$WORK/out"; fi
}

check "help" "$SY" --help
check "train tiny" "$SY" train -c "$SRC/configs/tiny.toml" --set out_dir="$WORK/run" --quiet
check "metrics has 20 steps" test "$(grep -c '"type":"train"' "$WORK/run/metrics.jsonl")" -eq 20
check "rerun of a finished run is a no-op" "$SY" train -c "$SRC/configs/tiny.toml" --set out_dir="$WORK/run" --quiet
check "extend the run" "$SY" train -c "$SRC/configs/tiny.toml" --set out_dir="$WORK/run" --set train.steps=24 --quiet
check "metrics has 24 steps" test "$(grep -c '"type":"train"' "$WORK/run/metrics.jsonl")" -eq 24
check "stop after 5 steps" "$SY" train -c "$SRC/configs/tiny.toml" --set out_dir="$WORK/slice" --stop-after 5 --quiet
check "5 steps in the slice" test "$(grep -c '"type":"train"' "$WORK/slice/metrics.jsonl")" -eq 5
check "the same command continues" "$SY" train -c "$SRC/configs/tiny.toml" --set out_dir="$WORK/slice" --stop-after 5 --quiet
check "10 steps after two slices" test "$(grep -c '"type":"train"' "$WORK/slice/metrics.jsonl")" -eq 10
/usr/bin/python3 -c "
import struct, random
random.seed(1)
open('$WORK/valid.bin','wb').write(struct.pack('<170i', *[random.randrange(256) for _ in range(170)]))"
check "eval" "$SY" eval --checkpoint "$WORK/run/checkpoints/step_00000024" --tokens "$WORK/valid.bin"
check "eval prints perplexity" grep -q '"perplexity"' "$WORK/out"
check "eval on the run's validation data" "$SY" eval --checkpoint "$WORK/run/checkpoints/step_00000024"
check "eval reports every domain" grep -q '"synthetic_3"' "$WORK/out"
check "eval --batches per-domain" "$SY" eval --checkpoint "$WORK/run/checkpoints/step_00000024" --batches per-domain
check "eval says how its batches were composed" grep -q '"batches": "per-domain"' "$WORK/out"
check "report of two runs" "$SY" report "$WORK/run" "$WORK/slice" --out "$WORK/report"
check "report page written" test -s "$WORK/report/index.html"
# An experiment of two tiny runs: trains both, writes one report; a second call trains nothing.
cat >"$WORK/exp.toml" <<EOT
description = "two scopes"
claim = "none"
base = "$SRC/configs/tiny.toml"
out_dir = "$WORK/exp"
set = ["train.steps=3", "train.eval_every=0", "train.grad_accum=2"]
[[runs]]
name = "micro"
[[runs]]
name = "global-exact"
set = ["balance.terms.0.scope=global-exact"]
EOT
check "experiment dry run" "$SY" experiment "$WORK/exp.toml" --dry-run
check "dry run lists the runs as new" grep -q "global-exact *new" "$WORK/out"
check "experiment" "$SY" experiment "$WORK/exp.toml" --quiet
check "experiment report" test -s "$WORK/exp/report/index.html"
check "both runs trained" test -s "$WORK/exp/global-exact/metrics.jsonl"
check "experiment again" "$SY" experiment "$WORK/exp.toml" --dry-run
check "runs are finished" grep -q "global-exact *finished (3 steps)" "$WORK/out"
fails_with "experiment with a bad override" 'run "micro": ' "$SY" experiment "$WORK/exp.toml" --set router.score=tanh
usage_error "report of a missing run" "Directory does not exist" "$SY" report "$WORK/nothing" --out "$WORK/r2"
check "summarize" /usr/bin/python3 "$SRC/scripts/summarize.py" "$WORK/run"

fails_with "unknown key" 'did you mean "model.n_experts"' "$SY" train -c "$SRC/configs/tiny.toml" --set model.n_expert=8
fails_with "K > E" "model.top_k" "$SY" train -c "$SRC/configs/tiny.toml" --set model.top_k=9 --set out_dir="$WORK/x"
fails_with "K = 1 renorm" "router" "$SY" train -c "$SRC/configs/tiny.toml" --set model.top_k=1 --set out_dir="$WORK/x"
fails_with "bad enum" "router.score" "$SY" train -c "$SRC/configs/tiny.toml" --set router.score=tanh --set out_dir="$WORK/x"
usage_error "eval with a bad --batches" "--batches: mixd not in {auto,mixed,per-domain}" "$SY" eval --checkpoint "$WORK/run/checkpoints/step_00000024" --batches mixd
printf 'abc' >"$WORK/bad.bin"
fails_with "bad token file" "multiple of 4" "$SY" eval --checkpoint "$WORK/run/checkpoints/step_00000024" --tokens "$WORK/bad.bin"
fails_with "different model in out_dir" "model.n_experts: 4 in the checkpoint, 8 given" "$SY" train -c "$SRC/configs/tiny.toml" --set out_dir="$WORK/run" --set model.n_experts=8 --set train.steps=30 --quiet
truncate -s 100 "$WORK/run/checkpoints/step_00000024/model.safetensors"
fails_with "truncated checkpoint" "model.safetensors" "$SY" eval --checkpoint "$WORK/run/checkpoints/step_00000024" --tokens "$WORK/valid.bin"

# data tokenize: two small files → one dataset, with a new tokenizer and then reusing it.
printf 'The first document.\nIt has two lines.\n' >"$WORK/doc1.txt"
printf '{"text": "second doc, from JSON Lines"}\n{"text": "third"}\n' >"$WORK/docs.jsonl"
check "data tokenize (new tokenizer)" "$SY" data tokenize --input "$SRC/src/data/testdata/tokenizer_train.txt" "$WORK/doc1.txt" --domain fixture --output "$WORK/ds/fx" --train-tokenizer --vocab-size 400 --quiet
check "data tokenize reports 2 documents" grep -q "2 documents" "$WORK/out"
check "data tokenize wrote the dataset" test -s "$WORK/ds/fx.bin" -a -s "$WORK/ds/fx.idx" -a -s "$WORK/ds/fx.tokenizer.model"
check "data tokenize (existing tokenizer)" "$SY" data tokenize -i "$WORK/doc1.txt" -i "$WORK/docs.jsonl" --domain mine --output "$WORK/ds/mine" --tokenizer "$WORK/ds/fx.tokenizer.model" --quiet
check "data tokenize reports 3 documents" grep -q "3 documents" "$WORK/out"
printf '{"text": "ok"}\n{"body": "no text"}\n' >"$WORK/notext.jsonl"
fails_with "data tokenize: JSONL line without text" "notext.jsonl:2:" "$SY" data tokenize -i "$WORK/notext.jsonl" --domain x --output "$WORK/ds/x" --tokenizer "$WORK/ds/fx.tokenizer.model"
printf 'bad \377 byte\n' >"$WORK/latin1.txt"
fails_with "data tokenize: not UTF-8" "latin1.txt:1:" "$SY" data tokenize -i "$WORK/latin1.txt" --domain x --output "$WORK/ds/x" --tokenizer "$WORK/ds/fx.tokenizer.model"
: >"$WORK/empty.txt"
fails_with "data tokenize: empty file" "empty.txt: document must be non-empty" "$SY" data tokenize -i "$WORK/empty.txt" --domain x --output "$WORK/ds/x" --tokenizer "$WORK/ds/fx.tokenizer.model"
fails_with "data tokenize: no tokenizer" "--train-tokenizer" "$SY" data tokenize -i "$WORK/doc1.txt" --domain x --output "$WORK/ds/x"

finish cli_test
