#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang, ASan + UBSan) in FUZZ_BUILD and runs them
# (docs/testing.md, "Fuzzing"). Exit code is non-zero on any crash, sanitizer report, leak,
# timeout, out-of-memory or escaped exception, and on any input in fuzz/regressions/ that fails.
#
#   scripts/fuzz.sh smoke [TARGET...]   CI (`make test`): replay fuzz/regressions/, then fuzz each
#                                       target FUZZ_SECONDS (default 10) from the committed seeds,
#                                       FUZZ_JOBS (default 2) targets at a time; new inputs are
#                                       thrown away.
#   scripts/fuzz.sh long [TARGET...]    `make fuzz`: FUZZ_SECONDS (default 600) per target, one at a
#                                       time unless FUZZ_JOBS says otherwise; the corpus grows in
#                                       FUZZ_BUILD/corpus/<target>/ (not in git) and is kept for the
#                                       next run.
#
# A crash leaves its input in FUZZ_BUILD/artifacts/<target>/; reproduce it with
#   FUZZ_BUILD/fuzz/<target>_fuzz <file>
# Environment: FUZZ_BUILD (default build-fuzz), FUZZ_SECONDS, FUZZ_JOBS, JOBS (compile jobs,
# default 2), SY_BUILD_LOCK (default /tmp/sy-build.lock), CC/CXX (default clang/clang++).
set -euo pipefail
MODE=${1:-}
case "$MODE" in
  smoke) SECONDS_PER=${FUZZ_SECONDS:-10}; PAR=${FUZZ_JOBS:-2} ;;
  long) SECONDS_PER=${FUZZ_SECONDS:-600}; PAR=${FUZZ_JOBS:-1} ;;
  *) echo "usage: scripts/fuzz.sh smoke|long [TARGET...]" >&2; exit 2 ;;
esac
shift
cd "$(dirname "$0")/.."
SRC=$PWD
BUILD=${FUZZ_BUILD:-build-fuzz}
LOCK=${SY_BUILD_LOCK:-/tmp/sy-build.lock}

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz/*_fuzz.cc; do t=${f#fuzz/}; targets+=("${t%_fuzz.cc}"); done
fi

t0=$SECONDS
# -O1 -g1 as the sanitizer build: line tables for the reports at a fraction of -g's compile time.
# Tests and benchmarks off; the sy_fuzzers target builds only the libraries the fuzzers link.
CC=${CC:-clang} CXX=${CXX:-clang++} cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" -DSY_SANITIZE=address,undefined -DSY_FUZZ=ON \
  -DSY_BUILD_TESTS=OFF -DSY_BUILD_BENCH=OFF >/dev/null
build_targets=()
for t in "${targets[@]}"; do build_targets+=(--target "${t}_fuzz"); done
# One build at a time on a shared machine: wait for the lock, and say how long that took.
exec 9>"$LOCK"
t_lock=$SECONDS
flock 9
t_wait=$((SECONDS - t_lock))
cmake --build "$BUILD" -j "${JOBS:-2}" "${build_targets[@]}" >"$BUILD/fuzz-build.log" \
  || { cat "$BUILD/fuzz-build.log" >&2; exit 1; }
flock -u 9
exec 9>&-
t_build=$((SECONDS - t0 - t_wait))

export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:strict_string_checks=1:\
detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export OMP_NUM_THREADS=1
LOGS="$BUILD/fuzz-logs/$MODE"  # per mode: a smoke run beside a long one leaves its logs alone
rm -rf "$LOGS"
mkdir -p "$LOGS"

dict_of() {
  case "$1" in
    safetensors | manifest | trainer_state | metrics_log) echo "fuzz/json.dict" ;;
    run_config | set_override | experiment) echo "fuzz/toml.dict" ;;
    indexed_dataset) echo "fuzz/idx.dict" ;;
  esac
}
max_len_of() {
  case "$1" in
    safetensors) echo 16384 ;;  # the seed checkpoint's model.safetensors is 11 KB
    set_override) echo 1024 ;;  # "did you mean" costs O(key length) per known key
    *) echo 4096 ;;
  esac
}

# run_target NAME: replays NAME's regressions, then fuzzes it; writes $LOGS/NAME.{log,result}.
run_target() {
  local t=$1
  local bin="$BUILD/fuzz/${t}_fuzz" log="$LOGS/$t.log" art="$BUILD/artifacts/$t/"
  local start=$SECONDS status=0 corpus
  mkdir -p "$art"
  : >"$log"
  shopt -s nullglob
  local regressions=("fuzz/regressions/$t"/*)
  if [ ${#regressions[@]} -gt 0 ]; then
    "$bin" -runs=1 "${regressions[@]}" >>"$log" 2>&1 || status=1
  fi
  if [ "$MODE" = long ]; then
    corpus="$BUILD/corpus/$t"
    mkdir -p "$corpus"
  else
    corpus=$(mktemp -d)  # new inputs of a 10 s run are not worth keeping
  fi
  local dict opts=()
  dict=$(dict_of "$t")
  [ -n "$dict" ] && opts+=("-dict=$dict")
  if [ $status -eq 0 ]; then
    "$bin" "${opts[@]}" -max_total_time="$SECONDS_PER" -max_len="$(max_len_of "$t")" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art" \
      "$corpus" "fuzz/corpus/$t" >>"$log" 2>&1 || status=1
  fi
  [ "$MODE" = long ] || rm -rf "$corpus"
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  echo "$t ${execs:-0} $((SECONDS - start)) $status" >"$LOGS/$t.result"
}
export -f run_target dict_of max_len_of
export MODE BUILD LOGS SECONDS_PER

t1=$SECONDS
printf '%s\n' "${targets[@]}" | xargs -P "$PAR" -I{} bash -c 'run_target {}'
t_run=$((SECONDS - t1))

failed=0
for t in "${targets[@]}"; do
  read -r name execs secs status <"$LOGS/$t.result"
  if [ "$status" -eq 0 ]; then
    printf 'fuzz: %-16s ok    %9s execs in %3ss\n' "$name" "$execs" "$secs"
  else
    failed=$((failed + 1))
    printf 'fuzz: %-16s FAIL  %9s execs in %3ss; log %s\n' "$name" "$execs" "$secs" "$LOGS/$t.log"
    grep -E -A14 '^==[0-9]+==|ERROR: libFuzzer|terminate called|runtime error|property violated|Test unit written' \
      "$LOGS/$t.log" | cut -c1-240 | head -40 >&2 || true
  fi
done
echo "fuzz: $MODE: ${#targets[@]} targets, $failed failed; build ${t_build}s (after ${t_wait}s" \
  "waiting for $LOCK), runs ${t_run}s"
[ "$failed" -eq 0 ]
