#!/usr/bin/python3
"""Statistics over the seeds of a switchyard experiment, and the verdicts of its claims.

    scripts/stats.py OUT_DIR/experiment.json [--out DIR]

Reads the manifest `switchyard experiment` writes (arms, seeds, run directories, reference arm,
target loss, claims) and every run's metrics.jsonl, and writes DIR/summary.json and
DIR/summary.md (DIR defaults to OUT_DIR/report; scripts/report.py writes the same two files
beside its index.html). Definitions and the verdict rule: docs/experiments.md.

Per run, the headline metrics (run_metrics); per arm, mean, std (n - 1) and the 95% t-interval of
each over its seeds (describe); per arm and metric, the paired difference arm - reference, seed by
seed, with its 95% t-interval (paired); per claim, the verdict from that interval (verdict).
A run that has not written metrics yet is left out with a note (a partial experiment).
"""
import argparse
import json
import math
import os
import re
import sys
import tomllib

import numpy as np

import metrics_jsonl  # scripts/metrics_jsonl.py

CONFIDENCE = 0.95
EARLY_STEPS = 100  # the *_first100 metrics: training steps 1..100
LATE_FRACTION = 1 / 3  # the *_last_third metrics: the last third of the training steps
TARGET_FRACTION = 0.5  # the default target loss: the reference arm's loss half-way through
WARMUP_STEPS = 3  # steps left out of tokens_per_s (start-up, first allocations), as in report.py

SUPPORTED, CONTRADICTED, NOT_RESOLVED = "supported", "contradicted", "not resolved"

RULE = ("A claim says that the arm's metric is lower (or higher) than the reference arm's. Its "
        "verdict comes from the paired difference d_k = arm_k - reference_k over the seeds k "
        "(or d_k = arm_k - value for a claim against a constant) and the 95% t-interval of the "
        "mean of d (n - 1 degrees of freedom): supported if the whole interval lies on the "
        "claimed side of 0 (below 0 for lower, above 0 for higher), contradicted if it lies "
        "wholly on the other side, not resolved otherwise (the interval contains 0 or touches "
        "it), and not resolved with fewer than 2 seeds or when a seed lacks the metric in "
        "either arm. Time to target (*_to_target): a run that trained to its end without "
        "reaching the target has its length (steps, or training seconds) as a lower bound of "
        "its value. Where only the arm's runs are censored, each d_k from their bounds is a "
        "lower bound of the true difference, so an interval wholly above 0 decides (the arm "
        "is slower); where only the reference's are, the d_k are upper bounds and only an "
        "interval wholly below 0 decides; otherwise (bounds that do not decide, or a seed "
        "censored in both arms) not resolved.")

# The time-to-target metrics: a run that never reaches the target has a lower bound instead.
TARGET_METRICS = ["steps_to_target", "seconds_to_target", "steps_to_target_causal", "seconds_to_target_causal"]

# Metric names (src/train/experiment.h: kClaimMetrics and kDomainMetrics), in table order.
METRICS = ["final_loss", "final_perplexity", "best_loss", "best_perplexity", "final_loss_causal",
           "causal_gap", "specialisation", "avg_maxvio", "avg_maxvio_first100",
           "avg_maxvio_last_third", "sup_maxvio", "sup_maxvio_first100", "sup_maxvio_last_third",
           "maxvio_global", "dead_experts", "steps_to_target",
           "seconds_to_target", "steps_to_target_causal", "seconds_to_target_causal", "tokens_per_s",
           "wall_seconds", "oracle_objective_gap", "oracle_dual_gap"]
DOMAIN_METRICS = ["final_loss", "final_perplexity", "best_loss", "best_perplexity"]
LAYER_RE = re.compile(r"^specialisation\.layer(\d+)$")
DOMAIN_RE = re.compile(r"^domain\.(.+)\.([a-z_]+)$")

DESCRIPTIONS = {
    "final_loss": "validation loss of the last evaluation (nats/token)",
    "final_perplexity": "its perplexity",
    "best_loss": "lowest validation loss over the evaluations",
    "best_perplexity": "lowest validation perplexity",
    "final_loss_causal": ("last evaluation's loss with causal routing: loss_causal (Expert Choice, "
                          "Sinkhorn), else loss (the other routers are causal)"),
    "causal_gap": "loss_causal - loss at the last evaluation (runs that report loss_causal)",
    "specialisation": "KL(F^ || uniform), nats, mean over domains and MoE layers, last eval with domains",
    "avg_maxvio": "mean over steps of AvgMaxVio (mean over layers of the step MaxVio)",
    "avg_maxvio_first100": "the same over steps 1..100",
    "avg_maxvio_last_third": ("the same over the last third of the steps (steps > 2/3 of the last "
                              "step: the steady state, once a balancer has converged)"),
    "sup_maxvio": "mean over steps of SupMaxVio (max over layers of the step MaxVio)",
    "sup_maxvio_first100": "the same over steps 1..100",
    "sup_maxvio_last_third": "the same over the last third of the steps",
    "maxvio_global": "last evaluation's MaxVio over the validation set, mean over layers",
    "dead_experts": "last step, summed over layers (load < 10% of the mean)",
    "steps_to_target": "first evaluation step with validation loss <= the target",
    "seconds_to_target": "training seconds (sum of step_ms) through that step",
    "steps_to_target_causal": "the same with the causal routing's loss (final_loss_causal's)",
    "seconds_to_target_causal": "the same with the causal routing's loss",
    "tokens_per_s": f"mean over steps after the first {WARMUP_STEPS}",
    "wall_seconds": "training seconds, sum of step_ms over all steps",
    "oracle_objective_gap": "1 - objective/optimum, mean over oracle steps and layers",
    "oracle_dual_gap": "BIP: D(q)/optimum - 1, mean over oracle steps and layers",
}


class StatsError(Exception):
    pass


def num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def mean_or_none(xs):
    xs = [x for x in xs if num(x)]
    return sum(xs) / len(xs) if xs else None


# ---------------------------------------------------------------------------------------------
# One run


def read_records(path):
    """(train records, eval records) of a metrics.jsonl; a torn last line is skipped."""
    train, evals = [], []
    try:
        recs = list(metrics_jsonl.records(path))
    except metrics_jsonl.MetricsError as e:
        raise StatsError(str(e)) from None
    for _, r in recs:
        if r.get("type") == "train" and num(r.get("step")):
            train.append(r)
        elif r.get("type") == "eval" and num(r.get("step")) and num(r.get("loss")):
            evals.append(r)
    return train, evals


def time_to_target(train, evals, target, key="loss"):
    """(steps, seconds) until the validation loss first reaches `target`, or (None, None).

    Seconds: the sum of step_ms (training time; evaluations and start-up excluded) through that
    step. A step that ran the oracle (router.oracle_every; a measurement, not training) counts at
    the run's median step time."""
    if target is None:
        return None, None
    hit = next((e["step"] for e in sorted(evals, key=lambda e: e["step"])
                if num(e.get(key)) and e[key] <= target), None)
    if hit is None:
        return None, None
    return int(hit), training_seconds(train, hit)


def training_seconds(train, through_step):
    """The sum of step_ms through `through_step`, in seconds; an oracle step counts at the
    run's median step time (see time_to_target)."""
    plain = [t["step_ms"] for t in train if num(t.get("step_ms")) and not has_oracle(t)]
    median = float(np.median(plain)) if plain else 0.0
    ms = 0.0
    for t in train:
        if t["step"] > through_step:
            break
        ms += median if has_oracle(t) or not num(t.get("step_ms")) else t["step_ms"]
    return ms / 1000.0


def target_bounds(train, evals, metrics, target):
    """For a finished run that never reached the target: {metric: lower bound} for each
    *_to_target metric it lacks -- its length, in steps or training seconds (had it trained
    on, it would have reached the target later than that, if at all). Empty without a target
    or evaluations."""
    if target is None or not train or not evals:
        return {}
    last = train[-1]["step"]
    length = {"steps": float(last), "seconds": training_seconds(train, last)}
    return {k: length[k.split("_")[0]] for k in TARGET_METRICS if metrics.get(k) is None}


def midway_loss(train, evals):
    """The validation loss of the run's first evaluation at or after TARGET_FRACTION of its
    steps (its last evaluation if none is), or None without evaluations."""
    evals = sorted(evals, key=lambda e: e["step"])
    if not evals or not train:
        return None
    at = TARGET_FRACTION * train[-1]["step"]
    return next((e["loss"] for e in evals if e["step"] >= at), evals[-1]["loss"])


def has_oracle(t):
    return any(isinstance(l, dict) and isinstance(l.get("oracle"), dict) for l in t.get("layers", []))


def run_metrics(train, evals, target=None):
    """The headline metrics of one run: {name: float or None}; names as in METRICS, plus
    domain.<d>.<m> and specialisation.layer<l>. docs/experiments.md defines each."""
    m = {k: None for k in METRICS}
    evals = sorted(evals, key=lambda e: e["step"])
    if evals:
        last = evals[-1]
        m["final_loss"] = last["loss"]
        m["final_perplexity"] = last.get("perplexity") if num(last.get("perplexity")) else math.exp(last["loss"])
        m["best_loss"] = min(e["loss"] for e in evals)
        m["best_perplexity"] = min(e["perplexity"] if num(e.get("perplexity")) else math.exp(e["loss"])
                                   for e in evals)
        m["final_loss_causal"] = last["loss"]
        if num(last.get("loss_causal")):
            m["final_loss_causal"] = last["loss_causal"]
            m["causal_gap"] = last["loss_causal"] - last["loss"]
        mg = last.get("maxvio_global")
        if isinstance(mg, list):
            m["maxvio_global"] = mean_or_none(mg)
        domains = []
        for e in evals:
            for d in (e.get("domains") or {}):
                if d not in domains:
                    domains.append(d)
        for d in domains:
            pts = [e["domains"][d] for e in evals
                   if isinstance((e.get("domains") or {}).get(d), dict) and num(e["domains"][d].get("loss"))]
            if not pts:
                continue
            ppl = [p["perplexity"] if num(p.get("perplexity")) else math.exp(p["loss"]) for p in pts]
            m[f"domain.{d}.final_loss"] = pts[-1]["loss"]
            m[f"domain.{d}.final_perplexity"] = ppl[-1]
            m[f"domain.{d}.best_loss"] = min(p["loss"] for p in pts)
            m[f"domain.{d}.best_perplexity"] = min(ppl)
        ev_dom = next((e for e in reversed(evals) if isinstance(e.get("domains"), dict) and e["domains"]), None)
        if ev_dom is not None:
            ids = [l.get("layer", j) for j, l in enumerate(train[-1].get("layers", []))] if train else []
            per_layer = {}
            for d in ev_dom["domains"].values():
                spec = d.get("specialisation") if isinstance(d, dict) else None
                for j, v in enumerate(spec or []):
                    if num(v):
                        per_layer.setdefault(j, []).append(v)
            for j in sorted(per_layer):
                lid = ids[j] if j < len(ids) else j
                m[f"specialisation.layer{lid}"] = mean_or_none(per_layer[j])
            m["specialisation"] = mean_or_none([v for vs in per_layer.values() for v in vs])
    if train:
        m["avg_maxvio"] = mean_or_none([t.get("avg_maxvio") for t in train])
        m["sup_maxvio"] = mean_or_none([t.get("sup_maxvio") for t in train])
        early = [t for t in train if t["step"] <= EARLY_STEPS]
        m["avg_maxvio_first100"] = mean_or_none([t.get("avg_maxvio") for t in early])
        m["sup_maxvio_first100"] = mean_or_none([t.get("sup_maxvio") for t in early])
        late_from = train[-1]["step"] * (1 - LATE_FRACTION)
        late = [t for t in train if t["step"] > late_from]
        m["avg_maxvio_last_third"] = mean_or_none([t.get("avg_maxvio") for t in late])
        m["sup_maxvio_last_third"] = mean_or_none([t.get("sup_maxvio") for t in late])
        dead = [l.get("dead_experts") for l in train[-1].get("layers", [])]
        dead = [d for d in dead if num(d)]
        m["dead_experts"] = float(sum(dead)) if dead else None
        steady = train[WARMUP_STEPS:] if len(train) > WARMUP_STEPS else train
        m["tokens_per_s"] = mean_or_none([t.get("tokens_per_s") for t in steady])
        ms = [t.get("step_ms") for t in train if num(t.get("step_ms"))]
        m["wall_seconds"] = sum(ms) / 1000.0 if ms else None
        gaps, duals = [], []
        for t in train:
            for l in t.get("layers", []):
                o = l.get("oracle") if isinstance(l, dict) else None
                if isinstance(o, dict):
                    if num(o.get("objective_gap")):
                        gaps.append(o["objective_gap"])
                    if num(o.get("dual_gap")):
                        duals.append(o["dual_gap"])
        m["oracle_objective_gap"] = mean_or_none(gaps)
        m["oracle_dual_gap"] = mean_or_none(duals)
    steps, secs = time_to_target(train, evals, target)
    m["steps_to_target"] = float(steps) if steps is not None else None
    m["seconds_to_target"] = secs
    causal = [dict(e, causal=e["loss_causal"] if num(e.get("loss_causal")) else e["loss"]) for e in evals]
    steps, secs = time_to_target(train, causal, target, key="causal")
    m["steps_to_target_causal"] = float(steps) if steps is not None else None
    m["seconds_to_target_causal"] = secs
    return m


# ---------------------------------------------------------------------------------------------
# Statistics


def describe(values):
    """n, mean, std (n - 1) and the 95% t-interval of the mean of `values` (numbers).
    With one value: std and the interval are None."""
    from scipy import stats as sps  # here: a report without an experiment needs no SciPy

    vals = [float(v) for v in values]
    n = len(vals)
    out = {"n": n, "mean": None, "std": None, "ci95": None}
    if n == 0:
        return out
    mean = float(np.mean(vals))
    out["mean"] = mean
    if n >= 2:
        out["std"] = float(np.std(vals, ddof=1))
        sem = float(sps.sem(vals))
        if sem == 0.0:  # every value equal: the interval is the point (t.interval gives nan)
            out["ci95"] = [mean, mean]
        else:
            lo, hi = sps.t.interval(CONFIDENCE, n - 1, loc=mean, scale=sem)
            out["ci95"] = [float(lo), float(hi)]
    return out


def paired(arm, ref):
    """The paired difference arm - ref over the seeds both have: describe() of the differences
    plus `seeds` (those used), `missing` (seeds where either lacks a value) and `values`.
    arm, ref: {seed: value or None}; ref may be a number (a claim against a constant)."""
    seeds = sorted(set(arm) | (set(ref) if isinstance(ref, dict) else set()))
    used, diffs, missing = [], [], []
    for k in seeds:
        a = arm.get(k)
        b = ref.get(k) if isinstance(ref, dict) else ref
        if num(a) and num(b):
            used.append(k)
            diffs.append(a - b)
        else:
            missing.append(k)
    out = describe(diffs)
    out.update({"seeds": used, "missing": missing, "values": diffs})
    return out


def paired_censored(arm, ref, arm_bounds, ref_bounds):
    """paired() for a time-to-target metric with censored seeds: a missing value is replaced by
    its run's lower bound (target_bounds). Adds `bound`: "lower" when only arm values were
    replaced (every d_k is a lower bound of the true difference), "upper" when only ref values
    were; `censored`: {"arm": seeds, "reference": seeds}. None when the bounds cannot help: a
    seed censored in both arms, a value missing without a bound, or both arms censored (in
    different seeds)."""
    seeds = sorted(set(arm) | set(ref))
    arm_c = [k for k in seeds if not num(arm.get(k)) and num(arm_bounds.get(k))]
    ref_c = [k for k in seeds if not num(ref.get(k)) and num(ref_bounds.get(k))]
    if arm_c and ref_c:
        return None
    a = {k: arm[k] if num(arm.get(k)) else arm_bounds.get(k) for k in seeds}
    b = {k: ref[k] if num(ref.get(k)) else ref_bounds.get(k) for k in seeds}
    out = paired(a, b)
    if out["missing"]:
        return None
    out["bound"] = "lower" if arm_c else "upper"  # something was missing, and every gap has a bound
    out["censored"] = {"arm": arm_c, "reference": ref_c}
    return out


def verdict(diff, better):
    """(verdict, reason) of a claim from its paired difference (paired()) and side
    ("lower": the arm's metric is claimed below the reference's)."""
    if better not in ("lower", "higher"):
        raise StatsError(f"claim: better must be 'lower' or 'higher', got {better!r}")
    if diff.get("missing"):
        return NOT_RESOLVED, f"seed(s) {', '.join(map(str, diff['missing']))} lack a value in one or both arms"
    if diff["n"] < 2:
        return NOT_RESOLVED, f"{diff['n']} seed(s): an interval needs at least 2"
    lo, hi = diff["ci95"]
    below, above = hi < 0, lo > 0
    bound = diff.get("bound")
    if bound == "lower" and not above:
        return NOT_RESOLVED, "the differences are lower bounds (the arm censored) and their interval is not wholly above 0"
    if bound == "upper" and not below:
        return NOT_RESOLVED, "the differences are upper bounds (the reference censored) and their interval is not wholly below 0"
    if (below and better == "lower") or (above and better == "higher"):
        return SUPPORTED, "the 95% interval lies on the claimed side of 0"
    if below or above:
        return CONTRADICTED, "the 95% interval lies on the other side of 0"
    return NOT_RESOLVED, "the 95% interval contains 0"


# ---------------------------------------------------------------------------------------------
# An experiment


def load_manifest(path):
    try:
        with open(path, encoding="utf-8") as f:
            man = json.load(f)
    except OSError as e:
        raise StatsError(f"{path}: {e.strerror}") from None
    except ValueError as e:
        raise StatsError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(man, dict) or not isinstance(man.get("arms"), list) or not num(man.get("seeds")):
        raise StatsError(f"{path}: not an experiment manifest (written by `switchyard experiment`)")
    return man


def metric_order(names):
    """METRICS first, then specialisation.layer<l> by l, then domain metrics by domain name
    (sorted: `names` may be a set, whose order changes from one process to the next)."""
    base = [k for k in METRICS if k in names]
    layers = sorted((k for k in names if LAYER_RE.match(k)), key=lambda k: int(LAYER_RE.match(k).group(1)))
    doms = sorted({DOMAIN_RE.match(k).group(1) for k in names if DOMAIN_RE.match(k)})
    dom_keys = [f"domain.{d}.{m}" for d in doms for m in DOMAIN_METRICS if f"domain.{d}.{m}" in names]
    return base + layers + dom_keys


def planned_steps(run_dir):
    """train.steps of the run (its config.toml), or None when the file or key is absent."""
    path = os.path.join(run_dir, "config.toml")
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        steps = tomllib.load(f).get("train", {}).get("steps")
    return steps if isinstance(steps, int) else None


def summarise(manifest_path):
    """The summary of an experiment (the content of summary.json)."""
    man = load_manifest(manifest_path)
    root = os.path.dirname(os.path.abspath(manifest_path))
    notes = list(man.get("notes", []))
    records = {}  # arm -> [(run entry, train, evals)]
    for arm in man["arms"]:
        rows = []
        for run in arm.get("runs", []):
            d = os.path.join(root, run["dir"])
            path = os.path.join(d, "metrics.jsonl")
            if not os.path.isfile(path):
                notes.append(f"{arm['name']} seed {run['seed']}: {path} not found (not trained yet): left out")
                continue
            train, evals = read_records(path)
            if not train:
                notes.append(f"{arm['name']} seed {run['seed']}: no training steps yet: left out")
                continue
            planned = planned_steps(d)
            if planned is not None and train[-1]["step"] < planned:
                notes.append(f"{arm['name']} seed {run['seed']}: trained to step {train[-1]['step']} "
                             f"of {planned} (unfinished or still running): left out")
                continue
            rows.append((run, train, evals))
        records[arm["name"]] = rows

    reference = man.get("reference")
    target, target_source = man.get("target_loss"), "target_loss in the experiment file"
    if not num(target):
        target, target_source = None, "none: no target_loss and no reference arm"
        if reference and records.get(reference):
            mids = [midway_loss(t, e) for _, t, e in records[reference]]
            mids = [m for m in mids if num(m)]
            if mids:
                target = max(mids)
                target_source = (f"reference arm {reference}: the highest validation loss over its "
                                 f"{len(mids)} seed(s) at the first evaluation past {TARGET_FRACTION:g} "
                                 f"of the run, so every reference seed reaches it by then")

    arms = {}
    for arm in man["arms"]:
        runs = []
        for run, train, evals in records[arm["name"]]:
            m = run_metrics(train, evals, target)
            runs.append({"seed": run["seed"], "dir": run["dir"], "train_seed": run.get("train_seed"),
                         "steps": train[-1]["step"], "metrics": m,
                         "target_bounds": target_bounds(train, evals, m, target)})
        arms[arm["name"]] = {"runs": runs}
    # Every metric some run has, for every arm (an arm without it shows which seeds lack it).
    names = set()
    for a in arms.values():
        for r in a["runs"]:
            names |= {k for k, v in r["metrics"].items() if num(v)}
    for a in arms.values():
        runs = a["runs"]
        st = {}
        for k in metric_order(names):
            d = describe([r["metrics"][k] for r in runs if num(r["metrics"].get(k))])
            d["missing"] = [r["seed"] for r in runs if not num(r["metrics"].get(k))]
            d["values"] = {str(r["seed"]): r["metrics"].get(k) for r in runs}
            st[k] = d
        a["stats"] = st

    def by_seed(name, k):
        return {r["seed"]: r["metrics"].get(k) for r in arms[name]["runs"]}

    def bounds(name, k):
        return {r["seed"]: r["target_bounds"].get(k) for r in arms[name]["runs"]}

    paired_out = {}
    if reference in arms:
        for name in arms:
            if name == reference:
                continue
            keys = [k for k in arms[name]["stats"] if k in arms[reference]["stats"]]
            paired_out[name] = {"reference": reference,
                                "stats": {k: paired(by_seed(name, k), by_seed(reference, k)) for k in keys}}

    claims = []
    for c in man.get("claims", []):
        out = dict(c)
        if c.get("arm") not in arms or ("value" not in c and c.get("reference") not in arms):
            out.update({"difference": None, "verdict": NOT_RESOLVED, "reason": "its runs are not in the experiment"})
        else:
            ref = c["value"] if "value" in c else by_seed(c["reference"], c["metric"])
            diff = paired(by_seed(c["arm"], c["metric"]), ref)
            if diff["missing"] and c["metric"] in TARGET_METRICS and "value" not in c:
                diff = paired_censored(by_seed(c["arm"], c["metric"]), ref, bounds(c["arm"], c["metric"]),
                                       bounds(c["reference"], c["metric"])) or diff
            v, why = verdict(diff, c["better"])
            if diff.get("bound"):
                who = c["arm"] if diff["bound"] == "lower" else c["reference"]
                seeds = diff["censored"]["arm" if diff["bound"] == "lower" else "reference"]
                why += (f" ({who} never reached the target at seed(s) {', '.join(map(str, seeds))}: "
                        f"its run length stands in as a lower bound)")
            elif diff["missing"]:
                lacking = [(n, sorted(k for k, x in by_seed(n, c["metric"]).items() if not num(x)))
                           for n in (c["arm"], c.get("reference")) if n in arms]
                why += " (" + "; ".join(f"{n} lacks it at seed(s) {', '.join(map(str, ks))}"
                                        for n, ks in lacking if ks)
                why += "; for *_to_target: the target not reached)" if "to_target" in c["metric"] else ")"
            elif diff["n"] == 0:
                why = "no run has this metric"
            out.update({"difference": diff, "verdict": v, "reason": why})
        claims.append(out)

    return {
        "experiment": man.get("file"), "description": man.get("description"), "claim": man.get("claim"),
        "command": man.get("command"), "seeds": int(man["seeds"]), "quick": bool(man.get("quick")),
        "confidence": CONFIDENCE, "reference": reference,
        "target": {"loss": target, "source": target_source},
        "arms": arms, "paired": paired_out, "claims": claims, "rule": RULE, "notes": notes,
        "metrics": {k: DESCRIPTIONS.get(k, "") for k in METRICS},
    }


# ---------------------------------------------------------------------------------------------
# Tables (markdown here; report.py renders the same tables as HTML)


def fnum(x, ref=None):
    """A number with precision by magnitude (of `ref` when given, so that mean and std match)."""
    if not num(x):
        return "—"
    a = abs(ref if num(ref) else x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.3f}"
    return f"{x:.4f}"


def fstat(d):
    """mean ± std [lo, hi] (n), or what there is of it."""
    if not d or d.get("mean") is None:
        return "— (no value at any seed)" if d and d.get("missing") else "—"
    m = d["mean"]
    s = fnum(m)
    if d.get("std") is not None:
        s += f" ± {fnum(d['std'], m)}"
    if d.get("ci95"):
        s += f" [{fnum(d['ci95'][0], m)}, {fnum(d['ci95'][1], m)}]"
    if d.get("missing"):
        s += f" (n={d['n']}, missing seed {', '.join(map(str, d['missing']))})"
    if d.get("bound"):
        s += f" ({d['bound']} bounds: a run never reached the target)"
    return s


def claim_text(c):
    other = c["reference"] if "reference" in c else f"{c['value']:g}"
    return f"{c['metric']}: {c['arm']} {c['better']} than {other}"


def tables(summary):
    """[(id, title, header, rows, note)] for summary.md and the HTML report."""
    out = []
    arms = list(summary["arms"])
    if summary["claims"]:
        rows = []
        for c in summary["claims"]:
            d = c.get("difference") or {}
            rows.append([claim_text(c) + (f" — {c['text']}" if c.get("text") else ""),
                         fstat(d), str(d.get("n", 0)), c["verdict"], c["reason"]])
        out.append(("claims", "Claims", ["claim", "paired difference arm − reference: mean ± std [95% interval]",
                                         "seeds", "verdict", "why"], rows, RULE))
    names = []
    for a in arms:
        names += [k for k in summary["arms"][a]["stats"] if k not in names]
    names = metric_order(names)
    main = [k for k in names if not k.startswith("domain.")]
    dom = [k for k in names if k.startswith("domain.")]
    for tid, title, keys in (("stats", "Statistics over seeds", main),
                             ("stats-domains", "Statistics over seeds, per domain", dom)):
        if not keys:
            continue
        rows = [[k] + [fstat(summary["arms"][a]["stats"].get(k)) for a in arms] for k in keys]
        out.append((tid, title, ["metric"] + [f"{a} (n={len(summary['arms'][a]['runs'])})" for a in arms], rows,
                    f"mean ± std [95% t-interval] over seeds; {summary['seeds']} seed(s) per arm."))
    if summary["paired"]:
        others = list(summary["paired"])
        keys = [k for k in names if any(k in summary["paired"][a]["stats"] for a in others)]
        rows = [[k] + [fstat(summary["paired"][a]["stats"].get(k)) for a in others] for k in keys]
        out.append(("paired", f"Paired differences from the reference ({summary['reference']})",
                    ["metric"] + [f"{a} − {summary['reference']}" for a in others], rows,
                    "arm − reference, seed by seed: mean ± std [95% t-interval] of the differences."))
    return out


def markdown(summary):
    def esc(s):
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = [f"# Experiment: {summary.get('description') or summary.get('experiment')}", ""]
    lines.append(f"* file: `{summary.get('experiment')}`; command: `{summary.get('command')}`")
    lines.append(f"* seeds: {summary['seeds']}{' (--quick: a smoke run, not a result)' if summary['quick'] else ''}; "
                 f"reference arm: {summary.get('reference') or 'none'}")
    t = summary["target"]
    lines.append(f"* target loss: {fnum(t['loss']) if t['loss'] is not None else 'none'} ({t['source']})")
    lines.append("")
    for _, title, header, rows, note in tables(summary):
        lines += [f"## {title}", "", "| " + " | ".join(esc(h) for h in header) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
        lines += ["", note, ""]
    if summary["notes"]:
        lines += ["## Notes", ""] + [f"* {n}" for n in summary["notes"]] + [""]
    lines += ["## Metrics", ""] + [f"* `{k}`: {v}" for k, v in summary["metrics"].items()] + [
        "* `domain.<d>.<m>`: the same per validation domain; `specialisation.layer<l>`: per MoE layer", ""]
    return "\n".join(lines)


def write_summary(summary, out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, allow_nan=False)
        f.write("\n")
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(markdown(summary))
    return os.path.join(out, "summary.md")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Statistics over seeds and claim verdicts of a switchyard experiment.")
    ap.add_argument("manifest", help="OUT_DIR/experiment.json (written by `switchyard experiment`)")
    ap.add_argument("--out", help="directory for summary.json and summary.md (default: OUT_DIR/report)")
    args = ap.parse_args(argv)
    try:
        summary = summarise(args.manifest)
    except (StatsError, OSError) as e:
        print(f"stats: {e}", file=sys.stderr)
        return 1
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.manifest)), "report")
    path = write_summary(summary, out)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
