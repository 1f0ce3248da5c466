#!/usr/bin/env bash
# A run written by one user is usable by another: root trains, then the unprivileged user `nobody`
# evaluates a checkpoint and resumes a copy of the run. Regression: checkpoint files were created
# with whatever mode open(O_CREAT) found on the stack (`latest` -rwsr-Sr-T, manifest.json
# ---x--x---), so another user got "manifest is corrupt". Needs root (to become nobody); exits 77
# (skipped) otherwise.
# Usage: tests/nonroot_test.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "${1:?usage: nonroot_test.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
SY="$BUILD/switchyard"
if [[ $(id -u) -ne 0 ]]; then
  echo "SKIP: nonroot_test.sh must run as root to act as the unprivileged user nobody"
  exit 77
fi
if ! id nobody >/dev/null 2>&1 || ! command -v setpriv >/dev/null; then
  echo "SKIP: needs the user nobody and setpriv (util-linux)"
  exit 77
fi
umask 022
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"  # mktemp -d makes it 0700
NB_GROUP=$(id -gn nobody)
as_nobody() { setpriv --reuid=nobody --regid="$NB_GROUP" --clear-groups env HOME="$WORK/nb" "$@"; }
source "$SRC/tests/lib.sh"  # check, fails_with, finish
none_found() { [[ -z "$(find "$@" -print -quit)" ]]; }  # none_found DIR TESTS...: no match

check "train as root" "$SY" train -c "$SRC/configs/tiny.toml" --set out_dir="$WORK/run" \
  --set train.steps=2 --quiet
check "checkpoint written" test -s "$WORK/run/checkpoints/step_00000002/manifest.json"
check "no setuid, setgid or sticky bits" none_found "$WORK/run" -perm /7000
check "files are 0644" none_found "$WORK/run" -type f ! -perm 0644
check "directories are 0755" none_found "$WORK/run" -type d ! -perm 0755

mkdir "$WORK/nb" && chown nobody:"$NB_GROUP" "$WORK/nb"
check "nobody reads the checkpoint" as_nobody cat "$WORK/run/checkpoints/latest" \
  "$WORK/run/checkpoints/step_00000002/manifest.json"
check "eval as nobody" as_nobody "$SY" eval --checkpoint "$WORK/run/checkpoints/step_00000002"
check "eval prints perplexity" grep -q '"perplexity"' "$WORK/out"
check "nobody copies the run" as_nobody cp -r "$WORK/run" "$WORK/nb/run"
check "resume as nobody" as_nobody "$SY" train -c "$SRC/configs/tiny.toml" \
  --set out_dir="$WORK/nb/run" --set train.steps=4 --quiet
check "resumed to 4 steps" test "$(grep -c '"type":"train"' "$WORK/nb/run/metrics.jsonl")" -eq 4
check "resumed checkpoint written" test -s "$WORK/nb/run/checkpoints/step_00000004/manifest.json"

finish nonroot_test
