#!/usr/bin/env bash
# Benchmarks cnnviz against the same work in Python, side by side in one run,
# and prints the ratios. Weights do not change the cost: a model missing from
# models/ is exported with random weights into build/bench-models.
#
#   scripts/bench.sh [classify] [--model NAME|PATH] [--images N] [--batch-size B]
#                    [--repeat R] [--threads T]
#     `cnnviz classify` vs PIL + torchvision transforms + the same TorchScript
#     file (scripts/bench_classify.py). Both are fresh processes timed after the
#     model is loaded, cold (no warm-up), best of R, alternating. Default model
#     squeezenet1_1, 32 images, batch 8.
#
#   scripts/bench.sh batch [--model NAME|PATH] [--images N] [--threads T]
#                          [--classify-only]
#     the batch targets: `classify` over 64 images against the pure forward
#     throughput of the same model and batch size over the same number of
#     batches from a cold process (build/cnnviz_bench --warmup 0, same run,
#     best of 3), once with T network threads (also with glibc's default
#     malloc, CNNVIZ_SYSTEM_MALLOC=1, on both sides) and once with T-1 (one
#     core left to decoding); `gradcam --all-layers` over 16 images against 16 x
#     one image; peak
#     memory (/usr/bin/time -v) of `gradcam --all-layers` over N (default 500)
#     images against 20. Default model squeezenet1_1.
#
#   scripts/bench.sh pipeline [--model NAME|PATH] [--images N] [--threads T] [--repeat R]
#                             [--baseline BIN]
#     whole runs as a user sees them (fresh processes, files written), best of R
#     (default 3) by process wall time:
#     - `gradcam --all-layers` over N photos (default 32, cycled from
#       ../shared/images and chelsea) with the default outputs, with
#       `--write overlay`, and with `--write npy` (nothing but the raw arrays:
#       the compute floor of the same run); printed: process wall time, compute
#       (forward, backward and maps), writer time (busy time per writer
#       thread), the tail (writing left after the last batch), files and bytes
#       per image, and the ratios the pipeline targets name. Default model
#       squeezenet1_1 (the real one when models/ has it).
#     - vgg16 `gradcam --all-layers` against `--layer features.28` on one
#       image (cat_dog.png), whole process, alternating.
#     --baseline BIN runs the default-output and vgg16 runs with another cnnviz
#     binary too, alternating with this one (e.g. a build of an older commit).
#
#   scripts/bench.sh visualize [--model NAME|PATH] [--repeat R] [--threads T]
#     `cnnviz guided-gradcam --all-layers` on one image (compute time: forward,
#     backward passes and maps; warm, i.e. after a first image in the same
#     process, and cold; best of R; file writing reported apart)
#     vs scripts/bench_visualize.py on the eager model: the floor (one forward
#     + two backward passes, all layers hooked; also with glibc's malloc set
#     as cnnviz sets it), one layer per pass, and the seed tutorial's loop
#     (Grad-CAM + guided backprop per layer). Default vgg16.
#
#   scripts/bench.sh backbone [--model NAME|PATH] [--repeat R] [--threads T]
#     `cnnviz gradcam --all-layers` on one image (compute time, warm, best of
#     R) against one forward + one backward of the same model in eager
#     PyTorch (scripts/bench_visualize.py --mode fwdbwd, best of R): the cost
#     of a map at every encoder block over the bare gradient. Default
#     vit_b_16 (12 blocks; target <= 1.1x).
#   scripts/bench.sh attribution [--model NAME|PATH] [--repeat R] [--threads T]
#     DeepLIFT's compute on one image (build/cnnviz_bench explain, warm, best
#     of R) against one forward + one backward of a batch of two in eager
#     PyTorch (bench_visualize.py --mode fwdbwd --batch 2; target <= 1.3x);
#     LRP's (default composite) against one forward + one backward;
#     occlusion (default 32x32 windows, stride 16) and RISE (1000 masks) at
#     --sample-batch 16 as masked forwards per second against the frozen
#     forward's throughput at batch 16 (cnnviz_bench forward, as classify runs
#     it; target >= 0.9x), and their peak memory at 4x the windows and masks
#     against the default (bounded: streamed accumulation). Default vgg16
#     (DeepLIFT) and squeezenet1_1 (occlusion, RISE).
#
#   scripts/bench.sh featviz [--model NAME|PATH] [--repeat R] [--threads T] [--images N]
#     `cnnviz filters` (8 channels of the layer at 128x128, 64 steps, the
#     defaults otherwise) as time per optimization step after the first (the
#     manifest's steps_after_first_ms) against the same loop in plain PyTorch
#     after a warm-up step (scripts/bench_featviz.py: forward with a hook,
#     backward, Adam step), both with the whole network and stopped at the
#     layer as cnnviz does (target >= 1x the steps per second); best of R,
#     alternating. Then `cnnviz top-activations` over N images (default 64):
#     its pass (decoding and network, the manifest's scan_ms) against
#     `cnnviz classify --timings`'s run_ms over the same images (target >=
#     0.9x the throughput); whole processes too. Default squeezenet1_1,
#     layer features.12 (vgg16: features.28).
#
#   scripts/bench.sh serve [--model NAME|PATH] [--images N] [--threads T]
#     `cnnviz serve` (scripts/serve_load.py): the first maps of a new image
#     (gradcam, every feature stage, one request) as the server's time per
#     request against `cnnviz gradcam --all-layers --timings`'s compute time
#     per image over the same N images (default 8; target <= 1.2x); a cached
#     layer switch (one layer's u8 map) as server time, p50 and p99 (target
#     <= 30 ms); then the load test: 8 clients, 400 requests mixing classify,
#     new maps and cached maps, p50/p99 per kind, none lost or failed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"

mode=classify
case ${1:-} in classify|visualize|batch|pipeline|backbone|attribution|featviz|serve) mode=$1; shift ;; esac
model=squeezenet1_1 n=32 batch=8 repeat=5 threads=$(nproc) classify_only=0 baseline=
[ "$mode" = visualize ] && model=vgg16 repeat=3
[ "$mode" = backbone ] && model=vit_b_16 repeat=3
[ "$mode" = attribution ] && model=vgg16 repeat=3
[ "$mode" = batch ] && n=500
[ "$mode" = pipeline ] && n=32 repeat=3
[ "$mode" = featviz ] && n=64 repeat=3
[ "$mode" = serve ] && n=8
while [ $# -gt 0 ]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --images) n=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --classify-only) classify_only=1; shift ;;
    --baseline) baseline=$(realpath "$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
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

calc() { awk "BEGIN { print $1 }"; }
best() { printf '%s\n' "$@" | sort -g | head -n1; }
# The number after "NAME": in a JSON line on stdin: field NAME
field() { sed "s/.*\"$1\":\\([0-9.e+-]*\\).*/\\1/"; }

# Copies of the sample images, cycled: make_images DIR COUNT
make_images() {
  local dir=$1 count=$2 i src
  local sources=()
  for src in "$root"/../shared/images/* "$("$python" -c 'import os, skimage.data as d; print(os.path.join(d.data_dir, "chelsea.png"))')"; do
    [ -f "$src" ] && sources+=("$src")
  done
  [ ${#sources[@]} -gt 0 ] || die "no sample images found"
  mkdir -p "$dir"
  for ((i = 0; i < count; i++)); do
    src=${sources[$((i % ${#sources[@]}))]}
    cp "$src" "$dir/img$(printf %04d "$i").${src##*.}"
  done
}

# A model file by name: models/NAME.pt, else exported with random weights
# into build/bench-models (weights do not change the cost).
model_file() {
  local name=$1
  if [ -f "$name" ]; then
    echo "$name"
  elif [ -f "$root/models/$name.pt" ]; then
    echo "$root/models/$name.pt"
  else
    [ -f "$root/build/bench-models/$name.pt" ] ||
      "$python" "$root/scripts/export_models.py" --random-weights -o "$root/build/bench-models" "$name" >&2
    echo "$root/build/bench-models/$name.pt"
  fi
}

if [ "$mode" = pipeline ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  make_images "$work/photos" "$n"
  # One whole run with binary BIN: prints "WALL COMPUTE WRITE WRITE_CPU WRITERS TAIL FILES BYTES
  # IMAGES" (ms, counts, bytes). Files and bytes are counted on disk. Binaries
  # without the pipeline's timings (a --baseline) wrote on the main thread:
  # writing is then their write_ms, all of it after compute.
  whole() { # BIN ARGS...
    local bin=$1 out=$work/out t0 t1 json
    shift
    rm -rf "$out"
    t0=$(date +%s%N)
    json=$("$bin" "$@" -q --timings --threads "$threads" -o "$out" 2>&1 >/dev/null | grep 'cnnviz: timings')
    t1=$(date +%s%N)
    json=${json#cnnviz: timings }
    local write writers cpu tail
    write=$(field write_ms <<<"$json")
    if grep -q '"writers"' <<<"$json"; then
      writers=$(field writers <<<"$json") cpu=$(field write_cpu_ms <<<"$json") tail=$(field tail_ms <<<"$json")
    else
      writers=1 cpu=$write tail=$write
    fi
    echo "$(( (t1 - t0) / 1000000 )) $(field compute_ms <<<"$json") $write $cpu $writers $tail" \
      "$(find "$out" -type f ! -name 'journal*' ! -name 'manifest*' | wc -l)" \
      "$(du -sb --exclude='journal*' --exclude='manifest*' "$out" | cut -f1)" "$(field images <<<"$json")"
  }
  # Best of R by wall time, alternating the binaries given: prints one line
  # per binary.
  best_runs() { # "BIN..." ARGS...
    local bins=($1) r i line
    shift
    local best=()
    for ((r = 0; r < repeat; r++)); do
      for i in "${!bins[@]}"; do
        line=$(whole "${bins[$i]}" "$@")
        if [ -z "${best[$i]:-}" ] || [ "${line%% *}" -lt "${best[$i]%% *}" ]; then best[$i]=$line; fi
      done
    done
    printf '%s\n' "${best[@]}"
  }
  report() { # LABEL "WALL COMPUTE WRITE WRITE_CPU WRITERS TAIL FILES BYTES IMAGES" COMPUTE_FLOOR_MS
    local wall compute write cpu writers tail files bytes images
    read -r wall compute write cpu writers tail files bytes images <<<"$2"
    printf '  %-16s wall %6.0f ms  compute %5.0f ms  writing %5.0f ms per writer (CPU %5.0f ms; %d writers; after the last batch %4.0f ms)  %4.1f files, %5.2f MB per image\n' \
      "$1" "$wall" "$compute" "$(calc "$write / $writers")" "$(calc "$cpu / $writers")" "$writers" "$tail" \
      "$(calc "$files / $images")" "$(calc "$bytes / $images / 1e6")"
    printf '  %-16s writing/compute: %.2f (wall time per writer), %.2f (CPU time per writer)   wall/compute %.2f   wall/compute floor %.2f\n' \
      "" "$(calc "$write / $writers / $compute")" "$(calc "$cpu / $writers / $compute")" "$(calc "$wall / $compute")" "$(calc "$wall / $3")"
  }
  sq=$(model_file "$model")
  bins="$cnnviz"
  [ -n "$baseline" ] && bins="$cnnviz $baseline"
  printf 'gradcam --all-layers, %s, %d photos, %d threads, best of %d (process wall time)\n' \
    "$(basename "$sq")" "$n" "$threads" "$repeat"
  floor_run=$(best_runs "$cnnviz" gradcam --all-layers -m "$sq" --write npy "$work/photos")
  floor=$(cut -d' ' -f2 <<<"$floor_run")
  printf '  %-16s wall %6.0f ms  compute %5.0f ms (the compute floor: only the raw arrays written)\n' \
    "--write npy" "${floor_run%% *}" "$floor"
  mapfile -t runs < <(best_runs "$bins" gradcam --all-layers -m "$sq" "$work/photos")
  report "default outputs" "${runs[0]}" "$floor"
  echo "                   targets: writing <= compute, wall <= 2x compute"
  [ -n "$baseline" ] && report "  baseline" "${runs[1]}" "$floor" &&
    printf '                   baseline/cnnviz wall: %.2fx\n' "$(calc "${runs[1]%% *} / ${runs[0]%% *}")"
  report "--write overlay" "$(best_runs "$cnnviz" gradcam --all-layers -m "$sq" --write overlay "$work/photos")" "$floor"
  echo "                   target: wall <= 1.3x compute"
  vgg=$(model_file vgg16)
  image=$root/../shared/images/cat_dog.png
  [ -f "$image" ] || image=$work/photos/img0001.png
  for bin in $bins; do
    all= one=
    for ((r = 0; r < repeat; r++)); do
      a=$(whole "$bin" gradcam --all-layers -m "$vgg" "$image") o=$(whole "$bin" gradcam --layer features.28 -m "$vgg" "$image")
      all=$(best $all ${a%% *}) one=$(best $one ${o%% *})
    done
    label=vgg16; [ "$bin" != "$cnnviz" ] && label="vgg16 (baseline)"
    printf '%s gradcam, one image (%s), whole process, best of %d: --all-layers %.0f ms, --layer features.28 %.0f ms, ratio %.2f (target <= 1.30)\n' \
      "$label" "$(basename "$image")" "$repeat" "$all" "$one" "$(calc "$all / $one")"
  done
  exit 0
fi

if [ "$mode" = batch ]; then
  install_missing time
  bench="$root/build/cnnviz_bench"
  [ -x "$bench" ] || die "build/cnnviz_bench missing: build first (scripts/test.sh or cmake --build build)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  make_images "$work/i64" 64
  make_images "$work/i16" 16
  make_images "$work/i1" 1
  make_images "$work/i20" 20
  make_images "$work/iN" "$n"
  b=16
  # classify over 64 images against the same 4 batches of 16 pushed through
  # the forward pass alone from a cold process (synthetic input), best of 3,
  # alternating. Twice: with every core on the network, and with one core
  # left to the decoders. The first cannot reach 1.0: decoding then competes
  # with the network for the same cores, and the printed bound is what
  # perfect packing of both CPU loads would give.
  classify_ms() { # THREADS [ENV...]: one classify run; prints its timings line
    local t=$1
    shift
    env "$@" "$cnnviz" classify -q -m "$model_path" --batch-size $b --threads "$t" --timings "$work/i64" 2>&1 >/dev/null | grep timings
  }
  forward_ms() { # THREADS [ENV...]
    local t=$1
    shift
    env "$@" "$bench" forward -m "$model_path" --batch-size $b --batches 4 --warmup 0 --threads "$t" | field total_ms_per_image
  }
  # With every core on the network, also with glibc's malloc as it starts
  # (CNNVIZ_SYSTEM_MALLOC=1): what cnnviz's heap reuse saves on both sides.
  classify_vs_forward() { # THREADS
    local t=$1 c= f= d= cs= fs= line i
    for i in 1 2 3; do
      line=$(classify_ms "$t")
      c=$(best $c $(field per_image_ms <<<"$line")) d=$(best $d $(field decode_cpu_ms_per_image <<<"$line"))
      f=$(best $f $(forward_ms "$t"))
      if [ "$t" -ge "$threads" ]; then
        cs=$(best $cs $(classify_ms "$t" CNNVIZ_SYSTEM_MALLOC=1 | field per_image_ms))
        fs=$(best $fs $(forward_ms "$t" CNNVIZ_SYSTEM_MALLOC=1))
      fi
    done
    printf 'classify, 64 images, batch %d, %d network threads: %.2f ms/image; pure forward, same 4 batches: %.2f ms/image; ratio %.2f (target <= 1.10)\n' \
      $b "$t" "$c" "$f" "$(calc "$c / $f")"
    printf '  decoding and preprocessing: %.2f CPU ms/image' "$d"
    if [ "$t" -ge "$threads" ]; then
      printf '; with all %d cores busy in the forward pass the best possible ratio is %.2f\n' "$threads" "$(calc "($f * $threads + $d) / ($f * $threads)")"
      printf '  with glibc'"'"'s default malloc: classify %.2f ms/image, pure forward %.2f ms/image (ratio %.2f); heap reuse makes them %.2fx and %.2fx faster\n' \
        "$cs" "$fs" "$(calc "$cs / $fs")" "$(calc "$cs / $c")" "$(calc "$fs / $f")"
    else
      printf ' on the %d spare core(s)\n' $((threads - t))
    fi
  }
  classify_vs_forward "$threads"
  [ "$threads" -gt 1 ] && classify_vs_forward $((threads - 1))
  [ "$classify_only" = 1 ] && exit 0
  run_ms() { # total compute + write time of a gradcam --all-layers run over DIR
    "$cnnviz" gradcam --all-layers -q --no-raw --timings --batch-size 4 --threads "$threads" \
      -m "$model_path" -o "$work/out-$(basename "$1")" "$1" 2>&1 >/dev/null | grep timings |
      awk -F'[:,}]' '{for (i = 1; i < NF; i++) { if ($i ~ /compute_ms/) c = $(i+1); if ($i ~ /write_ms/) w = $(i+1) } print c + w}'
  }
  one=$(run_ms "$work/i1") sixteen=$(run_ms "$work/i16")
  printf 'gradcam --all-layers: 1 image %.0f ms; 16 images %.0f ms = %.0f ms/image; ratio %.2f (target <= 1.20)\n' \
    "$one" "$sixteen" "$(calc "$sixteen / 16")" "$(calc "$sixteen / 16 / $one")"
  rss() {
    /usr/bin/time -v "$cnnviz" gradcam --all-layers -q --no-raw --batch-size 4 --threads "$threads" \
      -m "$model_path" -o "$work/mem-$(basename "$1")" "$1" 2>&1 >/dev/null |
      awk '/Maximum resident set size/ { print $NF }'
  }
  r20=$(rss "$work/i20") rn=$(rss "$work/iN")
  printf 'peak memory, gradcam --all-layers: 20 images %d MiB, %d images %d MiB, ratio %.2f\n' \
    $((r20 / 1024)) "$n" $((rn / 1024)) "$(calc "$rn / $r20")"
  exit 0
fi

if [ "$mode" = serve ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  make_images "$work/src" "$n"
  # Distinct bytes for each image (the server caches by content): each copy
  # cut by a few pixels and mirrored or not, saved as JPEG.
  "$python" - "$work/src" "$work/images" <<'EOF'
import os, sys
from PIL import Image
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst)
for i, name in enumerate(sorted(os.listdir(src))):
    im = Image.open(os.path.join(src, name)).convert("RGB")
    im = im.crop((i, i, im.width - i, im.height - i))
    if i % 2:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    im.save(os.path.join(dst, f"img{i:03d}.jpg"), quality=92)
EOF
  "$python" "$root/scripts/serve_load.py" bench "$cnnviz" "$model_path" "$work/images" \
    --threads "$threads" --images "$n" --work "$work"
  "$python" "$root/scripts/serve_load.py" load "$cnnviz" "$model_path" "$work/images" \
    --threads "$threads" --clients 8 --requests 400
  exit 0
fi

if [ "$mode" = featviz ]; then
  layer=features.12
  case $(basename "$model_path") in vgg16*) layer=features.28 ;; esac
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  steps=64 rows=8 size=128
  json_of() { "$python" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
  ours=() full=() cut=()
  for ((r = 0; r < repeat; r++)); do
    "$cnnviz" filters -q -m "$model_path" --layer "$layer" --channels 0-$((rows - 1)) --batch "$rows" \
      --steps "$steps" --size "$size" --threads "$threads" -o "$out/f" >/dev/null
    # ms per step, after the first (the Python loop times its steps after a warm-up step)
    ours+=("$(json_of "$out/f/manifest.json" 'd["timings"]["steps_after_first_ms"] / ('"$steps"' - 1)')")
    for t in full cut; do
      extra=(); [ $t = cut ] && extra=(--truncate)
      ms=$("$python" "$root/scripts/bench_featviz.py" --model "$model_path" --layer "$layer" --batch "$rows" \
        --size "$size" --steps "$steps" --threads "$threads" "${extra[@]}" |
        "$python" -c 'import json,sys; d=json.loads(sys.stdin.read()); print(1000 * d["seconds"] / d["steps"])')
      eval "$t+=(\"\$ms\")"
    done
  done
  c=$(best "${ours[@]}") f=$(best "${full[@]}") t=$(best "${cut[@]}")
  printf 'filters: %s %s, %d channels at %dx%d, %d steps, %d threads (best of %d; per step, after the first)\n' \
    "$(basename "$model_path")" "$layer" "$rows" "$size" "$size" "$steps" "$threads" "$repeat"
  printf '  cnnviz                              %7.1f ms = %6.2f steps/s\n' "$c" "$(calc "1000 / $c")"
  printf '  pytorch, whole network              %7.1f ms = %6.2f steps/s   cnnviz %.2fx (target >= 1)\n' \
    "$f" "$(calc "1000 / $f")" "$(calc "$f / $c")"
  printf '  pytorch, stopped at the layer       %7.1f ms = %6.2f steps/s   cnnviz %.2fx\n' \
    "$t" "$(calc "1000 / $t")" "$(calc "$t / $c")"
  make_images "$out/imgs" "$n"
  wall() { local s e; s=$(date +%s.%N); "$cnnviz" "$@" >/dev/null 2>"$out/err"; e=$(date +%s.%N); calc "($e - $s) * 1000"; }
  tops=() cls=() scans=() runs=()
  for ((r = 0; r < repeat; r++)); do
    tops+=("$(wall top-activations -q -m "$model_path" --layer "$layer" --threads "$threads" \
      --batch-size 16 -o "$out/t$r" "$out/imgs")")
    scans+=("$(json_of "$out/t$r/manifest.json" 'd["timings"]["scan_ms"]')")
    cls+=("$(wall classify -q --timings -m "$model_path" --threads "$threads" --batch-size 16 "$out/imgs")")
    runs+=("$(sed -n 's/.*"run_ms":\([0-9.e+-]*\).*/\1/p' "$out/err")")
  done
  a=$(best "${scans[@]}") b=$(best "${runs[@]}") wa=$(best "${tops[@]}") wb=$(best "${cls[@]}")
  printf 'top-activations: %d images, %s, 16 channels, k 9, %d threads (best of %d)\n' "$n" "$layer" "$threads" "$repeat"
  printf '  top-activations pass  %7.0f ms = %6.1f images/s (decoding and network)\n' "$a" "$(calc "$n * 1000 / $a")"
  printf '  classify run          %7.0f ms = %6.1f images/s   top-activations %.2fx (target >= 0.9)\n' \
    "$b" "$(calc "$n * 1000 / $b")" "$(calc "$b / $a")"
  printf '  whole processes: top-activations %.0f ms (with its 32 sheets), classify %.0f ms\n' "$wa" "$wb"
  exit 0
fi

if [ "$mode" = attribution ]; then
  image=$root/../shared/images/cat_dog.png
  [ -f "$image" ] || image=$("$python" -c 'import os, skimage.data as d; print(os.path.join(d.data_dir, "chelsea.png"))')
  bench=$root/build/cnnviz_bench
  [ -x "$bench" ] || die "build/cnnviz_bench missing: run scripts/setup.sh first"
  ms_of() { "$python" -c 'import json,sys; d=json.loads(sys.stdin.read()); print(d["best_ms_per_image"])'; }
  # METHOD against eager PyTorch's forward + backward of a batch of BATCH
  # copies of the image, alternating, best of R each.
  against_fwdbwd() { # METHOD BATCH
    local ours=() theirs=() r c f
    for ((r = 0; r < repeat; r++)); do
      ours+=("$("$bench" explain -m "$model_path" --method "$1" --batch-size 1 --batches 1 \
        --threads "$threads" | ms_of)")
      theirs+=("$("$python" "$root/scripts/bench_visualize.py" "$model_path" "$image" --mode fwdbwd \
        --batch "$2" --threads "$threads" --repeat 1 |
        "$python" -c 'import json,sys; print(json.loads(sys.stdin.read())["best_ms"])')")
    done
    c=$(best "${ours[@]}") f=$(best "${theirs[@]}")
    printf '%s: %s, 1 image, %d threads\n' "$1" "$(basename "$model_path")" "$threads"
    printf '  cnnviz (best of %d)                        %8.0f ms\n' "$repeat" "$c"
    printf '  python 1 fwd + 1 bwd, batch %d (best of %d) %8.0f ms   cnnviz/python %.2fx (target <= 1.3)\n' \
      "$2" "$repeat" "$f" "$(calc "$c / $f")"
  }
  against_fwdbwd deeplift 2  # the image and its baseline
  against_fwdbwd lrp 1       # the default composite, epsilon-plus-flat
  sq=$(model_file squeezenet1_1)
  fwd=$("$bench" forward -m "$sq" --batch-size 16 --batches "$repeat" --threads "$threads" | ms_of)
  printf 'occlusion and RISE: %s, 1 image, --sample-batch 16, %d threads\n' "$(basename "$sq")" "$threads"
  printf '  frozen forward, batch 16 (best of %d)     %8.2f ms per image = %6.1f images/s\n' \
    "$repeat" "$fwd" "$(calc "1000 / $fwd")"
  # Masked forwards per image: 13 x 13 windows of 32 at stride 16 on 224x224,
  # 1000 masks, plus the capture pass (and occlusion's unmasked score).
  for m in "occlusion 170" "rise 1001"; do
    set -- $m
    t=$("$bench" explain -m "$sq" --method "$1" --batch-size 1 --batches "$repeat" --threads "$threads" | ms_of)
    printf '  %-10s %5d forwards                  %8.0f ms = %6.1f forwards/s   %.2fx the forward (target >= 0.9)\n' \
      "$1" "$2" "$t" "$(calc "$2 * 1000 / $t")" "$(calc "$2 * $fwd / $t")"
  done
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  peak() { /usr/bin/time -f %M "$cnnviz" "$@" -q --threads "$threads" -m "$sq" -o "$out/$1" "$image" 2>&1 >/dev/null | tail -n1; }
  printf '  peak memory: occlusion %s / %s KiB (169 / 729 windows), RISE %s / %s KiB (1000 / 4000 masks)\n' \
    "$(peak occlusion)" "$(peak occlusion --stride 8)" "$(peak rise)" "$(peak rise --masks 4000)"
  exit 0
fi

if [ "$mode" = backbone ]; then
  image=$root/../shared/images/cat_dog.png
  [ -f "$image" ] || image=$("$python" -c 'import os, skimage.data as d; print(os.path.join(d.data_dir, "chelsea.png"))')
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  timing() {
    "$cnnviz" gradcam --all-layers --write npy --timings --threads "$threads" --batch-size 1 \
      -m "$model_path" -o "$out" "$@" 2>&1 >/dev/null | grep 'cnnviz: timings'
  }
  warm=() py=()
  for ((r = 0; r < repeat; r++)); do
    one=$(timing "$image")
    three=$(timing "$image" "$image" "$image")
    warm+=("$(calc "($(field compute_ms <<<"$three") - $(field compute_ms <<<"$one")) / 2")")
    py+=("$("$python" "$root/scripts/bench_visualize.py" "$model_path" "$image" --mode fwdbwd \
      --threads "$threads" --repeat 1 |
      "$python" -c 'import json,sys; print(json.loads(sys.stdin.read())["best_ms"])')")
  done
  layers=$("$cnnviz" layers --json -m "$model_path" |
    "$python" -c 'import json,sys; print(sum(l["feature_layer"] for l in json.load(sys.stdin)["layers"]))')
  c=$(best "${warm[@]}") f=$(best "${py[@]}")
  printf 'gradcam --all-layers: %s, %s layers, 1 image, %d threads\n' \
    "$(basename "$model_path")" "$layers" "$threads"
  printf '  cnnviz warm (best of %d)            %8.0f ms\n' "$repeat" "$c"
  printf '  python 1 fwd + 1 bwd (best of %d)   %8.0f ms   cnnviz/python %.2fx (target <= 1.1)\n' \
    "$repeat" "$f" "$(calc "$c / $f")"
  exit 0
fi

if [ "$mode" = visualize ]; then
  image=$root/../shared/images/cat_dog.png
  [ -f "$image" ] || image=$("$python" -c 'import os, skimage.data as d; print(os.path.join(d.data_dir, "chelsea.png"))')
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  # Cold: one image in a fresh process. Warm: the extra cost of two more
  # images in the same process (batch 1), per image, as the Python side is
  # measured after a warm-up.
  timing() {
    "$cnnviz" guided-gradcam --all-layers --no-raw --timings --threads "$threads" --batch-size 1 \
      -m "$model_path" -o "$out" "$@" 2>&1 >/dev/null | grep 'cnnviz: timings'
  }
  cold=() warm=() write=()
  for ((r = 0; r < repeat; r++)); do
    one=$(timing "$image")
    three=$(timing "$image" "$image" "$image")
    c1=$(field compute_ms <<<"$one") c3=$(field compute_ms <<<"$three")
    cold+=("$c1")
    warm+=("$(calc "($c3 - $c1) / 2")")
    write+=("$(field write_ms <<<"$one")")
  done
  py() {
    "$python" "$root/scripts/bench_visualize.py" "$model_path" "$image" --threads "$threads" "$@" |
      "$python" -c 'import json,sys; d=json.loads(sys.stdin.read()); print(d["best_ms"], d["layers"])'
  }
  read -r floor layers < <(py --mode floor --repeat "$repeat")
  # The floor again with glibc's malloc set as cnnviz sets it (see
  # cnnviz::reuse_freed_memory): no per-block mappings, no trimming on free.
  read -r floor_reuse _ < <(MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647 py --mode floor --repeat "$repeat")
  read -r per_layer _ < <(py --mode per-layer --repeat 1)
  read -r seed _ < <(py --mode seed --repeat 1)
  c=$(best "${warm[@]}")
  printf 'guided-gradcam --all-layers: %s, %s layers, 1 image, %d threads\n' \
    "$(basename "$model_path")" "$layers" "$threads"
  printf '  cnnviz warm (best of %d)       %8.0f ms   (cold, first image: %.0f ms; writing PNGs: %.0f ms)\n' \
    "$repeat" "$c" "$(best "${cold[@]}")" "$(best "${write[@]}")"
  printf '  python floor: 1 fwd + 2 bwd   %8.0f ms   cnnviz/floor     %.2fx\n' "$floor" "$(calc "$c / $floor")"
  printf '    same, malloc as in cnnviz   %8.0f ms   cnnviz/floor     %.2fx\n' "$floor_reuse" "$(calc "$c / $floor_reuse")"
  printf '  python one layer per pass     %8.0f ms   per-layer/cnnviz %.1fx\n' "$per_layer" "$(calc "$per_layer / $c")"
  printf '  python seed loop              %8.0f ms   seed/cnnviz      %.1fx\n' "$seed" "$(calc "$seed / $c")"
  exit 0
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
