#!/usr/bin/env bash
# `switchyard experiment <shipped file> --quick --seeds 2` end to end (no corpus needed): every arm
# trains two paired seeds, the report is written, and its numbers (summary.json, index.html) equal
# those recomputed here, independently of scripts/stats.py, from the runs' metrics.jsonl.
# Usage: tests/experiment_quick_test.sh BUILD_DIR [EXPERIMENT_FILE]
set -uo pipefail
BUILD=$(cd "${1:?usage: experiment_quick_test.sh BUILD_DIR [EXPERIMENT_FILE]}" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
FILE=${2:-$SRC/configs/experiments/global-vs-micro.toml}
SY="$BUILD/switchyard"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
source "$SRC/tests/lib.sh"  # check, fails_with, finish

start=$(date +%s)
check "experiment --quick --seeds 2" "$SY" experiment "$FILE" --quick --seeds 2 --out "$WORK/exp" --quiet
echo "experiment --quick --seeds 2 of $(basename "$FILE"): $(($(date +%s) - start)) s (runs and report)"
check "report written" test -s "$WORK/exp/report/index.html" -a -s "$WORK/exp/report/summary.json" \
  -a -s "$WORK/exp/report/summary.md"
check "the manifest is beside the runs" test -s "$WORK/exp/experiment.json"
check "a second call trains nothing" "$SY" experiment "$FILE" --quick --seeds 2 --out "$WORK/exp" --dry-run
check "every run is finished" test "$(grep -c 'finished (30 steps)' "$WORK/out")" -eq \
  "$(grep -cE '^  [^ ]+/seed-[0-9]+ ' "$WORK/out")"

# The recomputation: its own reading of metrics.jsonl, statistics from the definitions
# (docs/experiments.md) with Python's statistics module and the t quantile from SciPy.
check "summary equals the recomputation from metrics.jsonl" /usr/bin/python3 - "$WORK/exp" <<'EOF'
import json, math, os, re, statistics, sys, tomllib
from scipy.stats import t as student_t

root = sys.argv[1]
man = json.load(open(os.path.join(root, "experiment.json")))
summary = json.load(open(os.path.join(root, "report", "summary.json")))
page = open(os.path.join(root, "report", "index.html"), encoding="utf-8").read()
errors = []

def expect(cond, what):
    if not cond:
        errors.append(what)

def close(a, b):
    return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12))

expect(summary["seeds"] == 2 and man["seeds"] == 2, "seeds = 2 in summary.json and the manifest")
runs = {}  # (arm, seed) -> (train, evals)
for arm in man["arms"]:
    for r in arm["runs"]:
        d = os.path.join(root, r["dir"])
        expect(r["dir"] == f"{arm['name']}/seed-{r['seed']}", f"run directory {r['dir']}")
        recs = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl")) if l.strip()]
        runs[(arm["name"], r["seed"])] = ([x for x in recs if x["type"] == "train"],
                                          [x for x in recs if x["type"] == "eval"])
        cfg = tomllib.load(open(os.path.join(d, "config.toml"), "rb"))
        # paired seeds: seed k of every arm has the same seeds, one more than seed k - 1
        expect(cfg["train"]["seed"] == 1234 + r["seed"] - 1, f"{r['dir']}: train.seed")
        expect(cfg["data"]["synthetic_seed"] == 42 + r["seed"] - 1, f"{r['dir']}: data.synthetic_seed")
        expect(cfg["data"]["source"] == "synthetic", f"{r['dir']}: --quick uses the synthetic corpus")
arms = [a["name"] for a in man["arms"]]
ref = man["reference"]
seeds = [1, 2]

def midway(train, evals):  # the first evaluation at or past half the run
    return next(e["loss"] for e in evals if e["step"] >= 0.5 * train[-1]["step"])
target = max(midway(*runs[(ref, k)]) for k in seeds)
expect(close(summary["target"]["loss"], target), "target = the reference arm's highest loss half-way")

def metrics(train, evals):
    m = {"final_loss": evals[-1]["loss"], "best_loss": min(e["loss"] for e in evals),
         "avg_maxvio": statistics.fmean(x["avg_maxvio"] for x in train),
         "sup_maxvio": statistics.fmean(x["sup_maxvio"] for x in train),
         "maxvio_global": statistics.fmean(evals[-1]["maxvio_global"]),
         "dead_experts": float(sum(l["dead_experts"] for l in train[-1]["layers"])),
         "tokens_per_s": statistics.fmean(x["tokens_per_s"] for x in train[3:]),
         "wall_seconds": sum(x["step_ms"] for x in train) / 1000}
    last_dom = [e for e in evals if e.get("domains")][-1]
    m["specialisation"] = statistics.fmean(v for d in last_dom["domains"].values() for v in d["specialisation"])
    for j, layer in enumerate(train[-1]["layers"]):
        m[f"specialisation.layer{layer['layer']}"] = statistics.fmean(
            d["specialisation"][j] for d in last_dom["domains"].values())
    hit = next((e["step"] for e in evals if e["loss"] <= target), None)
    m["steps_to_target"] = None if hit is None else float(hit)
    m["seconds_to_target"] = None if hit is None else sum(x["step_ms"] for x in train if x["step"] <= hit) / 1000
    return m

per = {key: metrics(*v) for key, v in runs.items()}

def interval(xs):
    n = len(xs)
    mean, sd = statistics.fmean(xs), statistics.stdev(xs)
    half = student_t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, sd, (mean - half, mean + half)

for a in arms:
    for name in per[(a, 1)]:
        xs = [per[(a, k)][name] for k in seeds if per[(a, k)][name] is not None]
        got = summary["arms"][a]["stats"].get(name)
        expect(got is not None, f"{a}: {name} in summary.json")
        if got is None:
            continue
        expect(got["n"] == len(xs), f"{a}: {name}: n")
        if len(xs) == 2:
            mean, sd, (lo, hi) = interval(xs)
            expect(close(got["mean"], mean) and close(got["std"], sd), f"{a}: {name}: mean {got['mean']} vs {mean}, std {got['std']} vs {sd}")
            expect(close(got["ci95"][0], lo) and close(got["ci95"][1], hi), f"{a}: {name}: 95% interval")
    # the page shows each arm's final loss as mean ± std
    mean, sd, _ = interval([per[(a, k)]["final_loss"] for k in seeds])
    expect(f"{mean:.3f} ± {sd:.3f}" in page, f"{a}: index.html shows final_loss {mean:.3f} ± {sd:.3f}")

for a in arms:
    if a == ref:
        continue
    d = [per[(a, k)]["final_loss"] - per[(ref, k)]["final_loss"] for k in seeds]
    got = summary["paired"][a]["stats"]["final_loss"]
    mean, sd, (lo, hi) = interval(d)
    expect(close(got["mean"], mean) and close(got["ci95"][0], lo) and close(got["ci95"][1], hi),
           f"{a} - {ref}: paired final_loss difference")

# every claim's verdict follows the rule from the recomputed paired interval
expect(len(summary["claims"]) == len(man["claims"]) > 0, "every claim has a verdict")
for c in summary["claims"]:
    a, r = c["arm"], c.get("reference")
    vals = [(per[(a, k)].get(c["metric"]), per[(r, k)].get(c["metric"]) if r else c["value"]) for k in seeds]
    if c["metric"] not in per[(a, 1)] or any(x is None or y is None for x, y in vals):
        expect(c["verdict"] == "not resolved", f"claim {c}: not resolved without every value")
        continue
    _, _, (lo, hi) = interval([x - y for x, y in vals])
    side = hi < 0 if c["better"] == "lower" else lo > 0
    other = lo > 0 if c["better"] == "lower" else hi < 0
    want = "supported" if side else "contradicted" if other else "not resolved"
    expect(c["verdict"] == want, f"claim {c['metric']} {a} vs {r}: {c['verdict']}, the rule gives {want}")
    expect(f">{want}</td>" in page, f"index.html shows the verdict {want}")

for e in errors:
    print("mismatch:", e)
print(f"{len(per)} runs recomputed, {len(summary['claims'])} claims, {len(errors)} mismatch(es)")
sys.exit(1 if errors else 0)
EOF
cat "$WORK/out"

# scripts/results.sh (how docs/results/ is made) on the finished runs: trains nothing, re-makes
# the report and copies its summary.
name=$(basename "$FILE" .toml)
printf '# r\n\n<!-- verdicts:begin -->\n<!-- verdicts:end -->\n' >"$WORK/results.md"
check "scripts/results.sh copies the summary" env -C "$SRC" SEEDS=2 DEST="$WORK/dest" \
  RESULTS_MD="$WORK/results.md" EXTRA="--quick --out $WORK/exp --quiet" scripts/results.sh "$BUILD" "$name"
check "results.sh: the verdict table is remade" grep -q "^| $name | " "$WORK/results.md"
check "results.sh: summary.json is the report's" cmp "$WORK/dest/$name/summary.json" \
  "$WORK/exp/report/summary.json"
fails_with "results.sh: an unknown experiment" "no experiment" env -C "$SRC" \
  scripts/results.sh "$BUILD" no-such-experiment

finish experiment_quick_test
