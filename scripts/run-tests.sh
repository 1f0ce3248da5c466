#!/usr/bin/env bash
# Runs every test: the C++ suites through CTest (GoogleTest binaries, the Python reference tests
# registered beside them). Exit code is non-zero if anything failed.
set -euo pipefail
BUILD=${1:-build}
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
ctest --test-dir "$BUILD" --output-on-failure -j 1 --timeout 900
