#!/usr/bin/env bash
# Reproduces docs/results/ (docs/results.md, "How a result is recorded"): runs the shipped
# experiments one after the other with 3 seeds and copies each finished experiment's summary
# (summary.json, summary.md) to docs/results/<name>/. Resumable like `switchyard experiment`:
# finished runs are skipped and an interrupted run resumes from its checkpoint, so after a stop
# (Ctrl-C, SIGTERM: the current step finishes and is saved) the same command continues; it stops
# at the first experiment that did not finish and copies nothing for it.
#   scripts/results.sh [BUILD] [NAME ...]
#     NAME: an experiment of configs/experiments/ (default: all of them, in the order below)
#   env: SEEDS (default 3); EXTRA: more `switchyard experiment` options for every experiment,
#        e.g. EXTRA="--quick --out /tmp/q" (then DEST should change too); DEST (default
#        docs/results): where the summaries go; RESULTS_MD (default docs/results.md when DEST is
#        the default, else none): whose verdict table (scripts/verdicts.py) is remade after each
#        copy; PRINT_ONLY=1 lists the commands without running.
# Needs the demo corpus (`make demo` builds it) except with --quick. Each experiment takes about an
# hour on 2 cores (docs/experiments.md, "Running bigger"); run it in the background:
#   nohup scripts/results.sh build > results.log 2>&1 &
set -euo pipefail
BUILD=${1:-build}
shift || true
SEEDS=${SEEDS:-3}
DEST=${DEST:-docs/results}
if [ "$DEST" = docs/results ]; then RESULTS_MD=${RESULTS_MD-docs/results.md}; else RESULTS_MD=${RESULTS_MD-}; fi
read -ra EXTRA_ARGS <<<"${EXTRA:-}"
ALL=(global-vs-micro lbl-group-sweep loss-free loss-free-sweep expert-choice bip baselines all)
NAMES=("$@")
[ ${#NAMES[@]} -eq 0 ] && NAMES=("${ALL[@]}")
for name in "${NAMES[@]}"; do
  file=configs/experiments/$name.toml
  if [ ! -f "$file" ]; then
    echo "results.sh: no experiment $file; the shipped ones are: ${ALL[*]}" >&2
    exit 1
  fi
done
for name in "${NAMES[@]}"; do
  file=configs/experiments/$name.toml
  cmd=("$BUILD/switchyard" experiment "$file" --seeds "$SEEDS" "${EXTRA_ARGS[@]}")
  echo "== $(date -u +%FT%TZ) $name: ${cmd[*]}"
  [ -n "${PRINT_ONLY:-}" ] && continue
  rc=0
  "${cmd[@]}" || rc=$?
  if [ $rc -ne 0 ]; then
    echo "results.sh: $name stopped (exit $rc); run the same command to continue" >&2
    exit $rc
  fi
  # The report directory: <out_dir>/report, out_dir as the experiment resolves it (the file's,
  # --out's, or with --quick the file's + "-quick").
  out=$("${cmd[@]}" --dry-run 2>/dev/null |
        head -1 | sed -n 's/.*, out_dir \(.*\)$/\1/p' | sed 's/ (--quick)$//')
  report=${out:+$out/report}
  if [ -z "$report" ] || [ ! -f "$report/summary.json" ]; then
    echo "results.sh: $name finished but its summary was not found (report: '$report')" >&2
    exit 1
  fi
  mkdir -p "$DEST/$name"
  cp "$report/summary.json" "$report/summary.md" "$DEST/$name/"
  if [ -n "$RESULTS_MD" ]; then
    /usr/bin/python3 scripts/verdicts.py --update "$RESULTS_MD" --results "$DEST"
  fi
  echo "== $(date -u +%FT%TZ) $name: summary in $DEST/$name/ (commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
done
