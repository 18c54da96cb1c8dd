#!/usr/bin/env bash
# The GPU check of the compute core, in one command, on a machine with an
# NVIDIA GPU and a pip-installed PyTorch with CUDA (no OpenCV, no network):
# builds the core against that PyTorch's LibTorch, exports vgg16,
# densenet121 and squeezenet1_1 there (random weights, BatchNorm calibrated),
# compares every method on CUDA with the CPU (cnnviz_device_check), and
# times VGG16 guided Grad-CAM at every feature stage at batch 1 and 32
# against the same work in Python on the same GPU (scripts/bench_gpu.py:
# the floor of 1 forward + 2 backward, and one layer per pass).
#
#   scripts/gpu_check.sh --prepare   # here: copy the header-only dependencies
#                                    # (nlohmann_json, CLI11) into build-deps/
#   scripts/gpu_check.sh             # there: build, check, benchmark
#
# Output: build-gpu/gpu-check.txt (also on stdout); with $OUT set, a copy
# there. Exit status: that of the device check.
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
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$python" -c 'import torch, torchvision; print("torch", torch.__version__, "cuda", torch.version.cuda, "torchvision", torchvision.__version__, "gpu", torch.cuda.get_device_name(0))'
prefix=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)')
extra=()
[ -d build-deps/include ] && extra=(-DCNNVIZ_EXTRA_INCLUDE="$root/build-deps/include")
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
  -DCNNVIZ_CORE_ONLY=ON "${extra[@]}" > build-gpu/cmake.log
cmake --build build-gpu -j"$(nproc)" --target cnnviz_bench cnnviz_device_check > build-gpu/build.log
models=build-gpu/models
"$python" scripts/export_models.py --random-weights --calibrate-bn -o "$models" \
  vgg16 densenet121 squeezenet1_1 2>&1 | grep -v WARNING

echo "== CUDA against CPU, every method"
status=0
build-gpu/cnnviz_device_check --device cuda --against cpu --batch 2 \
  "$models"/squeezenet1_1.pt "$models"/densenet121.pt "$models"/vgg16.pt || status=$?

echo "== VGG16 guided Grad-CAM at every feature stage, CUDA"
for b in 1 32; do
  build-gpu/cnnviz_bench explain --device cuda -m "$models"/vgg16.pt --batch-size $b --batches 5
  "$python" scripts/bench_gpu.py "$models"/vgg16.pt --device cuda --batch $b --mode floor
  "$python" scripts/bench_gpu.py "$models"/vgg16.pt --device cuda --batch $b --mode per-layer --repeat 2
done
[ -n "${OUT:-}" ] && cp "$log" "$OUT/"
exit $status
