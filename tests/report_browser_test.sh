#!/usr/bin/env bash
# `cnnviz report` in a real browser: runs Grad-CAM over three generated images
# (every feature layer, top 2 classes), writes the report and opens it from
# file:// in Debian's chromium, headless. Checks the rows and the count in the
# DOM the page's script built, unfiltered and filtered through the URL hash,
# that every thumbnail's relative src names a file, and takes a screenshot.
#
# usage: report_browser_test.sh CNNVIZ MODEL.pt PYTHON SCREENSHOT.png
# Fails (never skips) when chromium is missing; $CNNVIZ_CHROMIUM names another
# browser binary.
set -euo pipefail

[ $# -eq 4 ] || { echo "usage: $0 CNNVIZ MODEL.pt PYTHON SCREENSHOT.png" >&2; exit 2; }
cnnviz=$1 model=$2 python=$3 screenshot=$4

fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

browser=${CNNVIZ_CHROMIUM:-$(command -v chromium || true)}
[ -n "$browser" ] || fail "chromium is not installed, and this test needs it" \
  "(apt-get install --no-install-recommends chromium; scripts/test.sh installs it)"
[ -f "$model" ] || fail "$model missing: run the tests through ctest (fixture.export_models)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/in"

# Three images unlike each other, so that the random-weight model's second
# class differs between them.
"$python" - "$work/in" <<'EOF'
import sys
import numpy as np
from PIL import Image
h, w = 180, 240
y, x = np.mgrid[0:h, 0:w]
disc = (x - 120) ** 2 + (y - 90) ** 2 < 60 ** 2
cells = ((x // 30) + (y // 30)) % 2
images = {
    "gradient": np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 128)], -1),
    "disc": np.stack([np.where(disc, 230, 20), np.full_like(x, 90), np.where(disc, 20, 200)], -1),
    "checker": np.stack([cells * 255, np.zeros_like(x), cells * 128], -1),
}
for name, a in images.items():
    Image.fromarray(a.astype(np.uint8)).save(f"{sys.argv[1]}/{name}.png")
EOF

out="$work/out"
"$cnnviz" gradcam --all-layers --top 2 -m "$model" -o "$out" "$work"/in/*.png 2>"$work/gradcam.log" ||
  { cat "$work/gradcam.log" >&2; fail "cnnviz gradcam failed"; }
page=$("$cnnviz" report "$out") || fail "cnnviz report failed"
[ "$page" = "$out/index.html" ] || fail "cnnviz report printed '$page', not '$out/index.html'"

browse() {
  local profile
  profile=$(mktemp -d "$work/profile.XXXXXX")
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" "$@" \
    2>>"$work/chromium.log" || { tail -n 20 "$work/chromium.log" >&2; fail "chromium failed: $*"; }
}

# check.py DOM EXPECTED_VISIBLE [CLASS]: the DOM has one .row per manifest
# image, exactly the expected ones are visible, #count says so, and with CLASS
# the visible rows show no other class's maps.
cat >"$work/check.py" <<'EOF'
import json, os, sys, urllib.parse
from html.parser import HTMLParser

dom_path, out, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
cls = sys.argv[4] if len(sys.argv) > 4 else None
manifest = json.load(open(os.path.join(out, "manifest.json")))

class Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.imgs, self.stack, self.count, self.in_count = [], [], [], None, False
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "section" and "row" in classes:
            self.rows.append({"hidden": "hidden" in a, "classes": a.get("data-classes", "").split(),
                              "methods": a.get("data-methods", "").split(), "groups": []})
        elif "group" in classes and self.rows:
            self.rows[-1]["groups"].append((a.get("data-class"), "hidden" in a))
        elif tag == "img":
            self.imgs.append(a.get("src"))
        self.in_count = a.get("id") == "count"
    def handle_data(self, data):
        if self.in_count:
            self.count = (self.count or "") + data
    def handle_endtag(self, tag):
        self.in_count = False

dom = Dom()
dom.feed(open(dom_path, encoding="utf-8").read())
errors = []
images = manifest["images"]
if len(dom.rows) != len(images):
    errors.append(f"{len(dom.rows)} rows, manifest has {len(images)} images")
visible = [r for r in dom.rows if not r["hidden"]]
want_count = f"{expected} of {len(images)} images"
if len(visible) != expected:
    errors.append(f"{len(visible)} rows visible, expected {expected}")
if (dom.count or "").strip() != want_count:
    errors.append(f"#count says {dom.count!r}, expected {want_count!r}")
for row, image in zip(dom.rows, images):
    targets = sorted(str(t["class"]) for t in image.get("targets", []))
    if sorted(row["classes"]) != targets:
        errors.append(f"data-classes {row['classes']} of {image['image']}, targets {targets}")
    if row["methods"] != [manifest["method"]]:
        errors.append(f"data-methods {row['methods']} of {image['image']}")
    if cls is not None and row["hidden"] == (cls in targets):
        errors.append(f"{image['image']} (targets {targets}) hidden={row['hidden']} for class {cls}")
    if cls is not None and not row["hidden"]:
        shown = {c for c, hidden in row["groups"] if not hidden}
        if shown != {cls}:
            errors.append(f"{image['image']} shows the maps of classes {sorted(shown)}")
# Each image opens on its contact sheet, then the deepest layer's overlay.
maps = [urllib.parse.unquote(s) for s in dom.imgs if s and manifest["method"] + "_" in s]
deepest = manifest["layers"][-1]
if len(maps) < 2 or "_contact" not in maps[0] or f"_{deepest}_" not in maps[1] \
        or not maps[1].endswith("_overlay.png"):
    errors.append(f"the first maps are {maps[:2]}, not the contact sheet and {deepest}'s overlay")
pngs = sum(f["format"] == "png" for i in images for f in i.get("files", []))
if len(dom.imgs) < pngs:
    errors.append(f"{len(dom.imgs)} <img>, the manifest lists {pngs} PNGs")
for src in dom.imgs:
    if not src or "://" in src or src.startswith("/"):
        errors.append(f"img src {src!r} is not relative")
    elif not os.path.isfile(os.path.join(out, urllib.parse.unquote(src))):
        errors.append(f"img src {src!r} names no file")
if errors:
    print("\n".join(sorted(set(errors))[:20]), file=sys.stderr)
    sys.exit(1)
print(f"ok: {len(dom.rows)} rows, {len(visible)} visible, #count '{dom.count}', {len(dom.imgs)} img")
EOF

check() {  # NAME URL_SUFFIX EXPECTED_VISIBLE [CLASS]
  local name=$1 suffix=$2
  shift 2
  browse --dump-dom "file://$page$suffix" >"$work/$name.html"
  printf '%s: ' "$name"
  "$python" "$work/check.py" "$work/$name.html" "$out" "$@" ||
    fail "$name (file://$page$suffix): the DOM is not as expected"
}

check all "" 3

# A class among one image's targets only (each image's second class differs).
only=$("$python" - "$out/manifest.json" <<'EOF'
import collections, json, sys
doc = json.load(open(sys.argv[1]))
seen = collections.Counter(t["class"] for i in doc["images"] for t in i.get("targets", []))
print(min((c for c, n in seen.items() if n == 1), default=""))
EOF
)
[ -n "$only" ] || fail "every target class is shared by two images: the filter test needs one" \
  "that is not (change the generated images)"
check "class-$only" "#class=$only" 1 "$only"
first=$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["images"][0]["dir"])' \
  "$out/manifest.json")
check "name-$first" "#method=gradcam&q=$first" 1
check method-absent "#method=saliency" 0

rm -f "$screenshot"
browse --screenshot="$screenshot" --window-size=1400,1000 --hide-scrollbars \
  --virtual-time-budget=5000 "file://$page"
[ -s "$screenshot" ] || fail "no screenshot written to $screenshot"
echo "screenshot: $screenshot"
