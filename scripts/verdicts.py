#!/usr/bin/python3
"""Every recorded claim and its verdict in one table, made from the committed summaries.

docs/results.md opens with this table between the markers

    <!-- verdicts:begin -->  ...  <!-- verdicts:end -->

so that a reader sees every paper claim's verdict at a glance. The table is never edited by
hand: it is derived from docs/results/<experiment>/summary.json (scripts/stats.py writes them),
experiments in the order results.md links their summaries, claims in the order of their files.

    scripts/verdicts.py [--results docs/results] docs/results.md            print the table
    scripts/verdicts.py --update docs/results.md                             rewrite the block
    scripts/verdicts.py --check docs/results.md                              exit 1 if stale

`scripts/results.sh` updates it after copying a summary; `make test` checks it (test
`results_verdicts`).
"""
import argparse
import json
import os
import re
import sys

import stats  # scripts/stats.py

BEGIN, END = "<!-- verdicts:begin -->", "<!-- verdicts:end -->"


def fnum(x, ref):
    """x signed, with stats.fnum's precision for the magnitude of ref (the mean)."""
    return ("+" if x >= 0 else "") + stats.fnum(x, ref)


def difference(d):
    """mean [lo, hi] of a claim's paired difference, with the bound marker, or a dash."""
    if not d or d.get("mean") is None:
        return "—"
    m = d["mean"]
    s = fnum(m, m)
    if d.get("ci95"):
        s += f" [{fnum(d['ci95'][0], m)}, {fnum(d['ci95'][1], m)}]"
    if d.get("bound"):
        s += f" ({d['bound']} bounds)"
    return s.replace("-", "−")


def order(results_md, names):
    """The experiments in the order results.md links results/<name>/summary.md, then the rest."""
    linked = re.findall(r"results/([A-Za-z0-9_.-]+)/summary\.md", results_md)
    seen = []
    for n in linked + sorted(names):
        if n in names and n not in seen:
            seen.append(n)
    return seen


def table(results_dir, results_md):
    names = [n for n in os.listdir(results_dir)
             if os.path.isfile(os.path.join(results_dir, n, "summary.json"))]
    rows = ["| experiment | claim | arm vs reference (metric) | paired difference [95% interval] | seeds | verdict |",
            "|---|---|---|---:|---:|---|"]
    for name in order(results_md, names):
        with open(os.path.join(results_dir, name, "summary.json"), encoding="utf-8") as f:
            s = json.load(f)
        for c in s.get("claims", []):
            other = c.get("reference", f"{c.get('value', 0):g}")
            text = (c.get("text") or "").replace("|", "\\|")
            v = c["verdict"]
            d = c.get("difference") or {}
            rows.append(f"| {name} | {text} | {c['arm']} vs {other} ({c['metric']}, {c['better']}) | "
                        f"{difference(d)} | {d.get('n', 0)} | {f'**{v}**' if v != 'not resolved' else v} |")
    return "\n".join(rows) + "\n"


def block(results_dir, results_md):
    return (f"{BEGIN}\n<!-- made by scripts/verdicts.py from results/*/summary.json; do not edit -->\n"
            f"{table(results_dir, results_md)}{END}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results_md", help="docs/results.md")
    ap.add_argument("--results", help="directory of <experiment>/summary.json (default: results/ beside results_md)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--update", action="store_true", help="rewrite the table between the markers")
    mode.add_argument("--check", action="store_true", help="exit 1 when the table is not the summaries'")
    args = ap.parse_args(argv)
    results_dir = args.results or os.path.join(os.path.dirname(os.path.abspath(args.results_md)), "results")
    with open(args.results_md, encoding="utf-8") as f:
        md = f.read()
    new = block(results_dir, md)
    if not (args.update or args.check):
        print(new)
        return 0
    pat = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pat.search(md):
        print(f"verdicts: {args.results_md} has no {BEGIN} ... {END} block", file=sys.stderr)
        return 1
    current = pat.search(md).group(0)
    if args.check:
        if current != new:
            print(f"verdicts: the table in {args.results_md} is not the summaries'; run "
                  f"scripts/verdicts.py --update {args.results_md}", file=sys.stderr)
            return 1
        return 0
    if current != new:
        with open(args.results_md, "w", encoding="utf-8") as f:
            f.write(pat.sub(lambda _: new, md, count=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
