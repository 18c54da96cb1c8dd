#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: installs what is missing, builds
# cnnviz (Release, build/), exports a model into models/ and classifies a
# sample image. Safe to re-run: nothing is reinstalled, rebuilt or re-exported
# when nothing changed.
#
#   scripts/setup.sh [--model NAME] [--weights FILE.pth] [--deps-only] [IMAGE...]
#
# --model NAME       model to export and run (default: $CNNVIZ_MODEL or vgg16)
# --weights F.pth    export with these weights instead of torchvision's
# --deps-only        only install the Debian packages
# IMAGE...           images to classify (default: scikit-image's chelsea.png)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"

model=${CNNVIZ_MODEL:-vgg16}
weights=""
deps_only=0
images=()
while [ $# -gt 0 ]; do
  case $1 in
    --model) model=${2:?--model needs a name}; shift 2 ;;
    --weights) weights=${2:?--weights needs a file}; shift 2 ;;
    --deps-only) deps_only=1; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see scripts/setup.sh --help)" ;;
    *) images+=("$1"); shift ;;
  esac
done

install_missing "${CNNVIZ_PACKAGES[@]}"
[ $deps_only -eq 1 ] && exit 0

build "$root" cnnviz
python=$("$root/scripts/find_python.sh") || exit 1

target="$root/models/$model.pt"
random=0
if [ -f "$target" ]; then
  log "models/$model.pt exists (re-export: scripts/export_models.py --force $model)"
else
  log "exporting $model to models/"
  args=()
  [ -n "$weights" ] && args=(--weights "$weights")
  set +e
  "$python" "$root/scripts/export_models.py" "${args[@]}" "$model"
  rc=$?
  set -e
  if [ $rc -eq 3 ] && [ -z "$weights" ]; then
    # No network and no torch hub cache: fall back, loudly, to random weights.
    "$python" "$root/scripts/export_models.py" --random-weights --calibrate-bn "$model"
    random=1
  elif [ $rc -ne 0 ]; then
    die "export of $model failed (exit $rc)"
  fi
fi

if [ ${#images[@]} -eq 0 ]; then
  sample=$("$python" -c 'import os, skimage.data as d; print(os.path.join(d.data_dir, "chelsea.png"))')
  images=("$sample")
fi
log "cnnviz classify -m $model ${images[*]}"
"$root/build/cnnviz" classify -m "$model" --models-dir "$root/models" "${images[@]}"

if [ $random -eq 1 ]; then
  cat >&2 <<BANNER

  ######################################################################
  #  models/$model.pt was exported with RANDOM weights: no pretrained
  #  weights could be had (no network, no torch hub cache). Its
  #  predictions above are MEANINGLESS. For real ones, either
  #   - run on a machine with network access:
  #       scripts/export_models.py --force $model
  #   - or put torchvision's checkpoint in \$TORCH_HOME/hub/checkpoints/
  #     (see README, "Models"), or pass --weights FILE.pth.
  ######################################################################
BANNER
fi
