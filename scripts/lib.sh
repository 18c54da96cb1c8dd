# Shared by scripts/setup.sh and scripts/test.sh (sourced, not run).

# Debian packages cnnviz needs to build, test and export models.
CNNVIZ_PACKAGES=(
  cmake g++ make pkg-config
  libtorch-dev libopencv-dev libcli11-dev nlohmann-json3-dev libgtest-dev
  libisal-dev  # ISA-L: the fast deflate behind the PNGs a run writes
  libjpeg-dev libpng-dev  # JPEG and PNG decoding: sizes first, errors reported, not printed
  libopenblas0-openmp  # LibTorch's matrix products (Debian's default libblas.so.3 is the reference one)
  python3 python3-torch python3-torchvision python3-numpy python3-pil
  python3-skimage  # ships chelsea.png, the sample cat photo (CC0)
  libcpp-httplib-dev  # cnnviz serve's HTTP server
  libonnx-dev libprotobuf-dev  # reading ONNX models: ONNX's protobuf classes and checker
  python3-onnx  # export_models.py --onnx writes the model's metadata with it
  help2man  # the man page, from the binary's own --help, at build time
  dpkg-dev  # dpkg-shlibdeps: the Debian package's Depends (scripts/package.sh)
)

# Debian packages only the test suite needs (scripts/test.sh installs them,
# setup.sh does not).
CNNVIZ_TEST_PACKAGES=(
  chromium  # opens the HTML report and the explorer headless (tests/*browser_test*)
  python3-websocket  # drives chromium over the DevTools protocol (tests/serve_browser_test.py)
  python3-jsonschema  # validates every JSON output against schemas/
  bash-completion zsh man-db  # the installed completions and man page (tests/install_test.sh)
  universal-ctags  # function lengths (scripts/long_functions.sh, ctest unit.function_length)
  libonnx-testdata  # ONNX's backend conformance tests (tests/onnx_conformance_test.cpp)
  libjpeg-turbo-progs  # jpegtran: restart markers, arithmetic coding (tests/conformance_test.py)
)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs the packages among "$@" that are not installed yet; does nothing
# (and needs no network or root) when all are there.
install_missing() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get: install them by hand"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "missing packages ${missing[*]}: run as root or install sudo"
    sudo=(sudo)
  fi
  log "installing ${missing[*]}"
  "${sudo[@]}" apt-get update -q >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
}

# Configures build/ (Release) once and builds the given targets (all when none).
build() {
  local root=$1; shift
  if [ ! -f "$root/build/CMakeCache.txt" ]; then
    log "configuring build/ (Release)"
    cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >&2 || die "cmake configure failed"
  fi
  local targets=()
  for t in "$@"; do targets+=(--target "$t"); done
  log "building ${*:-all targets}"
  cmake --build "$root/build" -j "$(nproc)" "${targets[@]}" >&2 || die "build failed"
}
