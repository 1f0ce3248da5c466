#!/usr/bin/env bash
# The experiment report in a real browser: headless Chromium (Debian's `chromium`) opens the
# index.html of a small two-arm, two-seed experiment, makes a screenshot, and the page's DOM after
# loading must hold the summary tables and no broken image (every <img> decoded, naturalWidth > 0).
# A page with a missing image is checked the same way and must be caught. Chromium missing is a
# failure, not a skip: scripts/install-deps.sh installs it.
# Usage: tests/report_browser_test.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "${1:?usage: report_browser_test.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
SY="$BUILD/switchyard"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [[ -z "$CHROMIUM" ]]; then
  echo "FAIL: chromium not found: this test needs Debian's chromium (scripts/install-deps.sh installs it)"
  exit 1
fi
source "$SRC/tests/lib.sh"  # check, fails_with, finish
# chromium ARGS... URL: headless, as root, no network, a fresh profile each time.
chromium_run() {
  local profile
  profile=$(mktemp -d "$WORK/profile.XXXX")
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" "$@"
}

cat >"$WORK/exp.toml" <<EOT
description = "browser test: two scopes, two seeds"
claim = "none"
base = "$SRC/configs/tiny.toml"
out_dir = "$WORK/exp"
seeds = 2
set = ["train.steps=6", "train.warmup_steps=1", "train.eval_every=3", "train.checkpoint_every=0"]
[[runs]]
name = "micro"
[[runs]]
name = "global"
set = ["balance.terms.0.scope=global", "train.grad_accum=2", "train.micro_batch=2"]
[[claims]]
metric = "final_loss"
better = "lower"
arm = "global"
EOT
check "experiment" "$SY" experiment "$WORK/exp.toml" --quiet
REPORT="$WORK/exp/report"
check "report written" test -s "$REPORT/index.html"

check "screenshot" chromium_run --screenshot="$WORK/shot.png" --window-size=1200,2000 "file://$REPORT/index.html"
check "the screenshot is a 1200 x 2000 PNG" /usr/bin/python3 -c "
import struct, sys
data = open('$WORK/shot.png', 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
w, h = struct.unpack('>II', data[16:24])
assert (w, h) == (1200, 2000), (w, h)
assert len(data) > 20000, f'{len(data)} bytes: a blank page?'
"

# The page as loaded, with a probe appended that records what the browser made of it.
probe='<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const out = document.createElement("pre");
  out.id = "sy-probe";
  out.textContent = JSON.stringify({
    images: imgs.length,
    broken: imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute("src")),
    tables: Array.from(document.querySelectorAll("table")).map(t => t.id),
    summary_rows: document.querySelectorAll("#summary tr").length,
    verdicts: Array.from(document.querySelectorAll("#claims td")).map(t => t.className).filter(c => c)});
  document.body.appendChild(out);
});
</script>'
PROBE="$probe" /usr/bin/python3 -c "
import os, sys
page = open(sys.argv[1], encoding='utf-8').read()
assert page.count('</body>') == 1
probe = os.environ['PROBE']
open(sys.argv[2], 'w', encoding='utf-8').write(page.replace('</body>', probe + '</body>'))
open(sys.argv[3], 'w', encoding='utf-8').write(page.replace('</body>', '<img src=\"missing.png\" alt=\"x\">' + probe + '</body>'))
" "$REPORT/index.html" "$REPORT/probe.html" "$REPORT/broken.html"
for page in probe broken; do
  chromium_run --dump-dom --virtual-time-budget=10000 "file://$REPORT/$page.html" >"$WORK/$page.dom" 2>"$WORK/$page.err"
done
check "the loaded page has the tables and no broken image" /usr/bin/python3 - "$WORK/probe.dom" "$WORK/broken.dom" <<'EOF'
import html, json, re, sys

def probe(path):
    m = re.search(r'<pre id="sy-probe">(.*?)</pre>', open(path, encoding="utf-8").read(), re.S)
    assert m, f"{path}: the probe did not run (no #sy-probe in the DOM)"
    return json.loads(html.unescape(m.group(1)))

p = probe(sys.argv[1])
print("page:", p)
assert p["images"] >= 5, f"{p['images']} images"
assert p["broken"] == [], f"broken images: {p['broken']}"
for t in ("summary", "claims", "stats", "paired"):
    assert t in p["tables"], f"no table #{t}"
assert p["summary_rows"] == 1 + 4, f"#summary has {p['summary_rows']} rows, want a header and 4 runs"
assert len(p["verdicts"]) == 1 and p["verdicts"][0] in ("supported", "contradicted", "unresolved"), p["verdicts"]
b = probe(sys.argv[2])
assert b["broken"] == ["missing.png"], f"the control page's missing image was not caught: {b['broken']}"
EOF
cat "$WORK/out"

finish report_browser_test
