#!/usr/bin/env bash
# Lints every tracked C++ file: clang-format (style in .clang-format) and clang-tidy (checks in
# .clang-tidy, any finding is an error). Exit code is non-zero if either finds anything.
# Usage: scripts/lint.sh [BUILD_DIR]   (default: build; its compile_commands.json is used and
#                                      created with `cmake -S . -B BUILD_DIR` if missing)
# Environment: LINT_JOBS  parallel clang-tidy processes (default 2)
set -euo pipefail
BUILD=${1:-build}
JOBS=${LINT_JOBS:-2}
cd "$(dirname "$0")/.."

for tool in clang-format clang-tidy; do
  if ! command -v "$tool" >/dev/null; then
    echo "lint: $tool not found; run scripts/install-deps.sh" >&2
    exit 1
  fi
done

status=0

# 1. Formatting.
mapfile -t sources < <(git ls-files '*.cc' '*.h')
unformatted=()
for f in "${sources[@]}"; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then unformatted+=("$f"); fi
done
if [ ${#unformatted[@]} -ne 0 ]; then
  echo "lint: ${#unformatted[@]} file(s) not clang-formatted:" >&2
  printf '  %s\n' "${unformatted[@]}" >&2
  echo "lint: run \`make format\` to fix them" >&2
  status=1
else
  echo "lint: clang-format: ${#sources[@]} files clean"
fi

# 2. clang-tidy over every translation unit, with the build's compile commands.
if [ ! -f "$BUILD/compile_commands.json" ]; then
  echo "lint: $BUILD/compile_commands.json missing; configuring"
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
mapfile -t units < <(git ls-files 'src/*.cc' 'apps/*.cc' 'tests/*.cc' 'bench/*.cc')
logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT
# The compile commands come from GCC: ignore GCC-only warning flags clang does not know.
# Each file's output goes to its own log so parallel runs do not interleave.
export BUILD logdir
printf '%s\n' "${units[@]}" | xargs -P "$JOBS" -I{} sh -c '
  log="$logdir/$(echo "$1" | tr / _).log"
  if ! clang-tidy -p "$BUILD" --quiet --extra-arg=-Wno-unknown-warning-option "$1" >"$log" 2>&1
  then touch "$log.failed"; fi' _ {}
failed=0
for u in "${units[@]}"; do
  log="$logdir/$(echo "$u" | tr / _).log"
  if [ -e "$log.failed" ]; then
    failed=$((failed + 1))
    grep -v -E '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$' "$log" >&2 || true
  fi
done
if [ "$failed" -ne 0 ]; then
  echo "lint: clang-tidy: findings in $failed of ${#units[@]} files (checks: .clang-tidy)" >&2
  status=1
else
  echo "lint: clang-tidy: ${#units[@]} files clean"
fi
exit $status
