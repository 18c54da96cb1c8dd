#!/usr/bin/env bash
# cnnviz as a user installs it: `cmake --install` into a temporary prefix,
# then the installed binary run from an unrelated directory, with HOME and
# XDG_* in temporary directories:
#  - the layout (binary, cnnviz-export, man page, completions, docs);
#  - --version; a model found by name in the user data directory, and
#    `cnnviz models` (table, --names, --json) saying where it looked;
#  - the config file: its settings used, the environment and the command line
#    above it, an unknown key or a bad value refused naming the key and file;
#  - the bash completion loads and completes subcommands, options and model
#    names; the zsh one parses; the man page renders;
#  - classify/layers/models --json and a run's manifest and journal against
#    schemas/ (and a broken document is refused, so the check can fail);
#  - cnnviz-export writes to the user data directory by default.
#
# usage: install_test.sh BUILD_DIR MODEL.pt PYTHON
set -euo pipefail

[ $# -eq 3 ] || { echo "usage: $0 BUILD_DIR MODEL.pt PYTHON" >&2; exit 2; }
build=$(cd "$1" && pwd) model=$(realpath "$2") python=$3
src=$(cd "$(dirname "$0")/.." && pwd)

fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
expect() { # DESCRIPTION EXIT_CODE COMMAND...: runs it, checks the code; output in $out/$err
  local what=$1 want=$2 got=0
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err" || got=$?
  out=$(cat "$tmp/out") err=$(cat "$tmp/err")
  [ "$got" -eq "$want" ] || fail "$what: exit $got, expected $want; stderr: $err"
}
contains() { [[ $1 == *"$2"* ]] || fail "$3: '$2' not in: ${1:0:600}"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null

for f in bin/cnnviz bin/cnnviz-export share/cnnviz/scripts/export_models.py \
  share/cnnviz/scripts/cnnviz_python.py share/cnnviz/scripts/torchvision_detectors.py \
  share/man/man1/cnnviz.1 \
  share/bash-completion/completions/cnnviz share/zsh/vendor-completions/_cnnviz \
  share/doc/cnnviz/README.md share/doc/cnnviz/LICENSE share/doc/cnnviz/docs/guide.md; do
  [ -f "$prefix/$f" ] || fail "cmake --install did not write $f"
done
[ -x "$prefix/bin/cnnviz-export" ] || fail "bin/cnnviz-export is not executable"

# A user's machine: nothing of the source tree, the build or the developer.
mkdir -p "$tmp/home" "$tmp/elsewhere" "$tmp/data/cnnviz/models" "$tmp/config/cnnviz"
export HOME=$tmp/home XDG_DATA_HOME=$tmp/data XDG_CONFIG_HOME=$tmp/config
unset CNNVIZ_MODEL CNNVIZ_MODELS CNNVIZ_DEVICE
cd "$tmp/elsewhere"
cnnviz=$prefix/bin/cnnviz
image=$tmp/elsewhere/cat.png
"$python" -c 'import numpy as np, PIL.Image as I; r = np.random.default_rng(0)
I.fromarray(r.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save("cat.png")'

expect "--version" 0 "$cnnviz" --version
contains "$out" "cnnviz $(sed -n 's/.*kVersion = "\(.*\)".*/\1/p' "$src/include/cnnviz/core/version.h")" "--version"
for word in LibTorch BLAS OpenCV CUDA "build type"; do contains "$out" "$word" "--version"; done

expect "a model name with no models anywhere" 4 "$cnnviz" classify -m squeezenet1_1 "$image"
contains "$err" "$tmp/data/cnnviz/models" "the not-found message names the user directory"
contains "$err" "$prefix/share/cnnviz/models" "the not-found message names the prefix's directory"
[[ $err != *"$src/models"* ]] || fail "an installed binary must not search the source tree: $err"

cp "$model" "$tmp/data/cnnviz/models/squeezenet1_1.pt"
expect "classify by name from the user data directory" 0 "$cnnviz" classify -q -m squeezenet1_1 "$image"
contains "$out" "$image" "classify output"

expect "cnnviz models" 0 "$cnnviz" models
contains "$out" "user data directory" "models: where it looked"
contains "$out" "$tmp/data/cnnviz/models/squeezenet1_1.pt" "models: the model's path"
contains "$out" "squeezenet1_1" "models: the architecture"
contains "$out" "random" "models: the weights kind"
contains "$out" "1000" "models: the classes"
expect "cnnviz models --names" 0 "$cnnviz" models --names
[ "$out" = squeezenet1_1 ] || fail "models --names: '$out'"

json=$tmp/json
mkdir -p "$json"
"$cnnviz" models --json >"$json/models.json"
"$cnnviz" classify --json -m squeezenet1_1 "$image" >"$json/classify.json" 2>/dev/null
"$cnnviz" layers --json -m squeezenet1_1 >"$json/layers.json" 2>/dev/null
"$cnnviz" saliency -q -m squeezenet1_1 -o "$tmp/run" "$image"
cp "$tmp/run/manifest.json" "$tmp/run/journal.jsonl" "$json/"
expect "the outputs match schemas/" 0 "$python" "$src/tests/validate_json.py" "$src/schemas" \
  "$json" --require classify,layers,models,manifest,journal
"$python" - "$json/classify.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["results"][0]["predictions"][0]["probability"] = "high"
json.dump(doc, open(sys.argv[1].replace(".json", "-broken.json"), "w"))
EOF
expect "a broken document is refused" 1 "$python" "$src/tests/validate_json.py" "$src/schemas" \
  "$json/classify-broken.json" --require ''
contains "$out" "probability" "the schema problem names the field"

# The config file: below the environment, below the command line.
cat >"$tmp/config/cnnviz/config.toml" <<'EOF'
# cnnviz defaults
model = "squeezenet1_1"
threads = 1

[classify]
top-k = 2
EOF
expect "classify with the config's model and top-k" 0 "$cnnviz" classify "$image"
[ "$(grep -cE '^ +[0-9]+ +[0-9]\.[0-9]+ ' <<<"$out" || true)" -eq 2 ] || fail "config top-k = 2 not used: $out"
expect "the environment over the config" 4 env CNNVIZ_MODEL=resnet9000 "$cnnviz" classify "$image"
contains "$err" "resnet9000" "the environment's model is the one looked for"
expect "the command line over the environment" 0 \
  env CNNVIZ_MODEL=resnet9000 "$cnnviz" classify -m squeezenet1_1 -k 3 "$image"
[ "$(grep -cE '^ +[0-9]+ +[0-9]\.[0-9]+ ' <<<"$out" || true)" -eq 3 ] || fail "-k 3 not used over the config: $out"
printf 'model = "squeezenet1_1"\ncolormap = "magma"\n[gradcam]\nall-layers = true\n' >"$tmp/run.toml"
expect "gradcam with a config's all-layers and colormap" 0 \
  "$cnnviz" gradcam -q --config "$tmp/run.toml" --write npy -o "$tmp/all" "$image"
"$python" -c 'import json, sys; d = json.load(open(sys.argv[1]))
assert len(d["layers"]) == 13 and d["options"]["colormap"] == "magma", (d["layers"], d["options"])' \
  "$tmp/all/manifest.json" || fail "the config's all-layers or colormap was not used"
expect "--layer over the config's all-layers (they exclude each other)" 0 \
  "$cnnviz" gradcam -q --config "$tmp/run.toml" --layer features.12 --write npy -o "$tmp/one" "$image"
"$python" -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["layers"] == ["features.12"], d["layers"]' \
  "$tmp/one/manifest.json" || fail "--layer on the command line did not win over the config"
printf 'model = "squeezenet1_1"\ncolourmap = "jet"\n' >"$tmp/bad.toml"
expect "an unknown key" 2 "$cnnviz" classify --config "$tmp/bad.toml" "$image"
contains "$err" "config file '$tmp/bad.toml': unknown key 'colourmap'" "unknown key message"
[ "$(wc -l <<<"$err")" -eq 1 ] || fail "the error is not one line: $err"
printf '[gradcam]\nalpha = 7\n' >"$tmp/bad.toml"
expect "a value out of range" 2 "$cnnviz" gradcam --config "$tmp/bad.toml" "$image"
contains "$err" "config file '$tmp/bad.toml': 'gradcam.alpha'" "bad value message"
expect "--config FILE that does not exist" 2 "$cnnviz" classify --config "$tmp/none.toml" "$image"
contains "$err" "not found" "missing config"
rm "$tmp/config/cnnviz/config.toml"

# Completions.
bash_completion=$prefix/share/bash-completion/completions/cnnviz
expect "the bash completion loads" 0 bash -c "source '$bash_completion' && complete -p cnnviz"
contains "$out" "_cnnviz" "complete -p"
complete_words() { # WORDS...: what bash completion offers for the last word
  PATH=$prefix/bin:$PATH bash -c 'source "$1"; shift; COMP_WORDS=("$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _cnnviz; printf "%s\n" "${COMPREPLY[@]}"' \
    _ "$bash_completion" "$@"
}
contains "$(complete_words cnnviz grad)" "gradcam++" "subcommand completion"
contains "$(complete_words cnnviz gradcam --all)" "--all-layers" "option completion"
contains "$(complete_words cnnviz gradcam -m squ)" "squeezenet1_1" "model name completion"
contains "$(complete_words cnnviz gradcam --colormap ma)" "magma" "choice completion"
contains "$(complete_words cnnviz gb)" "gbp" "alias completion"
contains "$(complete_words cnnviz gbp --wr)" "--write" "an alias's options"
contains "$(complete_words cnnviz gradcam --write ov)" "overlay_full" "--write completion"
if command -v zsh >/dev/null; then
  zsh -n "$prefix/share/zsh/vendor-completions/_cnnviz" || fail "the zsh completion does not parse"
fi

# The man page renders, with every subcommand.
expect "man -l" 0 env MANWIDTH=100 man -P cat -l "$prefix/share/man/man1/cnnviz.1"
for word in SUBCOMMANDS gradcam evaluate "EXIT STATUS" ENVIRONMENT config.toml CNNVIZ_TOKEN; do
  contains "$out" "$word" "the man page"
done

# cnnviz-export, installed: writes to the user data directory by default.
expect "cnnviz-export --help" 0 "$prefix/bin/cnnviz-export" --help
contains "$out" "$tmp/data/cnnviz/models" "cnnviz-export's default output directory"
echo "install test: ok"
