#!/usr/bin/env bash
# Data parallelism end to end, as a user runs it (`mpirun -np 2 switchyard train ...`):
# * layout invariance: 2 ranks × grad_accum 1 read the same sequences as 1 process × grad_accum 2;
#   for every method whose statistics cover the whole step, the integer loads must be identical
#   at every step and the losses equal to floating-point summation order (rel. 1e-5);
# * the methods whose meaning depends on the layout (global buffer, shuffle, BIP per-rank duals)
#   run, log the global batch, and keep the replicas identical (checked at every checkpoint);
# * Sinkhorn balances each micro-batch, so its training is layout-invariant too; its causal
#   evaluation potentials are per rank during a step and averaged after it (the replicas agree);
# * resume: stopped after 3 steps and resumed gives the same metrics as a straight run, also
#   when resumed with a different number of ranks;
# * expert parallelism (parallel.ep = 2) equals data parallelism and 1 process, its checkpoints
#   hold every expert and resume under any layout, and a bad layout is one clear error.
# Usage: tests/mpi_test.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "${1:?usage: mpi_test.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
SY="$BUILD/switchyard"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
MPIRUN=(timeout 300 mpirun --oversubscribe -np 2)
BASE=(-c "$SRC/configs/tiny.toml" --set system.threads=1 --set train.steps=4 --set train.eval_every=0 --quiet)
failed=0
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

compare() {  # compare NAME DIR_A DIR_B exact|close|sane [FROM_STEP]
  /usr/bin/python3 - "$@" <<'PY' || fail "$1"
import json, sys
name, a, b, mode = sys.argv[1:5]
first = int(sys.argv[5]) if len(sys.argv) > 5 else 1
def read(d):
    recs = [json.loads(l) for l in open(d + "/metrics.jsonl") if l.strip()]
    return [r for r in recs if r["type"] == "train" and r["step"] >= first], \
           [r for r in recs if r["type"] == "eval"]
(ta, ea), (tb, eb) = read(a), read(b)
assert len(ta) == len(tb) and ta, f"{name}: {len(ta)} vs {len(tb)} train records"
for x, y in zip(ta, tb):
    assert x["step"] == y["step"]
    for lx, ly in zip(x["layers"], y["layers"]):
        if mode == "exact":
            assert lx["load"] == ly["load"], f"{name} step {x['step']}: loads {lx['load']} vs {ly['load']}"
        assert sum(lx["load"]) == sum(ly["load"]), f"{name}: global assignments differ"
        if mode == "close":  # a few assignments may flip (ties), the rest identical
            moved = sum(abs(p - q) for p, q in zip(lx["load"], ly["load"]))
            assert moved <= 0.02 * sum(ly["load"]), f"{name} step {x['step']}: loads {lx['load']} vs {ly['load']}"
    if mode in ("exact", "close"):
        rel = abs(x["loss"] - y["loss"]) / abs(y["loss"])
        assert rel < 1e-5, f"{name} step {x['step']}: loss {x['loss']} vs {y['loss']}"
    assert x["loss"] == x["loss"] and abs(x["loss"]) < 100, f"{name}: loss {x['loss']}"
    assert x["tokens"] == y["tokens"], f"{name}: tokens {x['tokens']} vs {y['tokens']}"
if mode == "exact" and ea:
    rel = abs(ea[-1]["loss"] - eb[-1]["loss"]) / eb[-1]["loss"]
    assert rel < 1e-5, f"{name}: eval loss {ea[-1]['loss']} vs {eb[-1]['loss']}"
    assert ea[-1]["load"] == eb[-1]["load"], f"{name}: eval loads differ"
print(f"ok: {name} ({mode}, {len(ta)} steps)")
PY
}

declare -A METHOD=(
  [micro]=""
  [global-exact]="--set balance.terms.0.scope=global-exact"
  [loss-free]="--set balance.terms=[] --set loss_free.update=sign --set loss_free.rate=0.01 --set router.score=sigmoid"
  [expert-choice]="--set router.type=expert_choice --set balance.terms=[]"
  [global]="--set balance.terms.0.scope=global"
  [shuffle]="--set balance.terms.0.scope=shuffle"
  [bip]="--set router.type=bip"
  [sinkhorn]="--set router.type=sinkhorn --set balance.terms=[] --set train.eval_every=2"
)
for name in micro global-exact loss-free expert-choice global shuffle bip sinkhorn; do
  # shellcheck disable=SC2206
  extra=(${METHOD[$name]})
  "$SY" train "${BASE[@]}" "${extra[@]}" --set train.grad_accum=2 --set out_dir="$WORK/$name-1" \
    || { fail "$name: 1 process"; continue; }
  "${MPIRUN[@]}" "$SY" train "${BASE[@]}" "${extra[@]}" --set train.grad_accum=1 \
    --set out_dir="$WORK/$name-2" >"$WORK/log" 2>&1 || { fail "$name: 2 ranks"; cat "$WORK/log"; continue; }
  case $name in
    global|shuffle|bip) compare "$name" "$WORK/$name-2" "$WORK/$name-1" sane ;;
    *) compare "$name" "$WORK/$name-2" "$WORK/$name-1" exact ;;
  esac
done
grep -q '"balance_bsz":{"global":8}' "$WORK/global-2/metrics.jsonl" || fail "global: balance BSZ 8 = 4 x 1 x 2 ranks"
grep -q '"ranks":2' "$WORK/micro-2/metrics.jsonl" || fail "step records name 2 ranks"

# Resume: 2 ranks stopped after 3 of 6 steps, then resumed, equals 2 ranks straight.
R6=(--set train.steps=6 --set train.grad_accum=1 --set balance.terms.0.scope=global-exact)
"${MPIRUN[@]}" "$SY" train "${BASE[@]}" "${R6[@]}" --set out_dir="$WORK/straight" || fail "straight run"
"${MPIRUN[@]}" "$SY" train "${BASE[@]}" "${R6[@]}" --set out_dir="$WORK/resumed" --stop-after 3 || fail "stop after 3"
test "$(grep -c '"type":"train"' "$WORK/resumed/metrics.jsonl")" -eq 3 || fail "3 steps before the stop"
"${MPIRUN[@]}" "$SY" train "${BASE[@]}" "${R6[@]}" --set out_dir="$WORK/resumed" || fail "resume on 2 ranks"
/usr/bin/python3 - "$WORK/straight" "$WORK/resumed" <<'PY' || fail "resume on 2 ranks is bit-exact"
import json, sys
def losses(d):
    return [(r["step"], r["loss"], r["grad_norm"]) for r in map(json.loads, open(d + "/metrics.jsonl"))
            if r["type"] == "train"]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert a == b, f"{a} vs {b}"
print("ok: resume on 2 ranks is bit-exact")
PY
# The same run resumed on 1 process with grad_accum 2 (the same global batch).
"${MPIRUN[@]}" "$SY" train "${BASE[@]}" "${R6[@]}" --set out_dir="$WORK/relayout" --stop-after 3 || fail "relayout: first half"
"$SY" train "${BASE[@]}" "${R6[@]}" --set train.grad_accum=2 --set out_dir="$WORK/relayout" || fail "relayout: resume on 1 process"
compare "resume 2 ranks -> 1 process" "$WORK/relayout" "$WORK/straight" exact 4

# Expert parallelism (parallel.ep = 2 on 2 ranks: each rank holds half the experts, rows go to
# their expert's rank and back): the same as data parallelism on 2 ranks and as 1 process with
# the same global batch, for top-K + LBL, loss-free, BIP and Expert Choice.
for name in micro loss-free bip expert-choice; do
  # shellcheck disable=SC2206
  extra=(${METHOD[$name]})
  "${MPIRUN[@]}" "$SY" train "${BASE[@]}" "${extra[@]}" --set train.grad_accum=1 --set parallel.ep=2 \
    --set out_dir="$WORK/$name-ep2" >"$WORK/log" 2>&1 || { fail "$name: ep 2"; cat "$WORK/log"; continue; }
  if [[ $name == bip ]]; then
    # BIP's balanced assignment puts tokens on exact ties of s - q by construction: the
    # rounding-level differences of the experts' GEMMs (rows grouped differently) flip a few.
    compare "$name: ep 2 = data parallel 2" "$WORK/$name-ep2" "$WORK/$name-2" close
  else
    compare "$name: ep 2 = data parallel 2" "$WORK/$name-ep2" "$WORK/$name-2" exact
    compare "$name: ep 2 = 1 process" "$WORK/$name-ep2" "$WORK/$name-1" exact
  fi
done
# The same in bf16 (the experts' rows, SwiGLU outputs and output gradients kept in bf16 on the
# rank that runs them): ep 2 = data parallelism on 2 ranks, to rounding (rows grouped differently
# per GEMM can flip a near-tie).
if grep -q avx512_bf16 /proc/cpuinfo; then
  for ep in 1 2; do
    "${MPIRUN[@]}" "$SY" train "${BASE[@]}" --set train.grad_accum=1 --set parallel.ep=$ep \
      --set system.precision=bf16 --set out_dir="$WORK/bf16-ep$ep" >"$WORK/log" 2>&1 \
      || { fail "bf16: ep $ep"; cat "$WORK/log"; }
  done
  compare "bf16: ep 2 = data parallel 2" "$WORK/bf16-ep2" "$WORK/bf16-ep1" close
else
  echo "skip: bf16 under expert parallelism (this CPU lacks AVX512-BF16)"
fi
/usr/bin/python3 - "$WORK/micro-ep2/metrics.jsonl" <<'PY' || fail "ep 2: the step records measure the exchange"
import json, sys
for r in map(json.loads, open(sys.argv[1])):
    if r["type"] != "train":
        continue
    for l in r["layers"]:
        ep = l["ep"]
        assert sum(ep["rows"]) == sum(l["load"]), (ep["rows"], l["load"])
        assert len(ep["wait_ms"]) == 2 and min(ep["wait_ms"]) == 0 and min(ep["exchange_ms"]) > 0, ep
        assert all(b > 0 for b in ep["bytes_sent"]), ep
print("ok: ep 2 step records: rows per rank sum to the loads, exchange and wait times")
PY
# Device-limited routing trains under expert parallelism (that every token's experts lie on at
# most M groups is sy_routing_test's DeviceLimitedRoutingTest).
"${MPIRUN[@]}" "$SY" train "${BASE[@]}" --set train.grad_accum=1 --set parallel.ep=2 \
  --set router.max_ranks_per_token=1 --set out_dir="$WORK/limited" >"$WORK/log" 2>&1 || { fail "device-limited routing"; cat "$WORK/log"; }
grep -q '"bytes_sent"' "$WORK/limited/metrics.jsonl" || fail "device-limited routing: step records"
# Checkpoints hold every expert whatever the layout: ep 2 -> 1 process, and 1 process -> ep 2.
"${MPIRUN[@]}" "$SY" train "${BASE[@]}" "${R6[@]}" --set parallel.ep=2 --set out_dir="$WORK/ep-to-1" --stop-after 3 || fail "ep 2: first half"
"$SY" train "${BASE[@]}" "${R6[@]}" --set train.grad_accum=2 --set out_dir="$WORK/ep-to-1" || fail "ep 2 -> 1 process"
compare "resume ep 2 -> 1 process" "$WORK/ep-to-1" "$WORK/straight" exact 4
"$SY" train "${BASE[@]}" "${R6[@]}" --set train.grad_accum=2 --set out_dir="$WORK/one-to-ep" --stop-after 3 || fail "1 process: first half"
"${MPIRUN[@]}" "$SY" train "${BASE[@]}" "${R6[@]}" --set parallel.ep=2 --set out_dir="$WORK/one-to-ep" || fail "1 process -> ep 2"
compare "resume 1 process -> ep 2" "$WORK/one-to-ep" "$WORK/straight" exact 4
/usr/bin/python3 - "$WORK/ep-to-1/checkpoints/step_00000003/model.safetensors" <<'PY' || fail "an ep 2 checkpoint holds every expert"
import json, struct, sys
f = open(sys.argv[1], "rb")
header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
experts = {k.split(".mlp.experts.")[1].split(".")[0] for k in header if ".mlp.experts." in k}
assert experts == {"0", "1", "2", "3"}, experts
print("ok: an ep 2 checkpoint holds all 4 experts")
PY
# A layout error ends both ranks with one message and a non-zero exit.
for bad in "parallel.ep=3" "parallel.ep=4"; do
  if "${MPIRUN[@]}" "$SY" train "${BASE[@]}" --set "$bad" --set out_dir="$WORK/bad" >"$WORK/log" 2>&1; then
    fail "$bad on 2 ranks must fail"
  elif ! grep -q "parallel.ep" "$WORK/log"; then
    fail "$bad: the error names parallel.ep"; cat "$WORK/log"
  else
    echo "ok: $bad on 2 ranks is refused: $(grep -m1 'parallel.ep' "$WORK/log" | cut -c1-120)"
  fi
done

echo "mpi_test: $failed failed"
[[ $failed -eq 0 ]]
