#!/usr/bin/env python3
"""cnnviz's image decoding against Pillow's, over public conformance files.

The files (tests/conformance/, provenance in its README.md):
  - libpng's PngSuite subset and contrib/testpngs (every colour type and bit
    depth, palette and grey transparency, interlacing, gamma, sRGB and iCCP
    chunks, bad palettes, and the "crashers");
  - libjpeg-turbo's testimages (baseline, progressive, arithmetic-coded,
    12-bit JPEG; 16-bit PNG and PGM; BMP);
  - variants made here from testorig.ppm: JPEG (subsampling, progressive,
    restart markers, arithmetic coding, greyscale, CMYK and YCCK), BMP,
    TIFF, WebP, PNM and JPEG 2000 in the modes each format stores;
  - a damaged copy of each (cut short, and with bytes overwritten).

The rules:
  - a valid file, cnnviz decodes to the same pixels as Pillow after cnnviz's
    documented conversion to 8-bit RGB (docs/formats.md#images): palettes
    expanded, grey replicated, alpha and transparency dropped, 16-bit
    samples' high byte, four-component JPEGs as inverted (Adobe) CMYK
    through Pillow's formula, no colour management; 8-bit TIFFs with alpha
    premultiplied as libtiff's RGBA reader does. The tolerance is 0: both
    read the same libraries with the same settings. Valid files are all but
    the crashers, the bad palettes and the damaged copies; of them only the
    12-bit JPEG is refused, and it is called unsupported, not corrupt;
  - an invalid file (and the 12-bit JPEG) is refused with exit 3 and one
    line naming the image, or decoded (compared with Pillow's when both
    decode it, for the record: out-of-range palette indices are black in
    libpng and grey in Pillow; Pillow skips PNG checksums and decodes
    damaged JPEGs that libjpeg warns about, which cnnviz refuses);
  - nothing crashes or hangs (one process decodes them all, under a time
    limit, and names the image it was on).

usage: conformance_test.py --tool cnnviz_decode_tool --files tests/conformance
"""
import argparse
import io
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

EXTENSIONS = {".png", ".jpg", ".bmp", ".ppm", ".pgm", ".tif", ".webp", ".pbm", ".jp2", ".j2k"}
BUDGET = 50_000_000


def pillow_rgb(path):
    """Pillow's decode of `path` with cnnviz's conversion to 8-bit RGB, or None."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.format == "TIFF" and im.mode == "RGBA":
                return libtiff_premultiplied(np.asarray(im))
            return to_rgb(im)
    except Exception:  # Pillow refuses it: any of its many exception types
        return None


def libtiff_premultiplied(rgba):
    """8-bit TIFFs with alpha reach cnnviz through libtiff's RGBA reader (in
    OpenCV), which multiplies colour by alpha as (c * a + 127) / 255."""
    c = rgba[..., :3].astype(np.int64)
    a = rgba[..., 3:].astype(np.int64)
    return ((c * a + 127) // 255).astype(np.uint8)


def to_rgb(im):
    if im.mode in ("I", "I;16", "I;16B", "I;16L"):
        a = (np.asarray(im).astype(np.int64) >> 8).astype(np.uint8)  # 16-bit grey
    elif im.mode in ("LA", "La"):
        a = np.asarray(im)[..., 0]
    elif im.mode in ("RGBA", "RGBa", "RGBX"):
        a = np.asarray(im)[..., :3]
    elif im.mode in ("P", "PA", "1", "CMYK", "YCbCr"):
        a = np.asarray(im.convert("RGB"))
    elif im.mode in ("L", "RGB"):
        a = np.asarray(im)
    else:
        raise ValueError(f"no reference conversion for Pillow mode {im.mode}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return a


def pillow_variants(src, out):
    """The other formats and JPEG's variants, written by Pillow."""
    rgb = Image.open(src).convert("RGB")
    w, h = rgb.size
    alpha = Image.linear_gradient("L").resize((w, h))
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    grey = rgb.convert("L")
    grey16 = Image.fromarray((np.asarray(grey).astype(np.uint16) * 257 + 3).astype(np.uint16))
    pal = rgb.quantize(64)
    bilevel = grey.convert("1")
    plan = {
        "jpeg-420.jpg": (rgb, dict(quality=90)),
        "jpeg-444.jpg": (rgb, dict(quality=95, subsampling=0)),
        "jpeg-422.jpg": (rgb, dict(quality=85, subsampling=1)),
        "jpeg-progressive.jpg": (rgb, dict(quality=90, progressive=True)),
        "jpeg-optimized.jpg": (rgb, dict(quality=75, optimize=True)),
        "jpeg-grey.jpg": (grey, dict(quality=90)),
        "jpeg-cmyk-pillow.jpg": (rgb.convert("CMYK"), dict(quality=90)),
        "jpeg-exif-rotated.jpg": (rgb, dict(quality=90, exif=exif_orientation(rgb, 6))),
        "bmp-rgb.bmp": (rgb, {}),
        "bmp-rgba.bmp": (rgba, {}),
        "bmp-grey.bmp": (grey, {}),
        "bmp-palette.bmp": (pal, {}),
        "bmp-1bit.bmp": (bilevel, {}),
        "tiff-rgb.tif": (rgb, {}),
        "tiff-rgb-lzw.tif": (rgb, dict(compression="tiff_lzw")),
        "tiff-rgb-deflate.tif": (rgb, dict(compression="tiff_adobe_deflate")),
        "tiff-rgb-packbits.tif": (rgb, dict(compression="packbits")),
        "tiff-rgba.tif": (rgba, {}),
        "tiff-grey.tif": (grey, {}),
        "tiff-grey16.tif": (grey16, {}),
        "tiff-palette.tif": (pal, {}),
        "tiff-1bit.tif": (bilevel, {}),
        "webp-lossless.webp": (rgb, dict(lossless=True)),
        "webp-lossless-rgba.webp": (rgba, dict(lossless=True)),
        "webp-lossy.webp": (rgb, dict(quality=80)),
        "pnm-rgb.ppm": (rgb, {}),
        "pnm-grey.pgm": (grey, {}),
        "pnm-1bit.pbm": (bilevel, {}),
        "jp2-rgb.jp2": (rgb, {}),
        "jp2-grey.jp2": (grey, {}),
        "j2k-codestream.j2k": (rgb, {}),
    }
    paths = []
    for name, (image, options) in plan.items():
        path = out / name
        image.save(path, **options)
        paths.append(path)
    return paths


def exif_orientation(image, value):
    exif = image.getexif()
    exif[0x0112] = value
    return exif.tobytes()


def jpegtran_variants(src, out):
    """Restart markers, arithmetic coding and progression, by libjpeg-turbo's jpegtran."""
    flags = {
        "jpegtran-restart-1row.jpg": ["-restart", "1"],
        "jpegtran-restart-3blocks.jpg": ["-restart", "3B"],
        "jpegtran-arithmetic.jpg": ["-arithmetic"],
        "jpegtran-progressive.jpg": ["-progressive"],
        "jpegtran-progressive-arithmetic.jpg": ["-progressive", "-arithmetic"],
        "jpegtran-grey.jpg": ["-grayscale"],
    }
    paths = []
    for name, args in flags.items():
        path = out / name
        subprocess.run(["jpegtran", *args, "-outfile", str(path), str(src)], check=True)
        paths.append(path)
    return paths


def cmyk_variants(tool, src, out):
    """Adobe CMYK and YCCK JPEGs written by libjpeg's own encoder."""
    paths = []
    for kind in ("cmyk", "ycck"):
        path = out / f"libjpeg-{kind}.jpg"
        subprocess.run([tool, "cmyk-jpeg", str(src), str(path), kind], check=True)
        paths.append(path)
    return paths


def damaged_copies(paths, out):
    """Each file cut at 60%, and with a run of bytes in its middle overwritten."""
    damaged = []
    for i, path in enumerate(paths):
        data = path.read_bytes()
        cut = out / f"cut-{i}{path.suffix}"
        cut.write_bytes(data[: len(data) * 6 // 10])
        smashed = bytearray(data)
        mid = len(data) // 2
        for j in range(mid, min(mid + 16, len(data))):
            smashed[j] ^= 0x5A
        bad = out / f"smashed-{i}{path.suffix}"
        bad.write_bytes(bytes(smashed))
        damaged += [cut, bad]
    return damaged


def decode_all(tool, paths, out):
    """cnnviz's decode of every path: {index: array or (exit code, message)}."""
    proc = subprocess.run(
        [tool, "decode", str(out), str(BUDGET), *map(str, paths)],
        capture_output=True, text=True, timeout=300)
    results = {}
    for line in proc.stdout.splitlines():
        index, status, *rest = line.split(" ", 3)
        i = int(index)
        if status == "ok":
            with Image.open(out / f"{i}.ppm") as im:
                results[i] = np.asarray(im)
        else:
            results[i] = (int(rest[0]), rest[1])
    if proc.returncode != 0 or len(results) != len(paths):
        on = paths[len(results)] if len(results) < len(paths) else "?"
        sys.exit(f"FAIL: the decoder stopped (status {proc.returncode}) on {on}\n{proc.stderr}")
    if proc.stderr:
        sys.exit(f"FAIL: the libraries printed on stderr:\n{proc.stderr}")
    return results


UNSUPPORTED = {"monkey12.jpg"}  # 12-bit samples


def check(paths, results, valid, failures):
    counts = {}
    for i, path in enumerate(paths):
        ref, got = pillow_rgb(path), results[i]
        name = str(path)
        must_decode = valid and path.name not in UNSUPPORTED
        if isinstance(got, tuple):
            code, message = got
            if code != 3 or not message.startswith(f"image '{name}': ") or "\n" in message:
                failures.append(f"{name}: refusal is not one line with exit 3: {code} {message}")
            if must_decode:
                failures.append(f"{name}: valid, refused: {message}")
            if path.name in UNSUPPORTED and ("unsupported" not in message or "corrupt" in message):
                failures.append(f"{name}: must be called unsupported: {message}")
            outcome = "refused" + (" (Pillow decodes it)" if ref is not None else "")
        elif path.name in UNSUPPORTED:
            failures.append(f"{name}: decoded, expected unsupported")
            outcome = "decoded"
        elif ref is None:
            outcome = "decoded (Pillow refuses it)"
            if must_decode:
                failures.append(f"{name}: Pillow cannot read a valid file")
        elif ref.shape != got.shape or not np.array_equal(ref, got):
            diff = (f"shape {got.shape}, Pillow's {ref.shape}" if ref.shape != got.shape else
                    f"up to {int(np.abs(ref.astype(int) - got.astype(int)).max())}")
            outcome = "decoded, pixels differ from Pillow's"
            if must_decode:
                failures.append(f"{name}: pixels differ from Pillow's: {diff}")
        else:
            outcome = "decoded, same pixels as Pillow"
        if os.environ.get("CONFORMANCE_VERBOSE"):
            print(f"  {name}: {outcome}")
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def invalid(path):
    return path.parent.name in ("crashers", "badpal")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tool", required=True)
    parser.add_argument("--files", required=True, type=pathlib.Path)
    args = parser.parse_args()
    if not shutil.which("jpegtran"):
        sys.exit("FAIL: jpegtran not found (Debian's libjpeg-turbo-progs; scripts/test.sh installs it)")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="cnnviz-conformance-"))
    try:
        suite = sorted(p for p in args.files.rglob("*") if p.suffix in EXTENSIONS)
        src = args.files / "libjpeg-turbo" / "testorig.ppm"
        made = tmp / "made"
        made.mkdir()
        made_paths = (pillow_variants(src, made)
                      + jpegtran_variants(args.files / "libjpeg-turbo" / "testorig.jpg", made)
                      + cmyk_variants(args.tool, src, made))
        damaged_dir = tmp / "damaged"
        damaged_dir.mkdir()
        damaged = damaged_copies(suite + made_paths, damaged_dir)
        failures = []
        groups = (("valid conformance files", [p for p in suite if not invalid(p)], True),
                  ("made here", made_paths, True),
                  ("invalid conformance files", [p for p in suite if invalid(p)], False),
                  ("damaged copies", damaged, False))
        for label, paths, valid in groups:
            out = tmp / "out"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            counts = check(paths, decode_all(args.tool, paths, out), valid, failures)
            print(f"{label}: {len(paths)} files; " + "; ".join(f"{k}: {v}" for k, v in counts.items()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
