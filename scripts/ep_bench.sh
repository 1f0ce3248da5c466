#!/usr/bin/env bash
# Expert parallelism, measured (docs/benchmarks.md): on SMALL with the same global batch,
#  1. speed by layout: 1 process x 2 threads (grad_accum 2), data parallel 2 ranks x 1 thread,
#     expert parallel 2 ranks x 1 thread (parallel.ep = 2) — tokens/s, per step the bytes a
#     rank sends and its time in the exchanges, and the peak resident set per process;
#  2. the straggler cost of imbalance under ep = 2: for routers without balancing, with the
#     micro-batch LBL, global-batch LBL, global + micro LBL, the loss-free bias and BIP — the
#     step MaxVio, the simulated ep_imbalance (max rank load / mean) and the measured wait for
#     the slowest rank (wait_ms), per step summed over layers;
#  3. device-limited routing under ep = 2 (router.max_ranks_per_token = 1 against no limit):
#     token rows per row, bytes, speed and balance;
#  4. the same three layouts on MEDIUM (64 experts, 218 M parameters; MEDIUM_STEPS steps, one
#     round): speed and the peak resident set per process — where expert parallelism saves memory.
# Layouts alternate for ROUNDS rounds and each keeps its best (noise only slows a round).
# Usage: scripts/ep_bench.sh [BUILD_DIR]
#   (env: STEPS, ROUNDS, MEDIUM_STEPS (0 = leave MEDIUM out); results: $BUILD/ep-bench.json)
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
STEPS=${STEPS:-20}
ROUNDS=${ROUNDS:-2}
MEDIUM_STEPS=${MEDIUM_STEPS:-8}
for v in STEPS ROUNDS; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "ep_bench.sh: $v must be a positive integer, got '${!v}'" >&2; exit 2; }
done
[[ "$MEDIUM_STEPS" =~ ^[0-9]+$ ]] || { echo "ep_bench.sh: MEDIUM_STEPS must be a non-negative integer, got '$MEDIUM_STEPS'" >&2; exit 2; }
(( STEPS > 5 )) || { echo "ep_bench.sh: STEPS must be > 5 (the first 3 steps are left out), got $STEPS" >&2; exit 2; }
(( MEDIUM_STEPS == 0 || MEDIUM_STEPS > 4 )) || { echo "ep_bench.sh: MEDIUM_STEPS must be 0 or > 4 (the first 3 steps are left out), got $MEDIUM_STEPS" >&2; exit 2; }
SY="$BUILD/switchyard"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(mpirun --oversubscribe -np 2)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
COMMON=(-c configs/small.toml --quiet --set train.steps="$STEPS" --set train.eval_every=0
        --set train.checkpoint_every=0 --set train.warmup_steps=2)

run() {  # run NAME LAYOUT [--set ...]   (the model and steps: COMMON)
  local name=$1 layout=$2
  shift 2
  case $layout in
    one) OMP_NUM_THREADS=2 "$SY" train "${COMMON[@]}" --set system.threads=2 --set train.grad_accum=2 \
           --set out_dir="$tmp/$name" "$@" ;;
    dp)  OMP_NUM_THREADS=1 "${MPIRUN[@]}" "$SY" train "${COMMON[@]}" --set system.threads=1 \
           --set train.grad_accum=1 --set out_dir="$tmp/$name" "$@" ;;
    ep)  OMP_NUM_THREADS=1 "${MPIRUN[@]}" "$SY" train "${COMMON[@]}" --set system.threads=1 \
           --set train.grad_accum=1 --set parallel.ep=2 --set out_dir="$tmp/$name" "$@" ;;
  esac >/dev/null
}

echo "== expert parallelism on SMALL: layouts, $ROUNDS alternating rounds of $STEPS steps"
for r in $(seq "$ROUNDS"); do
  for layout in one dp ep; do run "layout-$layout-$r" "$layout"; done
done
declare -A BALANCE=(
  [none]="--set balance.terms=[]"
  [micro-lbl]=""
  [global-lbl]="--set balance.terms.0.scope=global"
  [global+micro-lbl]="--set balance.terms.0.scope=global --set balance.terms.1.type=lbl --set balance.terms.1.scope=micro --set balance.terms.1.coef=0.001"
  [loss-free]="--set balance.terms=[] --set loss_free.update=sign --set loss_free.rate=0.001"
  [bip]="--set balance.terms=[] --set router.type=bip"
)
ORDER=(none micro-lbl global-lbl global+micro-lbl loss-free bip)
echo "== straggler cost under parallel.ep = 2: ${ORDER[*]}"
for b in "${ORDER[@]}"; do
  # shellcheck disable=SC2206
  extra=(${BALANCE[$b]})
  run "balance-$b" ep "${extra[@]}"
done
echo "== device-limited routing under parallel.ep = 2: router.max_ranks_per_token = 0 (off), 1"
for m in 0 1; do run "limit-$m" ep --set router.max_ranks_per_token="$m"; done
if (( MEDIUM_STEPS > 0 )); then
  echo "== expert parallelism on MEDIUM: layouts, one round of $MEDIUM_STEPS steps"
  COMMON=(-c configs/medium.toml --quiet --set train.steps="$MEDIUM_STEPS" --set train.eval_every=0
          --set train.checkpoint_every=0 --set train.warmup_steps=2)
  for layout in one dp ep; do run "medium-$layout-1" "$layout"; done
fi

/usr/bin/python3 - "$tmp" "$ROUNDS" "$BUILD/ep-bench.json" "$MEDIUM_STEPS" "${ORDER[@]}" <<'PYEOF'
import json, statistics, sys
tmp, rounds, out, medium_steps, order = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5:]
WARM = 3
def steps(name):
    recs = [json.loads(l) for l in open(f"{tmp}/{name}/metrics.jsonl") if l.strip()]
    return [r for r in recs if r["type"] == "train" and r["step"] > WARM]
def per_step(recs, f):
    return statistics.mean(f(r) for r in recs)
def ep_sum(r, key, agg):  # over layers, the per-rank values aggregated by agg
    return sum(agg(l["ep"][key]) for l in r["layers"])
res = {"steps": None, "layouts": {}, "balance": {}, "device_limit": {}}
names = {"one": "1 process x 2 threads", "dp": "data parallel, 2 ranks x 1 thread",
         "ep": "expert parallel (ep = 2), 2 ranks x 1 thread"}
def layouts(prefix, rounds, key):
    print(f"| layout | tokens/s (best of {rounds}) | bytes sent per rank per step | exchange ms per step | wait ms per step | peak RSS per process |")
    print("|---|---:|---:|---:|---:|---:|")
    res[key] = {}
    for layout in ("one", "dp", "ep"):
        best = None
        for r in range(1, rounds + 1):
            recs = steps(f"{prefix}{layout}-{r}")
            tps = statistics.median(x["tokens_per_s"] for x in recs)
            if best is None or tps > best[0]:
                best = (tps, recs)
        tps, recs = best
        row = {"tokens_per_s": tps, "peak_rss_mb": recs[-1]["peak_rss_mb"]}
        if layout == "ep":
            row["bytes_per_rank"] = per_step(recs, lambda r: ep_sum(r, "bytes_sent", statistics.mean))
            row["exchange_ms"] = per_step(recs, lambda r: ep_sum(r, "exchange_ms", statistics.mean))
            row["wait_ms"] = per_step(recs, lambda r: ep_sum(r, "wait_ms", max))
        res[key][names[layout]] = row
        fmt = lambda k, f: f.format(row[k]) if k in row else "—"
        print(f"| {names[layout]} | {tps:,.0f} | {fmt('bytes_per_rank', '{:,.0f}')} | "
              f"{fmt('exchange_ms', '{:.1f}')} | {fmt('wait_ms', '{:.1f}')} | {row['peak_rss_mb']:,.0f} MB |")
    print()
print("SMALL")
layouts("layout-", rounds, "layouts")
res["steps"] = len(steps("layout-one-1"))
print()
print("| balancing (ep = 2) | step MaxVio | simulated ep_imbalance | measured wait ms per step | experts ms per step (slowest rank) | step ms |")
print("|---|---:|---:|---:|---:|---:|")
for b in order:
    recs = steps(f"balance-{b}")
    row = {
        "maxvio": per_step(recs, lambda r: statistics.mean(l["maxvio"] for l in r["layers"])),
        "ep_imbalance": per_step(recs, lambda r: statistics.mean(l["ep_imbalance"]["2"] for l in r["layers"])),
        "wait_ms": per_step(recs, lambda r: ep_sum(r, "wait_ms", max)),
        "experts_ms_slowest": per_step(recs, lambda r: ep_sum(r, "experts_ms", max)),
        "step_ms": per_step(recs, lambda r: r["step_ms"]),
    }
    res["balance"][b] = row
    print(f"| {b} | {row['maxvio']:.3f} | {row['ep_imbalance']:.3f} | {row['wait_ms']:.1f} | "
          f"{row['experts_ms_slowest']:.1f} | {row['step_ms']:.0f} |")
print()
print("| device-limited routing (ep = 2) | token rows / rows | bytes sent per rank per step | tokens/s | step MaxVio |")
print("|---|---:|---:|---:|---:|")
for m in (0, 1):
    recs = steps(f"limit-{m}")
    row = {
        "tokens_per_row": sum(ep_sum(r, "tokens", sum) for r in recs) / sum(ep_sum(r, "rows", sum) for r in recs),
        "bytes_per_rank": per_step(recs, lambda r: ep_sum(r, "bytes_sent", statistics.mean)),
        "tokens_per_s": statistics.median(x["tokens_per_s"] for x in recs),
        "maxvio": per_step(recs, lambda r: statistics.mean(l["maxvio"] for l in r["layers"])),
    }
    res["device_limit"][str(m)] = row
    print(f"| {'off' if m == 0 else f'max_ranks_per_token = {m}'} | {row['tokens_per_row']:.3f} | "
          f"{row['bytes_per_rank']:,.0f} | {row['tokens_per_s']:,.0f} | {row['maxvio']:.3f} |")
if medium_steps > 0:
    print("\nMEDIUM")
    layouts("medium-", 1, "medium_layouts")
json.dump(res, open(out, "w"), indent=2)
print(f"\n(steps {WARM + 1}..; wait: per layer the slowest rank's wait, summed over layers; results in {out})")
PYEOF
