#!/usr/bin/python3
"""Summarises a switchyard run directory: loss, evaluation, speed and balance, from metrics.jsonl.

    scripts/summarize.py RUN_DIR
    scripts/summarize.py EXPERIMENT_DIR    (with experiment.json: statistics over seeds and the
                                            claims' verdicts, as summary.md; scripts/stats.py)
"""
import os
import sys

import metrics_jsonl  # scripts/metrics_jsonl.py


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    run = sys.argv[1]
    manifest = os.path.join(run, "experiment.json")
    if os.path.isfile(manifest) and not os.path.exists(os.path.join(run, "metrics.jsonl")):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import stats  # scripts/stats.py (SciPy)
        try:
            print(stats.markdown(stats.summarise(manifest)))
        except (stats.StatsError, OSError) as e:
            print(f"summarize: {e}", file=sys.stderr)
            return 1
        return 0
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.exists(path):
        print(f"summarize: {path} not found: is {run} a switchyard run directory?", file=sys.stderr)
        return 1
    train, evals = [], []
    try:
        recs = list(metrics_jsonl.records(path))
    except metrics_jsonl.MetricsError as e:
        print(f"summarize: {e}", file=sys.stderr)
        return 1
    for _, r in recs:
        if r.get("type") == "train":
            train.append(r)
        elif r.get("type") == "eval":
            evals.append(r)
    if not train:
        print(f"summarize: {path} has no training steps yet", file=sys.stderr)
        return 1
    last = train[-1]
    steady = train[min(3, len(train) - 1):]  # skip warm-up steps for speed
    tps = sorted(r["tokens_per_s"] for r in steady)[len(steady) // 2]
    mfu = sorted(r["mfu"] for r in steady)[len(steady) // 2]
    avg_mv = sum(r["avg_maxvio"] for r in train) / len(train)
    sup_mv = max(r["sup_maxvio"] for r in train)
    print(f"run {run}: {last['step']} steps, {last['tokens']:,} tokens")
    print(f"  training loss  {train[0]['loss']:.3f} (step 1) -> {last['loss']:.3f} (step {last['step']})")
    for e in evals:
        print(f"  eval step {e['step']:>5}: loss {e['loss']:.3f}, perplexity {e['perplexity']:.2f}, "
              f"MaxVio_global per layer {', '.join(f'{v:.2f}' for v in e['maxvio_global'])}")
        if "loss_causal" in e:  # Expert Choice, Sinkhorn: the causal routing's evaluation
            print(f"  {'':>16}  causal routing: loss {e['loss_causal']:.3f}, perplexity "
                  f"{e['perplexity_causal']:.2f}, MaxVio_global per layer "
                  f"{', '.join(f'{v:.2f}' for v in e['maxvio_global_causal'])}")
    # MFU's denominator: the GEMM peak of the run's precision (gemm_peak_gflops in newer records)
    peak_name = "bf16 GEMM" if last.get("precision") == "bf16" else "sgemm"
    peak = last.get("gemm_peak_gflops")
    peak_text = f" ({peak:,.0f} GFLOP/s)" if isinstance(peak, (int, float)) else ""
    print(f"  speed          {tps:,.0f} tokens/s (median), MFU {100 * mfu:.0f}% of the measured "
          f"{peak_name} peak{peak_text}")
    print(f"  balance        AvgMaxVio {avg_mv:.3f} over the run, SupMaxVio {sup_mv:.3f} (max over steps)")
    print("  last step per layer: load (token-slots per expert), MaxVio")
    for l in last["layers"]:
        print(f"    layer {l['layer']}: maxvio {l['maxvio']:.2f}, dead {l['dead_experts']}, "
              f"entropy {l['router_entropy']:.2f}, load {l['load']}")
    print(f"  metrics: {path}; checkpoints: {os.path.join(run, 'checkpoints')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
