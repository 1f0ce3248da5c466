# The assertions the end-to-end scripts share (tests/*_test.sh). Source it after setting WORK (a
# scratch directory the script removes on exit): each assertion counts into `passed` and `failed`
# and leaves the command's output in $WORK/out; `finish NAME` prints the counts and returns
# non-zero if anything failed.
passed=0
failed=0
check() {  # check NAME COMMAND...: the command must succeed
  local name=$1; shift
  if "$@" >"$WORK/log" 2>&1; then passed=$((passed + 1)); else
    failed=$((failed + 1)); echo "FAIL: $name"; cat "$WORK/log"; fi
  cp "$WORK/log" "$WORK/out"  # after the command: it may read the previous command's output
}
fails_with() {  # fails_with NAME TEXT COMMAND...: exit status 1 and TEXT in the output
  local name=$1 text=$2; shift 2
  "$@" >"$WORK/out" 2>&1
  local rc=$?
  if [[ $rc -eq 1 ]] && grep -qF -- "$text" "$WORK/out"; then passed=$((passed + 1)); else
    failed=$((failed + 1)); echo "FAIL: $name (status $rc, wanted 1 and \"$text\")"; cat "$WORK/out"; fi
}
finish() {  # finish NAME: the counts; status 0 only if nothing failed
  echo "$1: $passed passed, $failed failed"
  [[ $failed -eq 0 ]]
}
