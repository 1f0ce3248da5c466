#!/usr/bin/python3
"""Writes a report of one or more switchyard runs: PNG plots (matplotlib, Agg) and an index.html.

    scripts/report.py RUN_DIR [RUN_DIR ...] --out REPORT_DIR
    scripts/report.py --experiment OUT_DIR/experiment.json --out REPORT_DIR

Each RUN_DIR is a training output directory (metrics.jsonl, config.toml; docs/training.md).
Runs are named by their directory name. With --experiment (what `switchyard experiment` runs),
the runs are the experiment's (named <arm> or <arm>/seed-<k>), and the page adds the statistics
over seeds, the paired differences from the reference arm and the claims' verdicts
(scripts/stats.py), also written as REPORT_DIR/summary.json and summary.md. The page is static:
open REPORT_DIR/index.html in a browser, no server needed. Plots whose data a run does not have
yet (no evaluations, no per-domain results) are skipped with a note on the page.
"""
import argparse
import html
import json
import math
import os
import re
import sys
import tomllib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.ticker import MaxNLocator  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import metrics_jsonl  # noqa: E402  (scripts/metrics_jsonl.py, beside this file)
import stats  # noqa: E402  (scripts/stats.py, beside this file)

WARMUP_STEPS = 3  # steps left out of the speed averages (start-up, first allocations)
EPT_LABELS = ["0", "1", "2", "3", "4", "≥5"]


class ReportError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Reading runs


class Run:
    def __init__(self, path, name):
        self.path = path
        self.name = name
        self.train = []
        self.evals = []
        self.checkpoints = []  # {"type": "checkpoint"} records: how long each paused training
        self.config = {}
        self.config_note = None
        self.skipped = {}  # record type -> count of records this script does not read
        self.arm = name  # an experiment's arm (its seeds share a colour); else the run itself
        self.seed = None


def load_run(path, name):
    run = Run(path, name)
    metrics = os.path.join(path, "metrics.jsonl")
    if not os.path.isdir(path):
        raise ReportError(f"{path}: not a directory")
    if not os.path.isfile(metrics):
        raise ReportError(f"{metrics}: not found (is {path} a switchyard run directory?)")
    try:
        recs = list(metrics_jsonl.records(metrics))
    except metrics_jsonl.MetricsError as e:
        raise ReportError(str(e)) from None
    for lineno, r in recs:
        kind = r.get("type")
        if kind == "train":
            for key in ("step", "loss"):
                if not isinstance(r.get(key), (int, float)):
                    raise ReportError(f"{metrics}:{lineno}: train record without a numeric '{key}'")
            run.train.append(r)
        elif kind == "eval":
            for key in ("step", "loss"):
                if not isinstance(r.get(key), (int, float)):
                    raise ReportError(f"{metrics}:{lineno}: eval record without a numeric '{key}'")
            run.evals.append(r)
        elif kind == "checkpoint":
            run.checkpoints.append(r)
        else:  # a record type newer than this script: skipped, said on the page
            run.skipped[kind] = run.skipped.get(kind, 0) + 1
    if not run.train:
        raise ReportError(f"{metrics}: no training steps (the file is empty or has only evaluations)")
    cfg = os.path.join(path, "config.toml")
    if os.path.isfile(cfg):
        try:
            with open(cfg, "rb") as f:
                run.config = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ReportError(f"{cfg}: not valid TOML ({e})") from None
    else:
        run.config_note = f"{cfg} not found: configuration not shown"
    return run


def config_summary(cfg):
    """One short line: router, E/top-K, balancing terms."""
    if not cfg:
        return "—"
    model = cfg.get("model", {})
    router = cfg.get("router", {})
    parts = []
    rtype = router.get("type", "?")
    if rtype == "bip" and router.get("bip_mode"):
        rtype += f" ({router['bip_mode']})"
    parts.append(f"router {rtype}")
    if "n_experts" in model:
        parts.append(f"E={model['n_experts']} K={model.get('top_k', '?')}")
    terms = cfg.get("balance", {}).get("terms", [])
    if terms:
        parts.append("balance " + ", ".join(
            f"{t.get('type', '?')}({t.get('scope', '')}, {t.get('coef', '')})" for t in terms))
    lf = cfg.get("loss_free", {})
    if lf.get("update", "off") not in ("off", None):
        parts.append(f"loss-free {lf['update']}")
    if router.get("capacity_factor"):
        parts.append(f"capacity {router['capacity_factor']}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# Helpers


def fname(s):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)


def mean(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return sum(xs) / len(xs) if xs else None


def fmt(x, spec=".3f"):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return format(x, spec)


def moe_layer_ids(run):
    """MoE layer indices (model layer numbers) as in the train records."""
    return [l.get("layer", i) for i, l in enumerate(run.train[-1].get("layers", []))]


def arm_styles(runs):
    """{id(run): (colour, label or None)}: one colour per arm, the label on the arm's first run
    (an experiment's seeds are drawn as lines of one colour)."""
    arms = list(dict.fromkeys(r.arm for r in runs))
    cmap = plt.get_cmap("tab10" if len(arms) <= 10 else "tab20")
    counts = {a: sum(1 for r in runs if r.arm == a) for a in arms}
    out, seen = {}, set()
    for r in runs:
        label = None
        if r.arm not in seen:
            seen.add(r.arm)
            label = r.arm if counts[r.arm] == 1 else f"{r.arm} ({counts[r.arm]} seeds)"
        out[id(r)] = (cmap(arms.index(r.arm) % cmap.N), label)
    return out


def save(fig, out, name, figures):
    for ax in fig.axes:
        if ax.get_xlabel() == "optimizer step":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    path = os.path.join(out, name)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    figures.append(name)
    return name


# ---------------------------------------------------------------------------------------------
# Plots. Each returns the file name written (or None) and adds notes for what it skipped.


def plot_train_loss(runs, out, figures):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    style = arm_styles(runs)
    for r in runs:
        color, label = style[id(r)]
        steps = [t["step"] for t in r.train]
        ax.plot(steps, [t["loss"] for t in r.train], label=label and f"{label} loss", lw=1.3,
                color=color)
        if any("ce" in t for t in r.train):
            ax.plot([t["step"] for t in r.train if "ce" in t], [t["ce"] for t in r.train if "ce" in t],
                    ls=":", lw=1.0, color=color, label=label and f"{label} CE only")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title("Training loss (solid: CE + auxiliary losses; dotted: cross-entropy)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out, "train_loss.png", figures)


def plot_eval_loss(runs, out, figures, notes):
    with_eval = [r for r in runs if r.evals]
    for r in runs:
        if not r.evals:
            notes.append(f"{r.name}: no evaluation records, no validation curve.")
    if not with_eval:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    causal = False
    style = arm_styles(with_eval)
    for r in with_eval:
        color, label = style[id(r)]
        steps = [e["step"] for e in r.evals]
        ax.plot(steps, [e["loss"] for e in r.evals], marker="o", ms=3, label=label, color=color)
        ce = [(e["step"], e["loss_causal"]) for e in r.evals if isinstance(e.get("loss_causal"), (int, float))]
        if ce:
            causal = True
            ax.plot([s for s, _ in ce], [v for _, v in ce], marker="x", ms=4, ls="--",
                    color=color, label=label and f"{label} (causal routing)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title("Validation loss, all domains" + (" (dashed: Expert Choice, causal routing)" if causal else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out, "eval_loss.png", figures)


def domain_names(run):
    names = []
    for e in run.evals:
        for d in (e.get("domains") or {}):
            if d not in names:
                names.append(d)
    return names


def plot_eval_domains(run, out, figures, notes):
    doms = domain_names(run)
    if not run.evals:
        return None
    if not doms:
        notes.append(f"{run.name}: evaluation records carry no per-domain results: "
                     "no per-domain validation curves or expert × domain heatmaps.")
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    cmap = plt.get_cmap("tab10" if len(doms) <= 10 else "tab20")
    for i, d in enumerate(doms):
        pts = [(e["step"], e["domains"][d]["loss"]) for e in run.evals
               if isinstance((e.get("domains") or {}).get(d, {}).get("loss"), (int, float))]
        if pts:
            ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o", ms=3, color=cmap(i % cmap.N), label=d)
    ax.plot([e["step"] for e in run.evals], [e["loss"] for e in run.evals], color="black", ls="--",
            lw=1.2, label="all domains")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(f"{run.name}: validation loss per domain")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return save(fig, out, f"eval_domains_{fname(run.name)}.png", figures)


def plot_maxvio_layers(run, out, figures, notes):
    ids = moe_layer_ids(run)
    if not ids:
        notes.append(f"{run.name}: train records have no MoE layers: no MaxVio plot.")
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for j, lid in enumerate(ids):
        pts = [(t["step"], t["layers"][j]["maxvio"]) for t in run.train
               if len(t.get("layers", [])) > j and isinstance(t["layers"][j].get("maxvio"), (int, float))]
        ax.plot([s for s, _ in pts], [v for _, v in pts], lw=1.0, label=f"layer {lid}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("MaxVio (max load / mean load − 1)")
    ax.set_title(f"{run.name}: MaxVio per MoE layer (loads summed over the step)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2 if len(ids) > 6 else 1)
    return save(fig, out, f"maxvio_layers_{fname(run.name)}.png", figures)


def plot_avg_maxvio(runs, out, figures):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    style = arm_styles(runs)
    for r in runs:
        color, label = style[id(r)]
        pts = [(t["step"], t["avg_maxvio"]) for t in r.train if isinstance(t.get("avg_maxvio"), (int, float))]
        if pts:
            ax.plot([s for s, _ in pts], [v for _, v in pts], lw=1.2, label=label, color=color)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("AvgMaxVio (mean over MoE layers)")
    ax.set_title("AvgMaxVio per step, all runs")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out, "avg_maxvio.png", figures)


STATE_FIELDS = {"bias": "loss-free bias b", "bip_prices": "BIP dual price q"}


def plot_balancer_state(run, field, out, figures):
    """Per MoE layer, each expert's balancer state (`field` of the train records' layers: the
    loss-free bias or BIP's prices) over steps. None when the run's records do not carry it."""
    ids = moe_layer_ids(run)
    series = []  # per layer: (steps, [[value per expert] per step])
    for j in range(len(ids)):
        steps, vals = [], []
        for t in run.train:
            layers = t.get("layers", [])
            v = layers[j].get(field) if len(layers) > j else None
            if isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v):
                steps.append(t["step"])
                vals.append(v)
        series.append((steps, vals))
    if not any(steps for steps, _ in series):
        return None
    cols = min(2, len(ids))
    rows = (len(ids) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.4 * rows), squeeze=False)
    for j, lid in enumerate(ids):
        ax = axes[j // cols][j % cols]
        steps, vals = series[j]
        E = max((len(v) for v in vals), default=0)
        cmap = plt.get_cmap("tab20")
        for i in range(E):
            ax.plot(steps, [v[i] if i < len(v) else float("nan") for v in vals], lw=0.9,
                    color=cmap(i % cmap.N), label=f"expert {i}" if j == 0 and E <= 20 else None)
        ax.set_title(f"layer {lid}", fontsize=9)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    for j in range(len(ids), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(f"{run.name}: {STATE_FIELDS[field]} per expert, after each step")
    if axes[0][0].get_legend_handles_labels()[0]:
        fig.legend(fontsize=7, loc="center right", bbox_to_anchor=(1.08, 0.5))
    fig.tight_layout()
    return save(fig, out, f"{field}_{fname(run.name)}.png", figures)


def plot_oracle(runs, out, figures):
    """Objective gap (and, for BIP, the dual gap) against the exact optimum, mean over MoE layers,
    from the records with `layers[].oracle` (router.oracle_every). None when no run has them."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    drawn = False
    for r in runs:
        gap, dual = [], []
        for t in r.train:
            os_ = [l["oracle"] for l in t.get("layers", []) if isinstance(l.get("oracle"), dict)]
            g = [o["objective_gap"] for o in os_ if isinstance(o.get("objective_gap"), (int, float))]
            d = [o["dual_gap"] for o in os_ if isinstance(o.get("dual_gap"), (int, float))]
            if g:
                gap.append((t["step"], mean(g)))
            if d:
                dual.append((t["step"], mean(d)))
        if gap:
            line, = ax.plot([s for s, _ in gap], [v for _, v in gap], marker="o", ms=3, lw=1.2,
                            label=f"{r.name} objective gap")
            drawn = True
            if dual:
                ax.plot([s for s, _ in dual], [v for _, v in dual], marker="x", ms=4, ls="--",
                        color=line.get_color(), label=f"{r.name} dual gap (BIP)")
    if not drawn:
        plt.close(fig)
        return None
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("gap vs the exact optimum (mean over MoE layers)")
    ax.set_title("Oracle: 1 − objective/optimum (< 0: above capacity); BIP: D(q)/optimum − 1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, out, "oracle_gap.png", figures)


def plot_ep_wait(runs, out, figures):
    """Expert parallelism's measured straggler cost: per step, the slowest rank's wait summed over
    MoE layers (layers[].ep.wait_ms) against the step's MaxVio and the simulated ep_imbalance for
    the run's group size (mean over layers). None when no run was expert parallel."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    drawn = False
    for r in runs:
        pts = []
        for t in r.train:
            ls = [l for l in t.get("layers", []) if isinstance(l.get("ep"), dict)]
            if not ls:
                continue
            R = str(len(ls[0]["ep"]["wait_ms"]))
            sim = [l["ep_imbalance"].get(R) for l in ls if isinstance(l.get("ep_imbalance"), dict)]
            sim = [x for x in sim if isinstance(x, (int, float))]
            pts.append((mean([l["maxvio"] for l in ls]), mean(sim) if sim else None,
                        sum(max(l["ep"]["wait_ms"]) for l in ls)))
        if not pts:
            continue
        drawn = True
        a1.scatter([p[0] for p in pts], [p[2] for p in pts], s=10, alpha=0.6, label=r.name)
        a2.scatter([p[1] for p in pts if p[1] is not None], [p[2] for p in pts if p[1] is not None],
                   s=10, alpha=0.6, label=r.name)
    if not drawn:
        plt.close(fig)
        return None
    a1.set_xlabel("step MaxVio (mean over MoE layers)")
    a2.set_xlabel("simulated ep_imbalance: max rank load / mean (mean over layers)")
    a1.set_ylabel("measured wait for the slowest rank, ms per step")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    a1.legend(fontsize=8)
    fig.suptitle("Expert parallelism: what imbalance costs in time (layers[].ep.wait_ms)")
    return save(fig, out, "ep_wait.png", figures)


def plot_heatmaps(run, out, figures, notes):
    """Expert × domain heatmap per MoE layer, from the last eval record with per-domain F."""
    last = None
    for e in run.evals:
        if any(isinstance(v, dict) and v.get("F") for v in (e.get("domains") or {}).values()):
            last = e
    if last is None:
        if domain_names(run):
            notes.append(f"{run.name}: per-domain results have no expert frequencies F: no heatmaps.")
        return None
    doms = [d for d, v in last["domains"].items() if isinstance(v, dict) and v.get("F")]
    n_layers = min(len(last["domains"][d]["F"]) for d in doms)
    ids = moe_layer_ids(run)
    if len(ids) != n_layers:
        ids = list(range(n_layers))
    cfg_model = run.config.get("model", {})
    E = len(last["domains"][doms[0]]["F"][0])
    K = cfg_model.get("top_k")
    uniform = K / E if K else None
    names = []
    for j in range(n_layers):
        rows = []
        for d in doms:
            row = last["domains"][d]["F"][j]
            rows.append(list(row) + [float("nan")] * (E - len(row)))
        spec = []
        for d in doms:
            s = last["domains"][d].get("specialisation")
            spec.append(s[j] if isinstance(s, list) and len(s) > j else None)
        top10 = []
        for d in doms:
            s = last["domains"][d].get("top10_share")
            top10.append(s[j] if isinstance(s, list) and len(s) > j else None)
        w = max(5.0, min(16.0, 2.5 + 0.32 * E))
        h = max(2.8, 1.2 + 0.42 * len(doms))
        fig, ax = plt.subplots(figsize=(w, h))
        im = ax.imshow(rows, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_xlabel("expert")
        ax.set_ylabel("domain (specialisation, nats)")
        ax.set_xticks(range(E))
        ax.set_xticklabels([str(i) for i in range(E)], fontsize=7 if E > 16 else 8)
        ax.set_yticks(range(len(doms)))
        ax.set_yticklabels([f"{d} ({fmt(s)})" for d, s in zip(doms, spec)], fontsize=8)
        if E <= 16 and len(doms) <= 12:
            for yi, row in enumerate(rows):
                for xi, v in enumerate(row):
                    if isinstance(v, (int, float)) and math.isfinite(v):
                        ax.text(xi, yi, f"{v:.2f}", ha="center", va="center", fontsize=6,
                                color="white" if v < (im.norm.vmin + im.norm.vmax) / 2 else "black")
        cb = fig.colorbar(im, ax=ax)
        cb.set_label("share of the domain's tokens" + (f"\n(uniform = K/E = {uniform:.3f})" if uniform else ""),
                      fontsize=8)
        sp = [s for s in spec if isinstance(s, (int, float))]
        t10 = [s for s in top10 if isinstance(s, (int, float))]
        title = f"{run.name}, layer {ids[j]}, eval step {last['step']}: expert × domain routing F"
        if sp:
            title += f"\nspecialisation (KL from uniform): mean {mean(sp):.3f}, max {max(sp):.3f} nats"
            best = doms[spec.index(max(sp))]
            title += f" ({best})"
        if t10:
            title += f"; top-10% expert share mean {mean(t10):.3f}"
        ax.set_title(title, fontsize=9)
        names.append(save(fig, out, f"heatmap_{fname(run.name)}_layer{ids[j]}.png", figures))
    return names


def plot_experts_per_token(run, out, figures, notes):
    last = run.train[-1]
    layers = [l for l in last.get("layers", []) if isinstance(l.get("experts_per_token"), list)]
    if not layers:
        notes.append(f"{run.name}: the last train record has no experts_per_token: no histogram.")
        return None
    nb = max(len(l["experts_per_token"]) for l in layers)
    labels = (EPT_LABELS + [str(i) for i in range(len(EPT_LABELS), nb)])[:nb]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / len(layers)
    for j, l in enumerate(layers):
        counts = list(l["experts_per_token"]) + [0] * (nb - len(l["experts_per_token"]))
        total = sum(counts) or 1
        xs = [i - 0.4 + width * (j + 0.5) for i in range(nb)]
        ax.bar(xs, [c / total for c in counts], width=width, label=f"layer {l.get('layer', j)}")
    ax.set_xticks(range(nb))
    ax.set_xticklabels(labels)
    ax.set_xlabel("experts processing the token")
    ax.set_ylabel("share of the step's tokens")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{run.name}: experts per token at step {last['step']}")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, ncol=2 if len(layers) > 6 else 1)
    return save(fig, out, f"experts_per_token_{fname(run.name)}.png", figures)


# ---------------------------------------------------------------------------------------------
# Table and page


def table_row(run):
    t = run.train
    last = t[-1]
    steady = t[WARMUP_STEPS:] if len(t) > WARMUP_STEPS else t
    ev = run.evals[-1] if run.evals else None
    avg = [x["avg_maxvio"] for x in t if isinstance(x.get("avg_maxvio"), (int, float))]
    sup = [x["sup_maxvio"] for x in t if isinstance(x.get("sup_maxvio"), (int, float))]
    dead = [l.get("dead_experts") for l in last.get("layers", [])]
    dead = [d for d in dead if isinstance(d, int)]
    mfu = mean([x.get("mfu") for x in steady])
    # Expert specialisation by domain (KL of F from uniform, nats): mean over the last
    # evaluation's domains and MoE layers.
    spec = None
    ev_dom = next((e for e in reversed(run.evals) if isinstance(e.get("domains"), dict) and e["domains"]),
                  None)
    if ev_dom:
        vals = [v for d in ev_dom["domains"].values() if isinstance(d, dict)
                for v in (d.get("specialisation") or []) if isinstance(v, (int, float))]
        spec = mean(vals) if vals else None
    stalls = [c["stall_s"] for c in run.checkpoints if isinstance(c.get("stall_s"), (int, float))]
    causal = None
    if ev and isinstance(ev.get("loss_causal"), (int, float)):
        causal = f"{ev['loss_causal']:.3f} / {fmt(ev.get('perplexity_causal'), '.2f')}"
    return {
        "run": run.name,
        "config": config_summary(run.config),
        "steps": str(last["step"]),
        "ranks": str(last.get("ranks", 1)),
        "train loss": fmt(last["loss"]),
        "eval loss / ppl": f"{ev['loss']:.3f} / {fmt(ev.get('perplexity'), '.2f')} (step {ev['step']})" if ev else "—",
        "causal eval loss / ppl": causal or "—",
        "tokens/s (mean)": fmt(mean([x.get("tokens_per_s") for x in steady]), ",.0f"),
        "MFU": f"{100 * mfu:.1f}%" if mfu is not None else "—",
        "checkpoints (training paused)": f"{len(stalls)} ({sum(stalls):.1f} s)" if stalls else "—",
        "AvgMaxVio mean / max": f"{fmt(mean(avg))} / {fmt(max(avg) if avg else None)}",
        "SupMaxVio mean / max": f"{fmt(mean(sup))} / {fmt(max(sup) if sup else None)}",
        "dead experts (per layer)": (f"{sum(dead)} ({' + '.join(map(str, dead))})" if dead else "—"),
        "specialisation (mean, nats)": fmt(spec) if spec is not None else "—",
    }


CSS = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.0em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: right; }
th { background: #eee; } td:first-child, td:nth-child(2) { text-align: left; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.4em 0; }
.note { color: #8a5a00; } .small { font-size: 0.85em; color: #555; }
td.supported { background: #d9f2d9; } td.contradicted { background: #f7d4d4; }
td.unresolved { background: #f2f2f2; }
#claims td { text-align: left; }
"""


def img(name, alt):
    return f'<img src="{html.escape(name)}" alt="{html.escape(alt)}">'


def experiment_html(summary):
    """The experiment's header, claims, statistics over seeds and paired differences (the tables
    of summary.md, from scripts/stats.py)."""
    e = html.escape
    t = summary["target"]
    parts = [f"<p>{e(summary.get('claim') or '')}</p>",
             f'<p class="small">Experiment file <code>{e(str(summary.get("experiment")))}</code>; command '
             f'<code>{e(str(summary.get("command")))}</code>; <b>{summary["seeds"]} seed(s)</b> per arm'
             + (" (<b>--quick</b>: a smoke run, not a result)" if summary["quick"] else "")
             + f"; reference arm <b>{e(summary.get('reference') or 'none')}</b>; target validation loss "
             f"{e(stats.fnum(t['loss']) if t['loss'] is not None else 'none')} ({e(t['source'])}). "
             "Also in summary.json and summary.md.</p>"]
    for tid, title, header, rows, note in stats.tables(summary):
        parts.append(f"<h2>{e(title)}</h2>")
        parts.append(f'<table id="{tid}"><tr>' + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            cells = []
            for c in row:
                cls = {stats.SUPPORTED: "supported", stats.CONTRADICTED: "contradicted",
                       stats.NOT_RESOLVED: "unresolved"}.get(c) if tid == "claims" else None
                cells.append(f'<td class="{cls}">{e(c)}</td>' if cls else f"<td>{e(c)}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append(f'</table><p class="small">{e(note)}</p>')
    if summary["notes"]:
        parts.append("<h3>Experiment notes</h3><ul>"
                     + "".join(f'<li class="note">{e(n)}</li>' for n in summary["notes"]) + "</ul>")
    return parts


def write_html(out, runs, sections, notes, summary=None):
    e = html.escape
    rows = [table_row(r) for r in runs]
    cols = list(rows[0].keys())
    if all(r["causal eval loss / ppl"] == "—" for r in rows):
        cols.remove("causal eval loss / ppl")
    title = (f"switchyard experiment: {summary.get('description') or summary.get('experiment')}" if summary
             else f"switchyard report: {', '.join(r.name for r in runs)}")
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{e(title)}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>{e(title)}</h1>"]
    if summary:
        parts += experiment_html(summary)
    parts += ['<p class="small">Runs: ' + "; ".join(f"<b>{e(r.name)}</b> = {e(os.path.abspath(r.path))}"
                                                    for r in runs) + "</p>",
              "<h2>Summary" + (" per run" if summary else "") + "</h2>",
              '<table id="summary"><tr>' + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>"]
    for row in rows:
        parts.append("<tr>" + "".join(f"<td>{e(row[c])}</td>" for c in cols) + "</tr>")
    parts.append("</table>")
    parts.append(f'<p class="small">Train loss: last step. Eval: last evaluation record. tokens/s and MFU: '
                 f"mean over steps after the first {WARMUP_STEPS}. AvgMaxVio / SupMaxVio: mean and max over all "
                 "steps of the per-step values (mean / max over MoE layers of the layer MaxVio). Dead experts: "
                 "last step, load below 10% of the mean. Specialisation: KL(F̂ ‖ uniform) of each domain's "
                 "expert shares, mean over domains and MoE layers of the last evaluation with domains "
                 "(0 = no specialisation).</p>")
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f'<li class="note">{e(n)}</li>' for n in notes) + "</ul>")
    for title, items in sections:
        if not items:
            continue
        parts.append(f"<h2>{e(title)}</h2>")
        for sub, names in items:
            if sub:
                parts.append(f"<h3>{e(sub)}</h3>")
            for n in names:
                parts.append(img(n, f"{title} {sub or ''}".strip()))
    parts.append("</body></html>")
    path = os.path.join(out, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")
    return path


def load_experiment_runs(manifest_path):
    """The runs of an experiment manifest (scripts/stats.py), named <arm> or <arm>/seed-<k>;
    runs not trained yet are left out (stats.summarise notes them)."""
    man = stats.load_manifest(manifest_path)
    root = os.path.dirname(os.path.abspath(manifest_path))
    runs = []
    for arm in man["arms"]:
        for run in arm.get("runs", []):
            path = os.path.join(root, run["dir"])
            if not os.path.isfile(os.path.join(path, "metrics.jsonl")):
                continue
            name = arm["name"] if man["seeds"] == 1 else f"{arm['name']}/seed-{run['seed']}"
            r = load_run(path, name)
            r.arm, r.seed = arm["name"], run["seed"]
            runs.append(r)
    return runs


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write PNG plots and index.html for switchyard runs.")
    ap.add_argument("runs", nargs="*", metavar="RUN_DIR", help="run directories (with metrics.jsonl)")
    ap.add_argument("--experiment", metavar="MANIFEST",
                    help="OUT_DIR/experiment.json of `switchyard experiment`: its runs, statistics over "
                         "seeds and claims (then no RUN_DIR)")
    ap.add_argument("--out", required=True, metavar="REPORT_DIR", help="directory to write the report to")
    args = ap.parse_args(argv)
    if bool(args.runs) == bool(args.experiment):
        ap.error("give run directories or --experiment MANIFEST (one of them)")

    runs, seen, summary = [], {}, None
    try:
        if args.experiment:
            summary = stats.summarise(args.experiment)
            runs = load_experiment_runs(args.experiment)
            if not runs:
                raise ReportError(f"{args.experiment}: no run of the experiment has trained yet")
        for p in args.runs:
            name = os.path.basename(os.path.normpath(os.path.abspath(p))) or p
            if name in seen:  # two runs with the same directory name: keep both, distinguishable
                seen[name] += 1
                name = f"{name}#{seen[name]}"
            else:
                seen[name] = 1
            runs.append(load_run(p, name))
    except (ReportError, stats.StatsError) as err:
        print(f"report: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"report: {err.filename}: {err.strerror}", file=sys.stderr)
        return 1

    os.makedirs(args.out, exist_ok=True)
    figures, notes = [], []
    if summary:
        stats.write_summary(summary, args.out)
    for r in runs:
        if r.config_note:
            notes.append(f"{r.name}: {r.config_note}")
        for kind, n in r.skipped.items():
            notes.append(f"{r.name}: {n} record(s) of type {kind!r} in metrics.jsonl not shown.")
    # One run per arm for the per-run plots: with several seeds, each arm's lowest seed (the
    # statistics and the all-run plots cover every seed).
    if any(r.seed is not None and r.seed > 1 for r in runs):
        first = {}
        for r in runs:
            if r.arm not in first or r.seed < first[r.arm].seed:
                first[r.arm] = r
        per_run = [r for r in runs if first[r.arm] is r]
        notes.append("Per-run plots (per-domain loss, MaxVio per layer, balancer state, heatmaps, experts per "
                     "token) show each arm's lowest seed: " + ", ".join(r.name for r in per_run) + ".")
    else:
        per_run = runs

    sections = []
    sections.append(("Loss", [(None, [plot_train_loss(runs, args.out, figures)])]))
    ev = plot_eval_loss(runs, args.out, figures, notes)
    dom_items = []
    for r in per_run:
        n = plot_eval_domains(r, args.out, figures, notes)
        if n:
            dom_items.append((r.name, [n]))
    sections.append(("Validation loss", ([(None, [ev])] if ev else []) + dom_items))
    mv = [(None, [plot_avg_maxvio(runs, args.out, figures)])]
    for r in per_run:
        n = plot_maxvio_layers(r, args.out, figures, notes)
        if n:
            mv.append((r.name, [n]))
    sections.append(("Balance: MaxVio", mv))
    st = []
    for r in per_run:
        names = [n for n in (plot_balancer_state(r, f, args.out, figures) for f in STATE_FIELDS) if n]
        if names:
            st.append((r.name, names))
    if st:
        sections.append(("Balancer state: loss-free bias, BIP prices", st))
    og = plot_oracle(per_run, args.out, figures)
    if og:
        sections.append(("Against the exact optimum (router.oracle_every)", [(None, [og])]))
    ew = plot_ep_wait(per_run, args.out, figures)
    if ew:
        sections.append(("Expert parallelism: measured wait (parallel.ep)", [(None, [ew])]))
    hm = []
    for r in per_run:
        names = plot_heatmaps(r, args.out, figures, notes)
        if names:
            hm.append((r.name, names))
    sections.append(("Expert × domain routing (last evaluation)", hm))
    ept = []
    for r in per_run:
        n = plot_experts_per_token(r, args.out, figures, notes)
        if n:
            ept.append((r.name, [n]))
    sections.append(("Experts per token (last step)", ept))

    path = write_html(args.out, runs, sections, notes, summary)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
