#!/usr/bin/python3
"""Tests scripts/stats.py (statistics over seeds, paired differences, the verdict rule, the
per-run metrics) and report.py --experiment on fabricated runs with known answers.

    scripts/test_stats.py        (unittest; exit status 0 when all pass)
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import stats  # noqa: E402

PY = "/usr/bin/python3"
T_975_2 = 4.302652729911275  # Student t, 97.5% quantile, 2 degrees of freedom (tables)
T_975_1 = 12.706204736174705  # 1 degree of freedom


def train_record(step, loss=5.0, avg=0.5, sup=0.8, step_ms=100.0, tps=1000.0, dead=(0, 1), oracle=None):
    layers = []
    for j, d in enumerate(dead):
        layer = {"layer": j + 1, "maxvio": avg, "dead_experts": d}
        if oracle is not None:
            layer["oracle"] = {"objective_gap": oracle[0], "dual_gap": oracle[1]}
        layers.append(layer)
    return {"type": "train", "step": step, "loss": loss, "avg_maxvio": avg, "sup_maxvio": sup,
            "step_ms": step_ms, "tokens_per_s": tps, "layers": layers}


def eval_record(step, loss, causal=None, domains=None, maxvio_global=(0.2, 0.4)):
    r = {"type": "eval", "step": step, "loss": loss, "perplexity": math.exp(loss),
         "maxvio_global": list(maxvio_global)}
    if causal is not None:
        r["loss_causal"] = causal
        r["perplexity_causal"] = math.exp(causal)
    if domains:
        r["domains"] = {d: {"loss": v[0], "perplexity": math.exp(v[0]), "specialisation": list(v[1])}
                        for d, v in domains.items()}
    return r


def write_run(path, records):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(path, "config.toml"), "w") as f:
        f.write('[model]\nn_experts = 4\ntop_k = 2\n[router]\ntype = "topk"\n')


def simple_run(final_loss, avg=0.5, steps=6):
    """Evaluations at steps 2, 4, 6 with losses final + 0.5, final + 0.25, final (exact in binary),
    100 ms per step."""
    recs = []
    for s in range(1, steps + 1):
        recs.append(train_record(s, avg=avg))
        if s % 2 == 0:
            recs.append(eval_record(s, final_loss + 0.125 * (steps - s)))
    return recs


class DescribeTest(unittest.TestCase):
    def test_mean_std_and_t_interval(self):
        d = stats.describe([1.0, 2.0, 3.0])
        self.assertEqual(d["n"], 3)
        self.assertAlmostEqual(d["mean"], 2.0)
        self.assertAlmostEqual(d["std"], 1.0)  # n - 1 in the denominator
        half = T_975_2 / math.sqrt(3)
        self.assertAlmostEqual(d["ci95"][0], 2.0 - half, places=9)
        self.assertAlmostEqual(d["ci95"][1], 2.0 + half, places=9)

    def test_one_value_has_no_spread(self):
        d = stats.describe([4.5])
        self.assertEqual((d["n"], d["mean"], d["std"], d["ci95"]), (1, 4.5, None, None))
        self.assertEqual(stats.describe([])["mean"], None)

    def test_equal_values_give_a_point_interval(self):
        d = stats.describe([0.25, 0.25])
        self.assertEqual(d["std"], 0.0)
        self.assertEqual(d["ci95"], [0.25, 0.25])


class VerdictTest(unittest.TestCase):
    def claim(self, arm, ref, better):
        d = stats.paired(dict(enumerate(arm, 1)), dict(enumerate(ref, 1)) if isinstance(ref, list) else ref)
        return d, stats.verdict(d, better)[0]

    def test_consistently_lower_is_supported_and_higher_contradicted(self):
        d, v = self.claim([5.0, 5.1, 4.9], [5.2, 5.3, 5.1], "lower")
        self.assertEqual(v, stats.SUPPORTED)
        self.assertAlmostEqual(d["mean"], -0.2)
        self.assertEqual(d["seeds"], [1, 2, 3])
        self.assertEqual(self.claim([5.0, 5.1, 4.9], [5.2, 5.3, 5.1], "higher")[1], stats.CONTRADICTED)

    def test_known_interval_wholly_above_zero(self):
        # differences 0.3, 0.5, 0.4: mean 0.4, std 0.1, interval 0.4 -+ t * 0.1 / sqrt(3)
        d, v = self.claim([1.3, 1.5, 1.4], [1.0, 1.0, 1.0], "lower")
        self.assertEqual(v, stats.CONTRADICTED)
        half = T_975_2 * 0.1 / math.sqrt(3)
        self.assertAlmostEqual(d["ci95"][0], 0.4 - half, places=9)
        self.assertAlmostEqual(d["ci95"][1], 0.4 + half, places=9)
        self.assertEqual(self.claim([1.3, 1.5, 1.4], [1.0, 1.0, 1.0], "higher")[1], stats.SUPPORTED)

    def test_interval_containing_zero_is_not_resolved(self):
        # differences -0.1, +0.1, -0.05: the mean is below 0 but the interval is not
        d, v = self.claim([4.9, 5.1, 4.95], [5.0, 5.0, 5.0], "lower")
        self.assertLess(d["mean"], 0)
        self.assertLess(d["ci95"][0], 0)
        self.assertGreater(d["ci95"][1], 0)
        self.assertEqual(v, stats.NOT_RESOLVED)

    def test_two_seeds_with_a_large_spread_are_not_resolved(self):
        # differences -0.3 and -0.1: mean -0.2, std 0.1414; t(1) = 12.7 makes the interval wide
        d, v = self.claim([4.7, 4.9], [5.0, 5.0], "lower")
        self.assertAlmostEqual(d["ci95"][1], -0.2 + T_975_1 * math.sqrt(0.02) / math.sqrt(2), places=9)
        self.assertEqual(v, stats.NOT_RESOLVED)

    def test_an_interval_touching_zero_is_not_resolved(self):
        self.assertEqual(self.claim([5.0, 5.0], [5.0, 5.0], "lower")[1], stats.NOT_RESOLVED)

    def test_one_seed_is_never_resolved(self):
        d, v = self.claim([1.0], [9.0], "lower")
        self.assertEqual(v, stats.NOT_RESOLVED)
        self.assertIn("at least 2", stats.verdict(d, "lower")[1])

    def test_a_missing_seed_is_not_resolved(self):
        d = stats.paired({1: 1.0, 2: 1.0, 3: None}, {1: 2.0, 2: 2.1, 3: 2.0})
        self.assertEqual(d["missing"], [3])
        self.assertEqual(d["n"], 2)
        v, why = stats.verdict(d, "lower")
        self.assertEqual(v, stats.NOT_RESOLVED)
        self.assertEqual(why, "seed(s) 3 lack a value in one or both arms")

    def test_against_a_constant(self):
        self.assertEqual(self.claim([0.2, 0.3, 0.25], 0.0, "higher")[1], stats.SUPPORTED)
        self.assertEqual(self.claim([0.2, 0.3, 0.25], 0.0, "lower")[1], stats.CONTRADICTED)

    def test_better_must_be_a_side(self):
        with self.assertRaises(stats.StatsError):
            stats.verdict(stats.paired({1: 1.0, 2: 2.0}, 0.0), "smaller")


class RunMetricsTest(unittest.TestCase):
    def test_headline_metrics_of_a_fabricated_run(self):
        train = [train_record(s, avg=0.1 * s, sup=0.2 * s, step_ms=100.0 * s, tps=1000.0 * s,
                              dead=(s % 2, 1)) for s in range(1, 7)]
        train[3] = train_record(4, avg=0.4, sup=0.8, step_ms=5000.0, tps=4000.0, dead=(0, 1),
                                oracle=(0.02, 0.001))  # the oracle's step: timed at the median
        doms = {"news": (4.8, [0.2, 0.4]), "code": (4.6, [0.1, 0.3])}
        evals = [eval_record(2, 5.5, causal=5.7), eval_record(4, 5.0, causal=5.3, domains=doms),
                 eval_record(6, 5.1, causal=5.2, maxvio_global=(0.1, 0.3))]
        m = stats.run_metrics(train, evals, target=5.25)
        self.assertEqual(m["final_loss"], 5.1)
        self.assertAlmostEqual(m["final_perplexity"], math.exp(5.1))
        self.assertEqual(m["best_loss"], 5.0)
        self.assertAlmostEqual(m["best_perplexity"], math.exp(5.0))
        self.assertEqual(m["final_loss_causal"], 5.2)
        self.assertAlmostEqual(m["causal_gap"], 0.1)
        self.assertAlmostEqual(m["avg_maxvio"], 0.35)  # mean of 0.1 .. 0.6
        self.assertAlmostEqual(m["sup_maxvio"], 0.7)
        self.assertAlmostEqual(m["avg_maxvio_first100"], 0.35)
        # the last third of 6 steps: steps 5 and 6 (> 4)
        self.assertAlmostEqual(m["avg_maxvio_last_third"], 0.55)
        self.assertAlmostEqual(m["sup_maxvio_last_third"], 1.1)
        self.assertAlmostEqual(m["maxvio_global"], 0.2)
        self.assertEqual(m["dead_experts"], 1.0)  # last step: 0 + 1
        self.assertAlmostEqual(m["tokens_per_s"], 5000.0)  # steps 4..6: 4000, 5000, 6000
        self.assertAlmostEqual(m["wall_seconds"], (100 + 200 + 300 + 5000 + 500 + 600) / 1000)
        # specialisation: the last eval with domains (step 4), per MoE layer (ids 1, 2)
        self.assertAlmostEqual(m["specialisation.layer1"], 0.15)
        self.assertAlmostEqual(m["specialisation.layer2"], 0.35)
        self.assertAlmostEqual(m["specialisation"], 0.25)
        self.assertEqual(m["domain.news.final_loss"], 4.8)
        self.assertEqual(m["domain.code.best_loss"], 4.6)
        self.assertAlmostEqual(m["domain.code.final_perplexity"], math.exp(4.6))
        # target 5.25: first reached at the step-4 evaluation; steps 1-3 take 0.6 s and the
        # oracle step counts at the median of the other steps (100, 200, 300, 500, 600 -> 300 ms)
        self.assertEqual(m["steps_to_target"], 4.0)
        self.assertAlmostEqual(m["seconds_to_target"], 0.9)
        # causal losses 5.7, 5.3, 5.2: first <= 5.25 at step 6
        self.assertEqual(m["steps_to_target_causal"], 6.0)
        self.assertAlmostEqual(m["seconds_to_target_causal"], 0.9 + 0.5 + 0.6)
        self.assertAlmostEqual(m["oracle_objective_gap"], 0.02)
        self.assertAlmostEqual(m["oracle_dual_gap"], 0.001)

    def test_a_causal_router_uses_its_loss_and_an_unreached_target_is_none(self):
        m = stats.run_metrics(simple_run(5.0), [], target=1.0)
        self.assertIsNone(m["final_loss"])
        train = [r for r in simple_run(5.0) if r["type"] == "train"]
        evals = [r for r in simple_run(5.0) if r["type"] == "eval"]
        m = stats.run_metrics(train, evals, target=4.0)
        self.assertEqual(m["final_loss_causal"], m["final_loss"])
        self.assertIsNone(m["causal_gap"])
        self.assertIsNone(m["steps_to_target"])
        self.assertIsNone(m["seconds_to_target"])
        self.assertIsNone(m["oracle_objective_gap"])

    def test_metric_order_does_not_depend_on_the_order_names_come_in(self):
        names = ["domain.web.final_loss", "specialisation.layer3", "final_loss", "domain.code.best_loss",
                 "domain.code.final_loss", "specialisation.layer1", "domain.web.best_loss"]
        want = ["final_loss", "specialisation.layer1", "specialisation.layer3", "domain.code.final_loss",
                "domain.code.best_loss", "domain.web.final_loss", "domain.web.best_loss"]
        self.assertEqual(stats.metric_order(names), want)
        self.assertEqual(stats.metric_order(list(reversed(names))), want)

    def test_the_metric_names_are_those_the_loader_accepts(self):
        with open(os.path.join(HERE, "..", "src", "train", "experiment.h"), encoding="utf-8") as f:
            header = f.read()
        def names(array):
            body = re.search(array + r"\[\] = \{(.*?)\};", header, re.S).group(1)
            return re.findall(r'"([a-z_0-9]+)"', body)
        self.assertEqual(sorted(names("kClaimMetrics")), sorted(stats.METRICS))
        self.assertEqual(names("kDomainMetrics"), stats.DOMAIN_METRICS)


class ExperimentTest(unittest.TestCase):
    """A fabricated experiment: arms ref, better, worse, noisy over 3 seeds, with claims whose
    verdicts are known, summarised by stats.py and reported by report.py --experiment."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name
        finals = {"ref": [5.0, 5.25, 5.125], "better": [4.75, 5.0, 4.875], "worse": [5.375, 5.625, 5.5],
                  "noisy": [4.875, 5.5, 5.0]}
        arms = []
        for name, fl in finals.items():
            runs = []
            for k, f in enumerate(fl, 1):
                d = f"{name}/seed-{k}"
                write_run(os.path.join(self.root, d), simple_run(f, avg=0.3 if name == "better" else 0.5))
                runs.append({"seed": k, "dir": d, "train_seed": 1233 + k})
            arms.append({"name": name, "runs": runs})
        claims = [{"metric": "final_loss", "better": "lower", "arm": "better", "reference": "ref"},
                  {"metric": "final_loss", "better": "lower", "arm": "worse", "reference": "ref"},
                  {"metric": "final_loss", "better": "lower", "arm": "noisy", "reference": "ref"},
                  {"metric": "avg_maxvio", "better": "lower", "arm": "better", "reference": "ref",
                   "text": "balances better"},
                  {"metric": "steps_to_target", "better": "lower", "arm": "better", "reference": "ref"},
                  {"metric": "domain.news.final_loss", "better": "lower", "arm": "better", "reference": "ref"}]
        self.manifest = os.path.join(self.root, "experiment.json")
        with open(self.manifest, "w") as f:
            json.dump({"format": 1, "file": "exp.toml", "description": "fabricated", "claim": "c",
                       "command": "switchyard experiment exp.toml --seeds 3", "seeds": 3, "quick": False,
                       "reference": "ref", "target_loss": 5.25, "arms": arms, "claims": claims, "notes": []}, f)

    def tearDown(self):
        self.tmp.cleanup()

    def test_summary_statistics_paired_differences_and_verdicts(self):
        s = stats.summarise(self.manifest)
        self.assertEqual(s["seeds"], 3)
        self.assertEqual(list(s["arms"]), ["ref", "better", "worse", "noisy"])
        fl = s["arms"]["ref"]["stats"]["final_loss"]
        self.assertEqual(fl["mean"], 5.125)
        self.assertEqual(fl["std"], 0.125)
        self.assertEqual(fl["n"], 3)
        half = T_975_2 * 0.125 / math.sqrt(3)
        self.assertAlmostEqual(fl["ci95"][0], 5.125 - half, places=9)
        # the target: the file's (the default is tested below)
        self.assertEqual(s["target"], {"loss": 5.25, "source": "target_loss in the experiment file"})
        self.assertEqual(s["arms"]["ref"]["stats"]["steps_to_target"]["n"], 3)
        diff = s["paired"]["better"]["stats"]["final_loss"]
        self.assertEqual(diff["values"], [-0.25, -0.25, -0.25])
        self.assertEqual(diff["ci95"], [-0.25, -0.25])  # the same difference at every seed
        noisy = s["paired"]["noisy"]["stats"]["final_loss"]  # -0.125, +0.25, -0.125
        self.assertAlmostEqual(noisy["mean"], 0.0)
        verdicts = [c["verdict"] for c in s["claims"]]
        self.assertEqual(verdicts, [stats.SUPPORTED, stats.CONTRADICTED, stats.NOT_RESOLVED,
                                    stats.SUPPORTED, stats.SUPPORTED, stats.NOT_RESOLVED])
        self.assertEqual(s["claims"][5]["reason"], "seed(s) 1, 2, 3 lack a value in one or both arms (better "
                         "lacks it at seed(s) 1, 2, 3; ref lacks it at seed(s) 1, 2, 3)")
        md = stats.markdown(s)
        self.assertIn("| final_loss: better lower than ref | -0.2500 ± 0.0000 [-0.2500, -0.2500] | 3 | supported", md)
        self.assertIn(stats.RULE, md)
        json.dumps(s, allow_nan=False)  # summary.json is strict JSON

    def test_time_to_target_known_answer(self):
        s = stats.summarise(self.manifest)
        # target 5.25; evaluations at steps 2/4/6 are final + 0.25/0.125/0. ref (finals 5, 5.25,
        # 5.125) reaches it at steps 4, 6, 6; better (4.75, 5, 4.875) at 2, 4, 4; worse never.
        self.assertEqual(s["arms"]["ref"]["stats"]["steps_to_target"]["values"], {"1": 4.0, "2": 6.0, "3": 6.0})
        self.assertEqual(s["paired"]["better"]["stats"]["steps_to_target"]["values"], [-2.0, -2.0, -2.0])
        self.assertAlmostEqual(s["arms"]["better"]["stats"]["seconds_to_target"]["mean"], 1.0 / 3)
        worse = s["arms"]["worse"]["stats"]["steps_to_target"]  # no seed reached it
        self.assertEqual((worse["n"], worse["mean"], worse["missing"]), (0, None, [1, 2, 3]))
        self.assertEqual(stats.fstat(worse), "— (no value at any seed)")
        self.assertEqual(s["paired"]["noisy"]["stats"]["steps_to_target"]["missing"], [2])

    def test_the_default_target_is_the_references_loss_half_way(self):
        with open(self.manifest) as f:
            man = json.load(f)
        del man["target_loss"]
        with open(self.manifest, "w") as f:
            json.dump(man, f)
        s = stats.summarise(self.manifest)
        # ref's evaluations at steps 2/4/6 are final + 0.5/0.25/0 (finals 5, 5.25, 5.125); the
        # first at or past step 3 is step 4: 5.25, 5.5, 5.375 -> the highest, 5.5, which every
        # reference seed reaches by step 4 (seed 1 already at step 2).
        self.assertEqual(s["target"]["loss"], 5.5)
        self.assertIn("past 0.5 of the run", s["target"]["source"])
        self.assertEqual(s["arms"]["ref"]["stats"]["steps_to_target"]["values"], {"1": 2.0, "2": 4.0, "3": 4.0})
        # worse (finals 5.375, 5.625, 5.5) reaches 5.5 at step 6 in seeds 1 and 3; seed 2 never:
        # its 6 steps are a lower bound, and the differences 4, >= 2, 2 are lower bounds whose
        # interval (2.667 +- 2.87) contains 0
        man["claims"] = [{"metric": "steps_to_target", "better": "lower", "arm": "worse", "reference": "ref"}]
        with open(self.manifest, "w") as f:
            json.dump(man, f)
        s = stats.summarise(self.manifest)
        d = s["claims"][0]["difference"]
        self.assertEqual((d["values"], d["bound"], d["censored"]), ([4.0, 2.0, 2.0], "lower", {"arm": [2], "reference": []}))
        self.assertEqual(s["claims"][0]["verdict"], stats.NOT_RESOLVED)

    def test_a_run_that_never_reaches_the_target_is_a_lower_bound(self):
        # An arm "slow" of 12 steps whose loss stays above the target 5.25 (evaluations every 2
        # steps at 5.5 + 0.125 * (12 - step)): its length, 12 steps or 1.2 s, bounds its time
        # to target from below. ref reaches it at steps 4, 6, 6 (0.4, 0.6, 0.6 s).
        with open(self.manifest) as f:
            man = json.load(f)
        runs = []
        for k in (1, 2, 3):
            write_run(os.path.join(self.root, f"slow/seed-{k}"), simple_run(5.5, steps=12))
            runs.append({"seed": k, "dir": f"slow/seed-{k}"})
        man["arms"].append({"name": "slow", "runs": runs})
        man["claims"] = [
            {"metric": "steps_to_target", "better": "lower", "arm": "slow", "reference": "ref"},
            {"metric": "seconds_to_target", "better": "higher", "arm": "slow", "reference": "ref"},
            {"metric": "steps_to_target", "better": "lower", "arm": "ref", "reference": "slow"},
            {"metric": "steps_to_target", "better": "lower", "arm": "worse", "reference": "ref"},
            {"metric": "steps_to_target", "better": "lower", "arm": "slow", "reference": "worse"}]
        with open(self.manifest, "w") as f:
            json.dump(man, f)
        s = stats.summarise(self.manifest)
        self.assertEqual(s["arms"]["slow"]["runs"][0]["target_bounds"],
                         {"steps_to_target": 12.0, "seconds_to_target": 1.2,
                          "steps_to_target_causal": 12.0, "seconds_to_target_causal": 1.2})
        self.assertEqual(s["arms"]["ref"]["runs"][1]["target_bounds"], {})  # reached it
        c = s["claims"]
        # slow - ref >= 8, 6, 6 steps: mean 6.667, t-interval [3.80, 9.54], wholly above 0
        self.assertEqual(c[0]["difference"]["values"], [8.0, 6.0, 6.0])
        self.assertEqual(c[0]["difference"]["bound"], "lower")
        self.assertAlmostEqual(c[0]["difference"]["ci95"][0], 20 / 3 - T_975_2 * (2 / math.sqrt(3)) / math.sqrt(3))
        self.assertEqual(c[0]["verdict"], stats.CONTRADICTED)
        self.assertIn("slow never reached the target at seed(s) 1, 2, 3", c[0]["reason"])
        self.assertEqual(c[1]["verdict"], stats.SUPPORTED)  # seconds: >= 0.8, 0.6, 0.6
        self.assertAlmostEqual(c[1]["difference"]["mean"], 2.0 / 3)
        # ref - slow <= -8, -6, -6: upper bounds wholly below 0
        self.assertEqual((c[2]["difference"]["bound"], c[2]["verdict"]), ("upper", stats.SUPPORTED))
        # worse (6 steps) - ref >= 2, 0, 0: bounds whose interval contains 0 decide nothing
        self.assertEqual(c[3]["difference"]["values"], [2.0, 0.0, 0.0])
        self.assertEqual(c[3]["verdict"], stats.NOT_RESOLVED)
        self.assertIn("lower bounds", c[3]["reason"])
        # both arms censored: no bound on the difference
        self.assertEqual(c[4]["verdict"], stats.NOT_RESOLVED)
        self.assertIn("lack a value", c[4]["reason"])
        self.assertIn("(lower bounds: a run never reached the target)", stats.markdown(s))

    def test_a_run_not_trained_yet_is_left_out_with_a_note(self):
        os.remove(os.path.join(self.root, "noisy", "seed-3", "metrics.jsonl"))
        s = stats.summarise(self.manifest)
        self.assertEqual(len(s["arms"]["noisy"]["runs"]), 2)
        self.assertTrue(any("noisy seed 3" in n for n in s["notes"]))
        self.assertEqual(s["paired"]["noisy"]["stats"]["final_loss"]["missing"], [3])

    def test_a_run_still_training_is_left_out_with_a_note(self):
        # Its config plans 10 steps; its metrics stop at step 6: an interim value is no result.
        with open(os.path.join(self.root, "noisy", "seed-3", "config.toml"), "a") as f:
            f.write("[train]\nsteps = 10\n")
        s = stats.summarise(self.manifest)
        self.assertEqual([r["seed"] for r in s["arms"]["noisy"]["runs"]], [1, 2])
        self.assertTrue(any("noisy seed 3: trained to step 6 of 10" in n for n in s["notes"]), s["notes"])
        self.assertEqual(len(s["arms"]["ref"]["runs"]), 3)  # finished runs (no steps planned) stay

    def test_the_verdict_table_is_made_from_the_summaries(self):
        import verdicts
        results = os.path.join(self.root, "results")
        os.makedirs(os.path.join(results, "fab"))
        stats.write_summary(stats.summarise(self.manifest), os.path.join(results, "fab"))
        md = os.path.join(self.root, "results.md")
        with open(md, "w") as f:
            f.write(f"# R\n\n{verdicts.BEGIN}\nstale\n{verdicts.END}\n\nsee results/fab/summary.md\n")
        self.assertEqual(verdicts.main([md, "--check"]), 1)
        self.assertEqual(verdicts.main([md, "--update"]), 0)
        self.assertEqual(verdicts.main([md, "--check"]), 0)
        with open(md) as f:
            text = f.read()
        self.assertNotIn("stale", text)
        self.assertTrue(text.endswith("see results/fab/summary.md\n"))
        # one row per claim, in the file's order: better vs ref, final_loss, -0.25 at every seed
        self.assertIn("| fab |  | better vs ref (final_loss, lower) | −0.2500 [−0.2500, −0.2500] | 3 | **supported** |", text)
        self.assertIn("| fab | balances better | better vs ref (avg_maxvio, lower) |", text)
        self.assertEqual(text.count("| fab |"), 6)

    def test_stats_cli_and_report_write_the_same_summary(self):
        out = os.path.join(self.root, "stats_out")
        p = subprocess.run([PY, os.path.join(HERE, "stats.py"), self.manifest, "--out", out],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(os.path.join(out, "summary.json")) as f:
            from_cli = json.load(f)
        rep = os.path.join(self.root, "report")
        p = subprocess.run([PY, os.path.join(HERE, "report.py"), "--experiment", self.manifest, "--out", rep],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(os.path.join(rep, "summary.json")) as f:
            self.assertEqual(json.load(f), from_cli)
        with open(os.path.join(rep, "index.html"), encoding="utf-8") as f:
            page = f.read()
        for tid in ("summary", "claims", "stats", "paired"):
            self.assertIn(f'<table id="{tid}">', page)
        self.assertIn('<td class="supported">supported</td>', page)
        self.assertIn('<td class="unresolved">not resolved</td>', page)
        self.assertIn("5.125 ± 0.125", page)  # ref's final loss
        self.assertIn("better/seed-3", page)  # every seed's run in the per-run table
        self.assertIn("lowest seed", page)
        for src in re.findall(r'src="([^"]+)"', page):
            self.assertTrue(os.path.isfile(os.path.join(rep, src)), src)
        self.assertTrue(os.path.isfile(os.path.join(rep, "summary.md")))
        # summarize.py on the experiment directory prints the same summary.md
        p = subprocess.run([PY, os.path.join(HERE, "summarize.py"), self.root], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(os.path.join(out, "summary.md"), encoding="utf-8") as f:
            self.assertEqual(p.stdout.strip(), f.read().strip())
        # run directories and --experiment together are a usage error
        p = subprocess.run([PY, os.path.join(HERE, "report.py"), self.root, "--experiment", self.manifest,
                            "--out", rep], capture_output=True, text=True)
        self.assertNotEqual(p.returncode, 0)

    def test_a_bad_manifest_is_named(self):
        bad = os.path.join(self.root, "bad.json")
        with open(bad, "w") as f:
            f.write("{}")
        p = subprocess.run([PY, os.path.join(HERE, "stats.py"), bad], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("bad.json: not an experiment manifest", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=1)
