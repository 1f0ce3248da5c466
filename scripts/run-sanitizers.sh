#!/usr/bin/env bash
# The sanitizer runs of `make test` and `make sanitize` (docs/testing.md, "Sanitizers"). Exit code
# is non-zero on any failed test and on any sanitizer report.
#
#   address  gcc, AddressSanitizer + UndefinedBehaviorSanitizer + LeakSanitizer: builds
#            ASAN_BUILD (default build-asan) at -O1 -g1 with SY_DCHECKs on and no benchmarks,
#            runs every CTest test there that runs code we compile.
#   thread   clang, ThreadSanitizer with LLVM's OpenMP runtime and its Archer tool: builds the
#            kernel, routing and MoE suites in TSAN_BUILD (default build-tsan), runs them on
#            2 OpenMP threads.
#
# Usage: scripts/run-sanitizers.sh [address|thread|all]   (default all)
# Environment: JOBS (compile jobs, default 2), SY_BUILD_LOCK (default /tmp/sy-build.lock),
#   SANITIZE_MPI_E2E=1 adds mpi_end_to_end (about 4 minutes under ASan).
set -euo pipefail
MODE=${1:-all}
case "$MODE" in
  address | thread | all) ;;
  *) echo "usage: scripts/run-sanitizers.sh [address|thread|all]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
SRC=$PWD
LOCK=${SY_BUILD_LOCK:-/tmp/sy-build.lock}
JOBS=${JOBS:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
status=0
summary=()

# Builds and test runs hold the build lock, so that no two builds share the cores; the times
# printed at the end do not count the wait for it.
exec 9>>"$LOCK"
waited=0
lock() {
  local t=$SECONDS
  flock 9
  waited=$((waited + SECONDS - t))
}
unlock() { flock -u 9; }

run_address() {
  local build=${ASAN_BUILD:-build-asan} t0
  # Debug keeps SY_DCHECK (no NDEBUG); -O1 keeps the suite about as fast as Release's; -g1 (line
  # tables only) gives reports file:line for less compile time than -g.
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="${SANITIZE_OPT:--O1} -g1" \
    -DSY_SANITIZE=address,undefined -DSY_BUILD_BENCH=OFF >/dev/null
  lock
  t0=$SECONDS
  cmake --build "$build" -j "$JOBS"
  summary+=("ASan+UBSan build $((SECONDS - t0)) s")

  # ASan and LSan reports are written to files in $logs as well as ending the process: a report
  # in a process whose exit status a test does not look at (a child of a script, a command
  # expected to fail) still fails the run. UBSan ignores log_path in gcc 12's combined runtime;
  # its reports end the process (-fno-sanitize-recover, exitcode 86) and are looked for in
  # CTest's log.
  local logs=$TMP/asan-logs
  mkdir -p "$logs"
  # halt_on_error + exitcode 86: the first report ends the process with a status no test expects.
  # detect_leaks: LeakSanitizer at exit; tests/sanitizers/lsan.supp lists the libraries we do not
  # build that leak by design (Open MPI), each with its reason.
  local asan="halt_on_error=1:exitcode=86:detect_leaks=1:strict_string_checks=1"
  asan="$asan:detect_stack_use_after_return=1:check_initialization_order=1:log_path=$logs/asan"
  export ASAN_OPTIONS=$asan
  export UBSAN_OPTIONS="halt_on_error=1:exitcode=86:print_stacktrace=1"
  export LSAN_OPTIONS="suppressions=$SRC/tests/sanitizers/lsan.supp:print_suppressions=0"

  # Open MPI's ranks: the suppressions match a module anywhere in the allocation's stack, and
  # Open MPI is built without frame pointers, so its ranks need the slow unwinder
  # (fast_unwind_on_malloc=0), which would slow every allocation of the suite. The end-to-end
  # scripts call `mpirun` from PATH: this wrapper gives that option to the ranks it starts only.
  mkdir -p "$TMP/bin"
  printf '#!/bin/sh\nASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0" exec %s "$@"\n' \
    "$(command -v mpirun)" >"$TMP/bin/mpirun"
  chmod +x "$TMP/bin/mpirun"

  # Not run (docs/testing.md says why): the tests of Python code alone (nothing of ours is
  # compiled into them; sanitizing python3 and torch would need libasan LD_PRELOADed into them),
  # the report in Chromium (the page scripts/report.py writes), experiment_quick (its subject is
  # the statistics in Python; `switchyard experiment` runs under the sanitizers in
  # cli_end_to_end and ExperimentTest), and mpi_end_to_end unless SANITIZE_MPI_E2E=1.
  # signals_end_to_end runs below with fewer tries.
  local skip='torch_ref_selftest|corpus_extractors|run_report|experiment_stats|report_browser'
  skip="$skip|experiment_quick|mpi_end_to_end|signals_end_to_end|sy_dist_test_.*"
  local t1=$SECONDS
  PATH="$TMP/bin:$PATH" ctest --test-dir "$build" --output-on-failure -j 1 --timeout 900 \
    -E "^($skip)\$" || status=1
  if grep -q "runtime error:" "$build/Testing/Temporary/LastTest.log"; then status=1; fi
  # The communicator's tests run /usr/bin/mpirun by the full path CMake found: the slow unwinder
  # for the whole test instead.
  local mpi='sy_dist_test_.*'
  if [ "${SANITIZE_MPI_E2E:-0}" = 1 ]; then mpi="$mpi|mpi_end_to_end"; fi
  ASAN_OPTIONS="$asan:fast_unwind_on_malloc=0" ctest --test-dir "$build" --output-on-failure \
    -j 1 --timeout 900 -R "^($mpi)\$" || status=1
  if grep -q "runtime error:" "$build/Testing/Temporary/LastTest.log"; then status=1; fi
  # Stop signals at random moments: 8 tries and 2 under mpirun (CTest's run has 16 and 4).
  PATH="$TMP/bin:$PATH" tests/signal_test.sh "$build" 8 2 >"$TMP/signals.log" 2>&1 \
    || { status=1; cat "$TMP/signals.log"; }
  if grep -q "runtime error:" "$TMP/signals.log"; then status=1; cat "$TMP/signals.log"; fi
  unlock
  summary+=("ASan+UBSan tests $((SECONDS - t1)) s")

  shopt -s nullglob
  local reports=("$logs"/*)
  if [ ${#reports[@]} -ne 0 ]; then
    echo "sanitizers: ${#reports[@]} ASan/LSan report(s):" >&2
    for r in "${reports[@]}"; do echo "== $r" >&2; cat "$r" >&2; done
    status=1
  fi
  unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
}

run_thread() {
  local build=${TSAN_BUILD:-build-tsan} t0
  local llvm=/usr/lib/llvm-14/lib
  # gcc's TSan cannot see libgomp's barriers (libgomp is not instrumented and synchronises with
  # futexes), so every parallel loop is a false race. LLVM's libomp with Archer tells TSan what
  # OpenMP's barriers, locks and tasks order. -Wno-pass-failed: at -O1 clang cannot vectorise some
  # `omp simd` loops and says so.
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" -DCMAKE_CXX_FLAGS=-Wno-pass-failed -DSY_SANITIZE=thread \
    -DSY_BUILD_BENCH=OFF >/dev/null
  local suites=(src/kernels/sy_kernels_test src/routing/sy_routing_test src/moe/sy_moe_test)
  lock
  t0=$SECONDS
  cmake --build "$build" -j "$JOBS" --target "${suites[@]##*/}"
  summary+=("TSan build $((SECONDS - t0)) s")

  # oneDNN and OpenBLAS link libgomp: with it loaded beside libomp there would be two thread
  # pools, and libgomp's invisible to TSan. LLVM's libomp implements libgomp's ABI, so it stands
  # in for libgomp.so.1 here and all OpenMP in the process is one libomp pool.
  mkdir -p "$build/omp-shim"
  ln -sf "$llvm/libomp.so.5" "$build/omp-shim/libgomp.so.1"
  local t1=$SECONDS s
  for s in "${suites[@]}"; do
    # ignore_noninstrumented_modules: accesses inside libomp, oneDNN and OpenBLAS are not ours
    # (and not instrumented); Archer's documentation asks for it.
    LD_LIBRARY_PATH="$SRC/$build/omp-shim" OMP_TOOL_LIBRARIES="$llvm/libarcher.so" \
      TSAN_OPTIONS="halt_on_error=1:exitcode=66:ignore_noninstrumented_modules=1" \
      "$build/$s" --gtest_brief=1 || status=1
  done
  unlock
  summary+=("TSan tests $((SECONDS - t1)) s")
}

if [ "$MODE" != thread ]; then run_address; fi
if [ "$MODE" != address ]; then run_thread; fi
summary+=("waited ${waited} s for the build lock")
echo "sanitizers: $(IFS=,; echo "${summary[*]}" | sed 's/,/, /g'); status $status"
exit "$status"
