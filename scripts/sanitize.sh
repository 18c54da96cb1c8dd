#!/usr/bin/env bash
# Builds cnnviz and its tests with sanitizers, each in its own build
# directory, and runs the tests under them:
#
#   scripts/sanitize.sh [address|thread|all] [extra ctest arguments]   (default all)
#
#   address  -fsanitize=address,undefined (build-asan/): the unit and CLI
#            tests (the CLI tests run the instrumented binary); leaks too.
#   thread   -fsanitize=thread (build-tsan/): the tests of the threads cnnviz
#            starts (decoders, writers), unit and through the binary.
#
# Only cnnviz's own code is instrumented (LibTorch, OpenMP and OpenCV come
# from Debian). The suppressions in tests/sanitize/ are for those libraries'
# internals only, each with a comment saying why. Not part of
# scripts/test.sh: it takes longer than CI allows. Exits non-zero when a
# test or a sanitizer fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"

which=${1:-all}
[ $# -gt 0 ] && shift
install_missing "${CNNVIZ_PACKAGES[@]}"

run() { # KIND BUILD_DIR SANITIZE CTEST_ARGS...
  local kind=$1 dir=$2 sanitize=$3
  shift 3
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    log "configuring $(basename "$dir") ($kind)"
    cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCNNVIZ_SANITIZE="$sanitize" >&2
  fi
  log "building $(basename "$dir")"
  # `|| return`: set -e does not apply in a function called from `||`.
  cmake --build "$dir" -j "$(nproc)" >&2 || return 1
  log "testing under $kind"
  (cd "$dir" && ctest --output-on-failure --no-tests=error -j "$(nproc)" "$@")
}

supp=$root/tests/sanitize
status=0
if [ "$which" = address ] || [ "$which" = all ]; then
  # abort_on_error: a report fails the test that caused it.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 \
  LSAN_OPTIONS=suppressions=$supp/lsan.supp:print_suppressions=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run "AddressSanitizer + UndefinedBehaviorSanitizer" "$root/build-asan" ON -L "unit|cli" "$@" ||
    status=1
fi
if [ "$which" = thread ] || [ "$which" = all ]; then
  TSAN_OPTIONS=suppressions=$supp/tsan.supp:halt_on_error=1:second_deadlock_stack=1 \
    run ThreadSanitizer "$root/build-tsan" thread \
    -R "WriterPool|Loader|CliPipeline|CliBatch|CliRobustnessTest.(KillNine|OneRun)" "$@" ||
    status=1
fi
exit $status
