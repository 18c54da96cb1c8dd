#!/usr/bin/env bash
# Builds the Debian package build/cnnviz_<version>_<arch>.deb from the same
# install rules as `cmake --install` (cmake/install.cmake): cpack -G DEB, with
# Depends computed by dpkg-shlibdeps from what the binary links.
#
#   scripts/package.sh            build (Release, build/) and package
#   sudo apt install ./build/cnnviz_*.deb
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"

install_missing "${CNNVIZ_PACKAGES[@]}"
build "$root"
cd "$root/build"
cpack -G DEB -B "$root/build" >/dev/null
deb=$(ls -t "$root"/build/cnnviz_*.deb | head -n1)
log "wrote $deb"
dpkg-deb -f "$deb" Package Version Architecture Depends Recommends
