#!/usr/bin/env bash
# The Debian package: cpack -G DEB from the build tree, then
#  - its name (cnnviz_<version>_<arch>.deb) and control fields;
#  - Depends names the runtime packages of what the binary links (LibTorch,
#    the OpenCV modules, ISA-L, libjpeg, libpng), each installed here, and
#    apt finds them all (apt-get install --simulate);
#  - its file list;
#  - the extracted binary (dpkg-deb -x) runs --version and a classify from
#    another working directory, finding the model in the user data directory.
#
# usage: package_test.sh BUILD_DIR MODEL.pt
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 BUILD_DIR MODEL.pt" >&2; exit 2; }
build=$(cd "$1" && pwd) model=$(realpath "$2")
src=$(cd "$(dirname "$0")/.." && pwd)
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
command -v dpkg-shlibdeps >/dev/null ||
  fail "dpkg-shlibdeps is missing (Debian's dpkg-dev; scripts/test.sh installs it)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$build" && cpack -G DEB -B "$tmp/pkg" >"$tmp/cpack.log" 2>&1) ||
  fail "cpack failed: $(tail -n 20 "$tmp/cpack.log")"
version=$(sed -n 's/.*kVersion = "\(.*\)".*/\1/p' "$src/include/cnnviz/core/version.h")
deb=$tmp/pkg/cnnviz_${version}_$(dpkg --print-architecture).deb
[ -f "$deb" ] || fail "no $(basename "$deb") in: $(ls "$tmp/pkg")"

[ "$(dpkg-deb -f "$deb" Package)" = cnnviz ] || fail "Package: $(dpkg-deb -f "$deb" Package)"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "Version: $(dpkg-deb -f "$deb" Version)"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for want in libtorch libopencv-core libopencv-imgproc libopencv-imgcodecs libisal libjpeg libpng libc6 \
  libopenblas0-openmp; do
  [[ $depends == *"$want"* ]] || fail "Depends lacks $want: $depends"
done
# Every dependency is met by an installed package (the ones that provide
# what the binary links here): one of its alternatives, "a | b", at least.
while IFS= read -r dep; do
  met=
  for pkg in $(tr '|' '\n' <<<"$dep" | sed 's/(.*//; s/ //g'); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' && met=1
  done
  [ -n "$met" ] || fail "Depends names $dep, which is not installed here"
done < <(tr ',' '\n' <<<"$depends")
apt-get install --simulate "$deb" >"$tmp/apt.log" 2>&1 ||
  fail "apt-get install --simulate: $(tail -n 5 "$tmp/apt.log")"

files=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/bin/cnnviz ./usr/bin/cnnviz-export ./usr/share/man/man1/cnnviz.1 \
  ./usr/share/bash-completion/completions/cnnviz ./usr/share/zsh/vendor-completions/_cnnviz \
  ./usr/share/doc/cnnviz/README.md ./usr/share/doc/cnnviz/LICENSE ./usr/share/doc/cnnviz/docs/guide.md \
  ./usr/share/cnnviz/scripts/export_models.py; do
  grep -qxF "$f" <<<"$files" || fail "the package lacks $f"
done
if grep -v -e '^\./usr/' -e '^\./$' <<<"$files" | grep -q .; then
  fail "files outside /usr: $(grep -v -e '^\./usr/' -e '^\./$' <<<"$files")"
fi

root=$tmp/root
dpkg-deb -x "$deb" "$root"
mkdir -p "$tmp/home" "$tmp/data/cnnviz/models" "$tmp/elsewhere"
cp "$model" "$tmp/data/cnnviz/models/squeezenet1_1.pt"
cd "$tmp/elsewhere"
export HOME=$tmp/home XDG_DATA_HOME=$tmp/data XDG_CONFIG_HOME=$tmp/home/.config
unset CNNVIZ_MODEL CNNVIZ_MODELS CNNVIZ_DEVICE
"$root/usr/bin/cnnviz" --version | grep -q "^cnnviz $version$" || fail "--version of the extracted binary"
python3 -c 'import zlib, struct
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
raw = b"".join(b"\0" + bytes((x * 7 + y * 3) % 256 for x in range(48) for _ in range(3)) for y in range(40))
open("img.png", "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 48, 40, 8, 2, 0, 0, 0))
  + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))'
"$root/usr/bin/cnnviz" classify -q -m squeezenet1_1 img.png >"$tmp/out" ||
  fail "classify with the extracted binary: $(cat "$tmp/out")"
grep -q "img.png" "$tmp/out" || fail "classify printed: $(cat "$tmp/out")"
echo "package test: ok ($(basename "$deb"), $(du -h "$deb" | cut -f1))"
