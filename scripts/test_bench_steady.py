#!/usr/bin/python3
"""Tests scripts/bench_steady.py (make bench's check that the machine held still) on fabricated
bench-results.json files with known answers.

    scripts/test_bench_steady.py        (unittest; exit status 0 when all pass)
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_steady  # noqa: E402


def run(sgemm, bf16=0.0, median=100.0, fastest=100.0):
    """One train_step_bench result as bench.sh keeps it."""
    return {"sgemm_peak_gflops": {"onednn": sgemm, "openblas": sgemm / 2},
            "bf16_peak_gflops": bf16, "step_ms_median": median, "step_ms_min": fastest}


def results(small, small16=(), medium=None):
    res = {"switchyard": list(small), "pytorch": [{"tokens_per_s": 1.0}]}
    if small16:
        res["switchyard_bf16"] = list(small16)
    res["medium"] = medium if medium is not None else {"switchyard": run(400), "pytorch": {}}
    return res


class CheckTest(unittest.TestCase):
    def test_a_steady_machine_gets_no_warning(self):
        lines, peaks, steps = bench_steady.check(
            results([run(400), run(410, median=110)], [run(405, 800), run(395, 810)],
                    {"switchyard": run(402), "switchyard_bf16": run(398, 790),
                     "pytorch": {"sgemm_peak_gflops": {"onednn": 1.0}}}))
        self.assertEqual(len(lines), 1)
        self.assertIn("sgemm 400, 410, 405, 395, 402, 398 GFLOP/s; bf16 800, 810, 790", lines[0])
        self.assertAlmostEqual(peaks, 410 / 395)
        self.assertAlmostEqual(steps, 1.1)

    def test_a_peak_measured_slow_once_warns(self):
        lines, peaks, _ = bench_steady.check(results([run(400), run(250)]))
        self.assertAlmostEqual(peaks, 1.6)
        self.assertIn("WARNING", lines[-1])
        self.assertIn("differ by 60%", lines[-1])

    def test_the_bf16_peaks_count_apart_from_sgemm(self):
        # each kind steady on its own: no warning although bf16 is twice sgemm
        lines, _, _ = bench_steady.check(results([run(400)], [run(400, 800), run(400, 820)]))
        self.assertEqual(len(lines), 1)
        lines, peaks, _ = bench_steady.check(results([run(400)], [run(400, 800), run(400, 500)]))
        self.assertAlmostEqual(peaks, 1.6)
        self.assertIn("WARNING", lines[-1])

    def test_steps_that_spread_within_a_run_warn(self):
        lines, peaks, steps = bench_steady.check(results([run(400, median=150, fastest=100)]))
        self.assertAlmostEqual(peaks, 1.0)
        self.assertAlmostEqual(steps, 1.5)
        self.assertIn("median step is 50% above its fastest", lines[-1])


class ScriptTest(unittest.TestCase):
    def test_writes_the_spreads_into_the_results_and_exits_0(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bench-results.json")
            with open(path, "w") as f:
                json.dump(results([run(400), run(200)]), f)
            p = subprocess.run([sys.executable, os.path.join(HERE, "bench_steady.py"), path],
                               capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("WARNING", p.stdout)
            with open(path) as f:
                res = json.load(f)
            self.assertAlmostEqual(res["peak_spread"], 2.0)
            self.assertAlmostEqual(res["step_spread"], 1.0)
            self.assertIn("medium", res)  # the rest of the results kept

    def test_usage(self):
        p = subprocess.run([sys.executable, os.path.join(HERE, "bench_steady.py")],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 2)
        self.assertIn("bench_steady.py BENCH_RESULTS_JSON", p.stderr)


if __name__ == "__main__":
    unittest.main()
