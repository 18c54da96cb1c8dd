#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, builds everything
# (Release, build/) and runs ctest. Extra arguments go to ctest (e.g. -L unit).
#
#   scripts/test.sh --backbones   instead: the full-size backbones (vit_b_16,
#                                 swin_t, convnext_tiny, regnet_y_400mf,
#                                 inception_v3, maxvit_t) against the eager
#                                 reference; about 10 minutes on 2 cores, so
#                                 not part of the default run (CI's budget).
# Models are exported by the suite itself (random weights into
# build/test-models); the pretrained tests use ../shared when it is there and
# skip with a message when it is not.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"

install_missing "${CNNVIZ_PACKAGES[@]}" "${CNNVIZ_TEST_PACKAGES[@]}"
build "$root"

# Exports are reused between runs; a changed export script invalidates them.
models="$root/build/test-models"
if [ -d "$models" ] && [ -n "$(find "$root/scripts" "$root/tests/reference/tiny_models.py" \
  -name '*.py' -newer "$models" 2>/dev/null)" ]; then
  log "export script changed: removing build/test-models"
  rm -rf "$models"
fi

# ctest runs nproc tests at once, most of them LibTorch processes with a
# thread per core. OpenMP's threads spin while they wait, so two such
# processes on two cores slow each other down about threefold (two device
# checks side by side: 39 s, against 13.5 s with passive waiting; 20 s one
# after the other). Passive waiting changes no result.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

cd "$root/build"
if [ "${1:-}" = --backbones ]; then
  shift
  exec ctest --output-on-failure -j "$(nproc)" -L backbones "$@"
fi
exec ctest --output-on-failure -j "$(nproc)" -LE backbones "$@"
