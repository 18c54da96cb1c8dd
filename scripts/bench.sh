#!/usr/bin/env bash
# Times `cnnviz classify` against the same work in Python (PIL + torchvision
# transforms + the same TorchScript file), side by side in one run, and prints
# the ratio. Both sides are fresh processes timed after the model is loaded
# (process start and model load excluded), cold (no warm-up), best of R runs,
# alternating so that machine noise hits both alike.
#
#   scripts/bench.sh [--model NAME|PATH] [--images N] [--batch-size B] [--repeat R] [--threads T]
#
# Default model: squeezenet1_1 from models/, else a random-weight export made
# in build/bench-models (weights do not change the cost).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"

model=squeezenet1_1 n=32 batch=8 repeat=5 threads=$(nproc)
while [ $# -gt 0 ]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --images) n=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

cnnviz="$root/build/cnnviz"
[ -x "$cnnviz" ] || die "build/cnnviz missing: run scripts/setup.sh first"
python=$("$root/scripts/find_python.sh")

if [ -f "$model" ]; then
  model_path=$model
elif [ -f "$root/models/$model.pt" ]; then
  model_path=$root/models/$model.pt
else
  model_path=$root/build/bench-models/$model.pt
  [ -f "$model_path" ] ||
    "$python" "$root/scripts/export_models.py" --random-weights -o "$root/build/bench-models" "$model" >&2
fi

# N images cycled from the shared photos and scikit-image's cat, copied so
# that every file is read from disk like a real dataset.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sources=()
for f in "$root"/../shared/images/* "$("$python" -c 'import os, skimage.data as d; print(os.path.join(d.data_dir, "chelsea.png"))')"; do
  [ -f "$f" ] && sources+=("$f")
done
[ ${#sources[@]} -gt 0 ] || die "no sample images found"
images=()
for ((i = 0; i < n; i++)); do
  src=${sources[$((i % ${#sources[@]}))]}
  dst="$work/img$i.${src##*.}"
  cp "$src" "$dst"
  images+=("$dst")
done

calc() { awk "BEGIN { print $1 }"; }
best() { printf '%s\n' "$@" | sort -g | head -n1; }
cpp_ms=() py_ms=() cpp_wall=() py_wall=()
for ((r = 0; r < repeat; r++)); do
  t0=$(date +%s.%N)
  line=$("$cnnviz" classify -m "$model_path" --batch-size "$batch" --threads "$threads" --timings \
           "${images[@]}" 2>&1 >/dev/null | grep 'cnnviz: timings')
  t1=$(date +%s.%N)
  cpp_ms+=("$(sed 's/.*"run_ms":\([0-9.e+-]*\).*/\1/' <<<"$line")")
  cpp_wall+=("$(calc "($t1 - $t0) * 1000")")
  t0=$(date +%s.%N)
  json=$("$python" "$root/scripts/bench_classify.py" "$model_path" "${images[@]}" \
           --batch-size "$batch" --threads "$threads" --repeat 1 --warmup 0)
  t1=$(date +%s.%N)
  py_ms+=("$("$python" -c 'import json,sys; print(json.loads(sys.argv[1])["run_ms"][0])' "$json")")
  py_wall+=("$(calc "($t1 - $t0) * 1000")")
done

c=$(best "${cpp_ms[@]}") p=$(best "${py_ms[@]}")
cw=$(best "${cpp_wall[@]}") pw=$(best "${py_wall[@]}")
printf 'classify: %s, %d images, batch %d, %d threads, best of %d\n' \
  "$(basename "$model_path")" "$n" "$batch" "$threads" "$repeat"
printf '  cnnviz  %8.2f ms/image   (whole process %7.0f ms)\n' "$(calc "$c / $n")" "$cw"
printf '  python  %8.2f ms/image   (whole process %7.0f ms)\n' "$(calc "$p / $n")" "$pw"
printf '  ratio python/cnnviz: %.2fx (excluding process start and model load)\n' "$(calc "$p / $c")"
