#!/usr/bin/env bash
# The GPU check of the compute core, in one command, on a machine with an
# NVIDIA GPU and a pip-installed PyTorch with CUDA (no OpenCV, no network):
# builds the core against that PyTorch's LibTorch, exports vgg16,
# densenet121 and squeezenet1_1 there (random weights, BatchNorm calibrated),
# compares every method on CUDA with the CPU (cnnviz_device_check) in
# float32 and in float64, and times VGG16 guided Grad-CAM at every
# feature stage at batch 1 and 32 against the same work in Python on the same
# GPU (scripts/bench_gpu.py: the floor of 1 forward + 2 backward, and one
# layer per pass with frozen parameters and as the Python tools run it), then
# at batch 32 with cuDNN's benchmark mode on both sides.
#
#   scripts/gpu_check.sh --prepare   # here: copy the header-only dependencies
#                                    # (nlohmann_json, CLI11) into build-deps/
#   scripts/gpu_check.sh             # there: build, check, benchmark
#
# Output: build-gpu/gpu-check.txt (also on stdout); with $OUT set, a copy
# there with the cmake and build logs. Exit status: 2 if the build fails,
# else that of the device check.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ "${1:-}" = --prepare ]; then
  mkdir -p build-deps/include
  cp -r /usr/include/nlohmann /usr/include/CLI build-deps/include/
  echo "build-deps/include: $(ls build-deps/include | tr '\n' ' ')"
  exit 0
fi

python=${PYTHON:-python3}
log=build-gpu/gpu-check.txt
mkdir -p build-gpu
exec > >(tee "$log") 2>&1
# Whatever happens, the logs go back with $OUT.
keep_logs() { [ -n "${OUT:-}" ] && cp build-gpu/*.log "$log" "$OUT/" 2>/dev/null; true; }
trap keep_logs EXIT
start=$SECONDS
step() { echo "== [$((SECONDS - start)) s] $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$python" -c 'import torch, torchvision; print("torch", torch.__version__, "cuda", torch.version.cuda, "torchvision", torchvision.__version__, "gpu", torch.cuda.get_device_name(0))'
prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
extra=()
[ -d build-deps/include ] && extra=(-DCNNVIZ_EXTRA_INCLUDE="$root/build-deps/include")
step "configure and build the core against $prefix"
if ! cmake -S . -B build-gpu -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" -DCNNVIZ_CORE_ONLY=ON "${extra[@]}" > build-gpu/cmake.log 2>&1; then
  tail -40 build-gpu/cmake.log
  exit 2
fi
grep "cnnviz:" build-gpu/cmake.log || true
# -k: one failed build shows every compile error, not only the first.
if ! cmake --build build-gpu -j"$(nproc)" --target cnnviz_bench cnnviz_device_check -- -k \
    > build-gpu/build.log 2>&1; then
  grep -E -A3 "error|Error" build-gpu/build.log | head -80
  exit 2
fi
models=build-gpu/models
step "export vgg16 densenet121 squeezenet1_1"
"$python" scripts/export_models.py --random-weights --calibrate-bn -o "$models" \
  vgg16 densenet121 squeezenet1_1 2>&1 | { grep -v WARNING || true; }

step "CUDA against CPU, every method, float32 (what cnnviz runs)"
status=0
build-gpu/cnnviz_device_check --device cuda --against cpu --batch 2 --dtype float32 \
  "$models"/squeezenet1_1.pt "$models"/densenet121.pt "$models"/vgg16.pt || status=$?
step "CUDA against CPU, every method, float64 (the same computation?)"
build-gpu/cnnviz_device_check --device cuda --against cpu --batch 1 --dtype float64 \
  "$models"/squeezenet1_1.pt "$models"/densenet121.pt "$models"/vgg16.pt || status=$?

step "VGG16 guided Grad-CAM at every feature stage, CUDA"
bench=build-gpu/bench.jsonl
: > "$bench"
for b in 1 32; do
  build-gpu/cnnviz_bench explain --method guided-gradcam --device cuda -m "$models"/vgg16.pt --batch-size $b --batches 5 | tee -a "$bench"
  for mode in floor per-layer per-layer-tools; do
    r=5; [ $mode = floor ] || r=2
    "$python" scripts/bench_gpu.py "$models"/vgg16.pt --device cuda --batch $b --mode $mode --repeat $r | tee -a "$bench"
  done
done
step "the same at batch 32 with cuDNN benchmark mode on both sides"
build-gpu/cnnviz_bench explain --method guided-gradcam --device cuda -m "$models"/vgg16.pt --batch-size 32 --batches 5 --cudnn-benchmark | tee -a "$bench"
for mode in floor per-layer; do
  "$python" scripts/bench_gpu.py "$models"/vgg16.pt --device cuda --batch 32 --mode $mode --repeat 3 --cudnn-benchmark | tee -a "$bench"
done
step "ratios (best ms per image; > 1 means cnnviz is faster)"
"$python" - "$bench" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
def key(r):
    return (r.get("batch_size", r.get("batch")), bool(r.get("cudnn_benchmark")))
for k in sorted({key(r) for r in rows}):
    same = [r for r in rows if key(r) == k]
    ours = [r for r in same if r["mode"] == "explain"][0]["best_ms_per_image"]
    line = f"batch {k[0]:>2} cudnn.benchmark {str(k[1]):5}  cnnviz {ours:8.3f} ms/image"
    for r in same:
        if r["mode"] != "explain":
            line += f"  | {r['mode']} {r['best_ms_per_image']:.3f} ({r['best_ms_per_image'] / ours:.2f}x)"
    print(line)
PY
step "done, device check status $status"
exit $status
