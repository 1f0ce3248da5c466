#!/usr/bin/env bash
# No silent failure, end to end through the command line (docs/training.md, "Failures"):
# divergence, write errors injected with a file-size limit (metrics and checkpoints), a second
# writer of a run directory, run directories that cannot work, configs that cannot fit in memory,
# a complete checkpoint newer than `latest`, and, under mpirun, ranks that disagree.
# Each case must end with status 1 and a message naming the problem, or succeed losing nothing.
# Usage: tests/hardening_test.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "${1:?usage: hardening_test.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
SY="$BUILD/switchyard"
WORK=$(mktemp -d)
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
TINY=(-c "$SRC/configs/tiny.toml" --quiet)
passed=0
failed=0
ok() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; [[ -f $WORK/out ]] && tail -5 "$WORK/out"; }
fails_with() {  # fails_with NAME TEXT COMMAND...: exit status 1 and TEXT in the output
  local name=$1 text=$2; shift 2
  "$@" >"$WORK/out" 2>&1
  local rc=$?
  if [[ $rc -eq 1 ]] && grep -qF -- "$text" "$WORK/out"; then ok; else
    fail "$name (status $rc, wanted 1 and \"$text\")"; fi
}
succeeds() {  # succeeds NAME COMMAND...
  local name=$1; shift
  if "$@" >"$WORK/out" 2>&1; then ok; else fail "$name (status $?)"; fi
}
# steps_ok DIR N: metrics.jsonl holds whole records only, train steps exactly 1..N once each.
steps_ok() {
  /usr/bin/python3 - "$1/metrics.jsonl" "$2" <<'PY'
import json, sys
steps = [r["step"] for r in map(json.loads, open(sys.argv[1])) if r["type"] == "train"]
n = int(sys.argv[2])
assert steps == list(range(1, n + 1)), f"train steps {steps[:5]}...{steps[-5:]} (want 1..{n})"
PY
}
all_finite() {  # all_finite CHECKPOINT_DIR: every weight finite
  /usr/bin/python3 - "$1/model.safetensors" <<'PY'
import json, struct, sys, math
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
data = b[8 + n:]
vals = struct.unpack(f"<{len(data) // 4}f", data)
bad = sum(1 for v in vals if not math.isfinite(v))
assert bad == 0, f"{bad} of {len(vals)} weights not finite"
PY
}

# 2. Divergence: a huge learning rate or init must stop with status 1, never checkpoint NaN.
fails_with "lr 1e4 diverges" "training diverged" "$SY" train "${TINY[@]}" --set train.lr=1e4 \
  --set train.steps=5 --set out_dir="$WORK/nan"
grep -qF "lower train.lr" "$WORK/out" || fail "the divergence message says what to do"
[[ ! -e $WORK/nan/checkpoints/latest ]] || all_finite "$WORK/nan/checkpoints/$(cat "$WORK/nan/checkpoints/latest")" \
  || fail "a checkpoint with non-finite weights was written"
fails_with "init_std 1e30 diverges" "must be finite" "$SY" train "${TINY[@]}" --set model.init_std=1e30 \
  --set train.steps=5 --set out_dir="$WORK/nan2"
# A run that diverges later (here: resumed with lr 1e4): the last checkpoint stays `latest` and
# finite, and the same command with a sane lr resumes from it.
succeeds "4 sane steps" "$SY" train "${TINY[@]}" --set train.steps=4 --set train.checkpoint_every=20 \
  --set out_dir="$WORK/nan3"
fails_with "diverging after a checkpoint" "step_00000004 is the last checkpoint" "$SY" train "${TINY[@]}" \
  --set train.lr=1e4 --set train.steps=40 --set train.checkpoint_every=20 --set out_dir="$WORK/nan3"
[[ $(cat "$WORK/nan3/checkpoints/latest") == step_00000004 ]] && ok || fail "latest is still step 4"
all_finite "$WORK/nan3/checkpoints/step_00000004" && ok || fail "latest holds non-finite weights"
succeeds "resume with a sane lr" "$SY" train "${TINY[@]}" --set train.lr=1e-3 --set train.steps=40 \
  --set train.checkpoint_every=20 --set out_dir="$WORK/nan3"
steps_ok "$WORK/nan3" 40 && ok || fail "steps 1..40 once each after the divergence"

# 3. Write errors (a file-size limit: writes past it fail with EFBIG).
if command -v prlimit >/dev/null; then
  fails_with "metrics write error" "metrics.jsonl: appending" prlimit --fsize=6000 "$SY" train "${TINY[@]}" \
    --set out_dir="$WORK/full"
  /usr/bin/python3 -c "import json,sys; [json.loads(l) for l in open(sys.argv[1])]" "$WORK/full/metrics.jsonl" \
    && ok || fail "metrics.jsonl keeps only whole records after a write error"
  succeeds "resume after the metrics error" "$SY" train "${TINY[@]}" --set out_dir="$WORK/full"
  steps_ok "$WORK/full" 20 && ok || fail "every step recorded once after the resume"
  fails_with "checkpoint write error" "File too large" prlimit --fsize=300000 "$SY" train "${TINY[@]}" \
    --set train.checkpoint_every=5 --set out_dir="$WORK/ckfull"
  ls "$WORK/ckfull/checkpoints" | grep -q tmp && fail "a partial checkpoint directory was left behind" || ok
  succeeds "resume after the checkpoint error" "$SY" train "${TINY[@]}" --set train.checkpoint_every=5 \
    --set out_dir="$WORK/ckfull"
  steps_ok "$WORK/ckfull" 20 && ok || fail "every step recorded once after the checkpoint error"
fi

# 4. One writer per run directory: a second trainer fails at once, naming the holder.
"$SY" train "${TINY[@]}" --set train.steps=100000 --set out_dir="$WORK/busy" >/dev/null 2>&1 &
holder=$!
for _ in $(seq 1 200); do [[ -s $WORK/busy/metrics.jsonl ]] && break; sleep 0.05; done
fails_with "second trainer" "is in use by another switchyard process (training by pid $holder" \
  "$SY" train "${TINY[@]}" --set out_dir="$WORK/busy"
kill -TERM "$holder"; wait "$holder"
succeeds "the directory is free once the holder stopped" "$SY" train "${TINY[@]}" --set train.steps=3 \
  --set out_dir="$WORK/busy2"

# ... and a second experiment on the same directory.
cat >"$WORK/exp.toml" <<EOT
description = "lock"
claim = "none"
base = "$SRC/configs/tiny.toml"
out_dir = "$WORK/exp"
set = ["train.steps=100000"]
[[runs]]
name = "a"
EOT
"$SY" experiment "$WORK/exp.toml" --quiet --no-report >/dev/null 2>&1 &
holder=$!
for _ in $(seq 1 200); do [[ -s $WORK/exp/a/metrics.jsonl ]] && break; sleep 0.05; done
fails_with "second experiment" "is in use by another switchyard process (experiment" \
  "$SY" experiment "$WORK/exp.toml" --quiet --no-report
kill -TERM "$holder"; wait "$holder"

# 6. Run directories that cannot work, and configs that cannot fit, fail before the first step.
fails_with "non-UTF-8 out_dir" "out_dir must be valid UTF-8" "$SY" train "${TINY[@]}" \
  --set "out_dir=$WORK/bad$(printf '\377')"
long="$WORK/$(printf 'd%.0s' $(seq 1 4060))"
fails_with "4,060-character out_dir" "out_dir must be shorter than" "$SY" train "${TINY[@]}" --set out_dir="$long"
if [[ $(id -u) -ne 0 ]]; then
  mkdir -p "$WORK/ro" && chmod a-w "$WORK/ro"
  fails_with "read-only out_dir" "must be writable" "$SY" train "${TINY[@]}" --set out_dir="$WORK/ro/run"
elif command -v setpriv >/dev/null; then
  mkdir -p "$WORK/ro" && chmod 755 "$WORK" "$WORK/ro"
  fails_with "read-only out_dir (as nobody)" "must be" setpriv --reuid=nobody --regid=nogroup --clear-groups \
    "$SY" train "${TINY[@]}" --set out_dir="$WORK/ro/run"
fi
fails_with "micro_batch 300000" "lower train.micro_batch" "$SY" train -c "$SRC/configs/small.toml" --quiet \
  --set train.micro_batch=300000 --set out_dir="$WORK/mem"
[[ ! -e $WORK/mem/metrics.jsonl ]] && ok || fail "the memory check runs before training"
# The estimate is close to what a run really uses (SMALL: printed estimate vs peak RSS). Not
# under AddressSanitizer (scripts/run-sanitizers.sh): its shadow memory and quarantine are RSS.
[[ -n ${ASAN_OPTIONS:-} ]] || /usr/bin/python3 - "$SY" "$SRC/configs/small.toml" "$WORK/rss" <<'PY' && ok || fail "memory estimate vs peak RSS"
import re, resource, subprocess, sys
sy, cfg, out = sys.argv[1:]
r = subprocess.run([sy, "train", "-c", cfg, "--set", "train.steps=2", "--set", "train.warmup_steps=1",
                    "--set", "train.eval_every=0", "--set", f"out_dir={out}"], capture_output=True, text=True)
assert r.returncode == 0, r.stderr
est = float(re.search(r"memory estimate ([0-9.]+) GB", r.stderr).group(1))
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6
assert 0.8 <= est / rss <= 1.25, f"estimate {est} GB vs peak RSS {rss:.3f} GB"
print(f"memory estimate {est} GB, peak RSS {rss:.3f} GB")
PY

# 7. A complete checkpoint written just before a kill (newer than `latest`) is found on resume.
succeeds "train 6 steps" "$SY" train "${TINY[@]}" --set train.steps=6 --set train.checkpoint_every=3 \
  --set out_dir="$WORK/late"
echo step_00000003 >"$WORK/late/checkpoints/latest"  # as if killed before the pointer moved
succeeds "resume finds step 6" "$SY" train -c "$SRC/configs/tiny.toml" --set train.steps=8 \
  --set train.checkpoint_every=3 --set out_dir="$WORK/late"
grep -q "resuming .* from step_00000006" "$WORK/out" && ok || fail "resumed from step_00000006"
steps_ok "$WORK/late" 8 && ok || fail "steps 1..8 once each"

# 5. Under mpirun: ranks with different configs or unshared run directories fail at once.
if command -v mpirun >/dev/null; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
  MPI=(timeout 120 mpirun --oversubscribe)
  R=(train "${TINY[@]}" --set system.threads=1 --set train.steps=4)
  "${MPI[@]}" -np 1 "$SY" "${R[@]}" --set out_dir="$WORK/m1" : -np 1 "$SY" "${R[@]}" --set out_dir="$WORK/m1" \
    --set model.d_expert=64 >"$WORK/out" 2>&1
  rc=$?
  [[ $rc -ne 0 && $rc -ne 124 ]] && grep -qF "must all train the same config" "$WORK/out" && ok \
    || fail "ranks with different d_expert (status $rc)"
  "${MPI[@]}" -np 1 "$SY" "${R[@]}" --set out_dir="$WORK/m2" : -np 1 "$SY" "${R[@]}" --set out_dir="$WORK/m2" \
    --set train.lr=0.01 >"$WORK/out" 2>&1
  rc=$?
  [[ $rc -ne 0 && $rc -ne 124 ]] && grep -qF "must all train the same config" "$WORK/out" && ok \
    || fail "ranks with different train.lr (status $rc)"
  # An unshared run directory: rank 1 runs in its own mount namespace with an empty tmpfs over
  # out_dir, as a rank on another machine with a local disk would see it.
  if [[ $(id -u) -eq 0 ]] && unshare -m true 2>/dev/null; then
    mkdir -p "$WORK/m3"
    "${MPI[@]}" -np 1 "$SY" "${R[@]}" --set out_dir="$WORK/m3" : -np 1 \
      unshare -m sh -c 'mount -t tmpfs none "$0" && exec "$@"' "$WORK/m3" "$SY" "${R[@]}" \
      --set out_dir="$WORK/m3" >"$WORK/out" 2>&1
    rc=$?
    [[ $rc -ne 0 && $rc -ne 124 ]] && grep -qF "every rank must see the run directory" "$WORK/out" && ok \
      || fail "ranks that do not share out_dir (status $rc)"
  fi
  "${MPI[@]}" -np 2 "$SY" "${R[@]}" --set out_dir="$WORK/m4" >"$WORK/out" 2>&1 && ok || fail "2 ranks, same config"
fi

echo "hardening_test: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
