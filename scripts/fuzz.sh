#!/usr/bin/env bash
# Fuzzes every parser of outside data with libFuzzer: builds the targets of
# tests/fuzz/targets.cpp with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer in build-fuzz/, then runs each for SECONDS
# (default 60), one after the other, from the seed corpus in
# tests/fuzz/corpus/<target>/ (what it finds is kept in
# build-fuzz/corpus/<target>/ for the next run).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#     targets: image metadata lists manifests npy png config differential onnx
#
# A crash, leak, sanitizer report or broken round trip stops that target and
# leaves the input in build-fuzz/crashes/; copy it to
# tests/fuzz/regressions/<target>/ once fixed, so that the unit tests replay
# it (FuzzCorpusTest). Prints one line per target: time, executions,
# coverage, corpus size. Exits 1 when a target failed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"

seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(image metadata lists manifests npy png config differential)

install_missing "${CNNVIZ_PACKAGES[@]}" clang libclang-rt-14-dev
build=$root/build-fuzz
if [ ! -f "$build/CMakeCache.txt" ]; then
  log "configuring build-fuzz/ (clang, libFuzzer, ASan, UBSan)"
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
    -DCNNVIZ_BUILD_TESTS=OFF -DCNNVIZ_FUZZ=ON >&2
fi
build_targets=()
for t in "${targets[@]}"; do build_targets+=(--target "fuzz_$t"); done
log "building ${targets[*]}"
cmake --build "$build" -j "$(nproc)" "${build_targets[@]}" >&2

mkdir -p "$build/crashes"
failed=0
printf '%-10s %8s %12s %10s %8s %8s  %s\n' target seconds executions "exec/s" coverage corpus result
for t in "${targets[@]}"; do
  corpus=$build/corpus/$t
  mkdir -p "$corpus"
  log=$build/fuzz-$t.log
  set +e
  # OpenCV and LibTorch are not instrumented; their start-up allocations
  # are no leaks of an input's.
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    "$build/fuzz_$t" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=6144 \
    -print_final_stats=1 -artifact_prefix="$build/crashes/$t-" \
    "$corpus" "$root/tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | grep -o '[0-9]*' || echo 0)
  size=$(find "$corpus" -type f | wc -l)
  result=clean
  if [ $rc -ne 0 ]; then
    result="FAILED (exit $rc; see $log, input in $build/crashes/)"
    failed=1
  fi
  printf '%-10s %8s %12s %10s %8s %8s  %s\n' "$t" "$seconds" "$execs" "$speed" "$cov" "$size" "$result"
done
exit $failed
