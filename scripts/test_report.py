#!/usr/bin/python3
"""Tests scripts/report.py on small fabricated run directories (no training needed).

    scripts/test_report.py        prints "N passed, M failed"; exit status 0 when all pass
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPORT = os.path.join(HERE, "report.py")
SUMMARIZE = os.path.join(HERE, "summarize.py")
PY = "/usr/bin/python3"
DOMAINS = ["literature", "code_c", "math"]

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {what}")


def train_record(step, n_layers, E, K):
    layers = []
    for l in range(n_layers):
        load = [64 * K // E + ((i * 7 + step + l) % 5) - 2 for i in range(E)]
        m = sum(load) / E
        layers.append({"layer": l + 1, "load": load, "maxvio": max(load) / m - 1, "maxvio_micro": 0.1,
                       "dead_experts": 1 if (l == 0 and step > 5) else 0, "drop_rate": 0.0,
                       "router_entropy": 1.2, "topk_score_sum": 0.6, "lbl": 0.01, "z_loss": 0.0,
                       "experts_per_token": [1, 5, 50, 6, 2, 0] if K == 2 else [0, 0, 64, 0, 0, 0],
                       "ep_imbalance": {"2": 1.05}})
    mv = [x["maxvio"] for x in layers]
    return {"type": "train", "step": step, "loss": 5.5 - 0.05 * step, "ce": 5.48 - 0.05 * step,
            "lbl": 0.02, "z_loss": 0.0, "lr": 1e-3, "grad_norm": 1.0, "clip_scale": 1.0,
            "tokens": 64 * step, "tokens_per_s": 1000.0 + step, "step_ms": 60.0, "mfu": 0.01,
            "balance_bsz": {"micro": 4}, "avg_maxvio": sum(mv) / len(mv), "sup_maxvio": max(mv),
            "layers": layers}


def eval_record(step, n_layers, E, K, domains, ec):
    r = {"type": "eval", "step": step, "loss": 5.4 - 0.04 * step, "perplexity": math.exp(5.4 - 0.04 * step),
         "tokens": 256, "maxvio_global": [0.1] * n_layers}
    if ec:
        r["loss_causal"] = r["loss"] + 0.2
        r["perplexity_causal"] = math.exp(r["loss_causal"])
    if domains:
        r["domains"] = {}
        for di, d in enumerate(DOMAINS):
            F = [[K / E * (1.5 if i == (di + l) % E else 0.5 if i == (di + l + 1) % E else 1.0)
                  for i in range(E)] for l in range(n_layers)]
            r["domains"][d] = {"loss": r["loss"] + 0.1 * di, "perplexity": 100.0, "tokens": 80, "F": F,
                               "specialisation": [0.05 * (di + 1) + 0.01 * l for l in range(n_layers)],
                               "top10_share": [0.2] * n_layers}
    return r


def make_run(root, name, steps=12, n_layers=2, E=8, K=2, domains=False, ec=False, evals=True,
             oracle=False, ep=False, checkpoints=False):
    d = os.path.join(root, name)
    os.makedirs(d)
    with open(os.path.join(d, "config.toml"), "w") as f:
        f.write(f'out_dir = "{d}"\n[model]\nn_experts = {E}\ntop_k = {K}\n[router]\n'
                f'type = "{"expert_choice" if ec else "topk"}"\n'
                '[[balance.terms]]\ntype = "lbl"\nscope = "micro"\ncoef = 0.01\n')
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        for s in range(1, steps + 1):
            rec = train_record(s, n_layers, E, K)
            if oracle and s % 4 == 0:
                for l in rec["layers"]:
                    l["oracle"] = {"objective_gap": 0.01 / s, "capacity_violation": 2, "objective": 30.0,
                                   "optimal_objective": 30.3, "dual_gap": 0.002 / s}
            if ep:  # expert parallel on 2 ranks: the exchange measured per rank
                for l in rec["layers"]:
                    l["ep"] = {"rows": [60, 68], "tokens": [40, 44], "bytes_sent": [4096, 4096], "exchange_ms": [1.0, 1.0 + 0.1 * s],
                               "experts_ms": [3.0, 2.5], "wait_ms": [0.0, 0.1 * s]}
            if oracle:  # a BIP run: its prices per layer and expert
                for li, l in enumerate(rec["layers"]):
                    l["bip_prices"] = [0.001 * s * ((i + li) % 3) for i in range(E)]
            f.write(json.dumps(rec) + "\n")
            if checkpoints and s % 5 == 0:  # a checkpoint every 5 steps, training paused 1.5 s for each
                f.write(json.dumps({"type": "checkpoint", "step": s, "name": f"step_{s:08}", "bytes": 4096,
                                    "write_s": 1.0, "stall_s": 1.5, "background": True}) + "\n")
            if evals and s % 5 == 0 or (evals and s == steps):
                f.write(json.dumps(eval_record(s, n_layers, E, K, domains, ec)) + "\n")
    return d


def run_report(*args):
    return subprocess.run([PY, REPORT, *args], capture_output=True, text=True)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        plain = make_run(tmp, "plain_run", checkpoints=True)
        dom = make_run(tmp, "domain_ec", domains=True, ec=True, n_layers=3)
        noeval = make_run(tmp, "no_evals", evals=False)
        out = os.path.join(tmp, "report")

        # --- two runs: one without per-domain data, one with domains + Expert Choice fields
        p = run_report(plain, dom, "--out", out)
        check(p.returncode == 0, f"report on two runs exits 0 (stderr: {p.stderr.strip()})")
        index = os.path.join(out, "index.html")
        check(p.stdout.strip().endswith("index.html") and os.path.isfile(p.stdout.strip()),
              f"prints the path of index.html (got {p.stdout.strip()!r})")
        check(os.path.isfile(index), "index.html written")
        page = open(index, encoding="utf-8").read() if os.path.isfile(index) else ""
        pngs = sorted(f for f in os.listdir(out) if f.endswith(".png")) if os.path.isdir(out) else []
        for f in pngs:
            check(f'src="{f}"' in page, f"index.html references {f}")
            with open(os.path.join(out, f), "rb") as fh:
                check(fh.read(8) == b"\x89PNG\r\n\x1a\n", f"{f} is a PNG")
        refs = re.findall(r'src="([^"]+)"', page)
        check(all(os.path.isfile(os.path.join(out, r)) for r in refs), "every image the page references exists")
        expected = ["train_loss.png", "eval_loss.png", "avg_maxvio.png",
                    "maxvio_layers_plain_run.png", "maxvio_layers_domain_ec.png",
                    "eval_domains_domain_ec.png", "experts_per_token_plain_run.png",
                    "experts_per_token_domain_ec.png",
                    "heatmap_domain_ec_layer1.png", "heatmap_domain_ec_layer2.png", "heatmap_domain_ec_layer3.png"]
        for f in expected:
            check(f in pngs, f"{f} written")
        check(not any(f.startswith("heatmap_plain_run") or f.startswith("eval_domains_plain_run") for f in pngs),
              "no per-domain plots for the run without domains")
        check('<table id="summary">' in page, "index.html has the summary table")
        check("<td>2 (3.0 s)</td>" in page, "the summary table counts checkpoints and the time they paused training")
        check("'checkpoint'" not in page, "checkpoint records are read, not listed as skipped")
        check("plain_run" in page and "domain_ec" in page, "table names both runs")
        check("causal eval loss" in page, "table has the causal eval column when a run reports loss_causal")
        check("no per-domain results" in page, "page notes the missing per-domain data")
        check("http://" not in page and "https://" not in page, "page loads nothing from the network")
        check("router expert_choice" in page and "router topk" in page, "table shows the router from config.toml")
        # final train loss of plain_run at step 12: 5.5 - 0.6 = 4.900
        check("4.900" in page, "table has the final train loss")
        # specialisation of domain_ec: mean over 3 domains and 3 layers of 0.05(d+1) + 0.01 l = 0.110
        check("specialisation (mean, nats)" in page and "0.110" in page,
              "table has the mean specialisation of the last evaluation with domains")

        check(not os.path.exists(os.path.join(out, "oracle_gap.png")), "no oracle plot without oracle records")
        check(not os.path.exists(os.path.join(out, "ep_wait.png")), "no wait plot without expert parallelism")

        # --- a run with oracle records (router.oracle_every): the gap plot and its section
        orc = make_run(tmp, "bip_oracle", oracle=True, ep=True)
        out_o = os.path.join(tmp, "report_o")
        p = run_report(orc, plain, "--out", out_o)
        check(p.returncode == 0, f"report with oracle records exits 0 (stderr: {p.stderr.strip()})")
        check(os.path.isfile(os.path.join(out_o, "oracle_gap.png")), "oracle_gap.png written")
        check(os.path.isfile(os.path.join(out_o, "ep_wait.png")), "ep_wait.png written for an expert-parallel run")
        page_o = open(os.path.join(out_o, "index.html"), encoding="utf-8").read() if p.returncode == 0 else ""
        check('src="oracle_gap.png"' in page_o and "exact optimum" in page_o, "page has the oracle section")
        check(os.path.isfile(os.path.join(out_o, "bip_prices_bip_oracle.png")), "bip_prices plot written")
        check('src="bip_prices_bip_oracle.png"' in page_o and "Balancer state" in page_o,
              "page has the balancer-state section")
        check(not os.path.exists(os.path.join(out_o, "bip_prices_plain_run.png")),
              "no balancer-state plot for a run without state")

        # --- a run without evaluations: no eval curve, a note, still succeeds
        out2 = os.path.join(tmp, "report2")
        p = run_report(noeval, "--out", out2)
        check(p.returncode == 0, f"run without evals exits 0 (stderr: {p.stderr.strip()})")
        check(not os.path.exists(os.path.join(out2, "eval_loss.png")), "no eval plot without evals")
        page2 = open(os.path.join(out2, "index.html"), encoding="utf-8").read() if p.returncode == 0 else ""
        check("no evaluation records" in page2, "page notes the missing evaluations")

        # --- malformed input fails with a message naming the file
        missing = os.path.join(tmp, "missing_run")
        os.makedirs(missing)
        p = run_report(missing, "--out", os.path.join(tmp, "r3"))
        check(p.returncode != 0 and os.path.join(missing, "metrics.jsonl") in p.stderr,
              f"missing metrics.jsonl named (stderr: {p.stderr.strip()})")

        empty = os.path.join(tmp, "empty_run")
        os.makedirs(empty)
        open(os.path.join(empty, "metrics.jsonl"), "w").close()
        p = run_report(empty, "--out", os.path.join(tmp, "r4"))
        check(p.returncode != 0 and os.path.join(empty, "metrics.jsonl") in p.stderr,
              f"empty metrics.jsonl named (stderr: {p.stderr.strip()})")

        # a garbled line in the middle (13 records + 3 evals before it) is an error ...
        bad = make_run(tmp, "bad_json")
        with open(os.path.join(bad, "metrics.jsonl"), "a") as f:
            f.write('{"type": "train", "step": 13, "loss": \n')
            f.write(json.dumps(train_record(14, 2, 8, 2)) + "\n")
        p = run_report(bad, "--out", os.path.join(tmp, "r5"))
        check(p.returncode != 0 and os.path.join(bad, "metrics.jsonl") + ":16:" in p.stderr,
              f"bad JSON line named with file and line (stderr: {p.stderr.strip()})")
        check("Traceback" not in p.stderr, "bad JSON gives a message, not a traceback")
        p = subprocess.run([PY, SUMMARIZE, bad], capture_output=True, text=True)
        check(p.returncode == 1 and os.path.join(bad, "metrics.jsonl") + ":16:" in p.stderr
              and "Traceback" not in p.stderr,
              f"summarize names a bad JSON line with file and line (stderr: {p.stderr.strip()})")

        # ... but a torn last line is a run still writing: skipped, with or without its newline,
        # even when cut inside a UTF-8 character
        for torn in (b'{"type": "train", "step": 13, "lo', b'{"type": "train", "step": 13, "loss": \n',
                     b'{"type": "eval", "domains": {"caf\xc3'):
            live = make_run(tmp, f"live_{len(torn)}")
            with open(os.path.join(live, "metrics.jsonl"), "ab") as f:
                f.write(torn)
            out_l = os.path.join(tmp, f"r_live_{len(torn)}")
            p = run_report(live, "--out", out_l)
            check(p.returncode == 0 and os.path.isfile(os.path.join(out_l, "index.html")),
                  f"report skips a torn last line {torn!r} (stderr: {p.stderr.strip()})")
            p = subprocess.run([PY, SUMMARIZE, live], capture_output=True, text=True)
            check(p.returncode == 0 and "12 steps" in p.stdout,
                  f"summarize skips a torn last line {torn!r} (stdout: {p.stdout.strip()}, "
                  f"stderr: {p.stderr.strip()})")

        badcfg = make_run(tmp, "bad_config")
        with open(os.path.join(badcfg, "config.toml"), "a") as f:
            f.write("[model\n")
        p = run_report(badcfg, "--out", os.path.join(tmp, "r6"))
        check(p.returncode != 0 and os.path.join(badcfg, "config.toml") in p.stderr,
              f"bad config.toml named (stderr: {p.stderr.strip()})")

        p = run_report(os.path.join(tmp, "nonexistent"), "--out", os.path.join(tmp, "r7"))
        check(p.returncode != 0 and "nonexistent" in p.stderr, "nonexistent run directory named")

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
