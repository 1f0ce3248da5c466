#!/usr/bin/python3
"""Did the machine hold still during `make bench`? (scripts/bench.sh runs this last.)

Every train_step_bench run measures the sgemm peak at its start (and under bf16 the bf16 GEMM
peak), and times the same step several times: other load on the machine shows as a spread
between those peaks, or between a run's median and fastest step. Prints the peaks, and a warning
when they differ by more than 15% or a median step is more than 20% above its run's fastest;
adds peak_spread and step_spread to the results JSON. Exit status 0 either way (a warning, not
a failure: the figures are still written).

    scripts/bench_steady.py BENCH_RESULTS_JSON
"""
import json
import sys

MAX_PEAK_SPREAD = 1.15  # largest / smallest peak of one kind over the runs
MAX_STEP_SPREAD = 1.20  # a run's median step / its fastest


def switchyard_runs(res):
    """Every train_step_bench result in bench-results.json: SMALL's rounds, MEDIUM's runs."""
    runs = [o for key in ("switchyard", "switchyard_bf16") for o in res.get(key, [])]
    runs += [o for key, o in res.get("medium", {}).items() if key.startswith("switchyard")]
    return runs


def check(res):
    """(lines to print, peak_spread, step_spread) for a bench-results.json object."""
    runs = switchyard_runs(res)
    if not runs:
        return ["no train_step_bench runs in the results: nothing to check"], 1.0, 1.0
    sgemm = [max(o["sgemm_peak_gflops"].values()) for o in runs]
    bf16 = [o["bf16_peak_gflops"] for o in runs if o.get("bf16_peak_gflops", 0) > 0]
    peak_spread = max(max(v) / min(v) for v in (sgemm, bf16) if v)
    step_spread = max(o["step_ms_median"] / o["step_ms_min"] for o in runs)
    lines = ["GEMM peaks measured at the start of each run: sgemm %s GFLOP/s%s" %
             (", ".join("%.0f" % g for g in sgemm),
              "; bf16 " + ", ".join("%.0f" % g for g in bf16) if bf16 else "")]
    if peak_spread > MAX_PEAK_SPREAD or step_spread > MAX_STEP_SPREAD:
        lines.append(
            "WARNING: the machine's speed changed during this benchmark (other load?): the peaks "
            "differ by %.0f%% between runs, a run's median step is %.0f%% above its fastest. Its "
            "ratios and MFU figures are not reliable; run it again when nothing else runs."
            % (100 * (peak_spread - 1), 100 * (step_spread - 1)))
    return lines, peak_spread, step_spread


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        res = json.load(f)
    lines, res["peak_spread"], res["step_spread"] = check(res)
    with open(argv[1], "w") as f:
        json.dump(res, f, indent=2)
    print("\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
