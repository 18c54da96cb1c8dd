#!/usr/bin/env python3
"""Checks that cnnviz's layers only depend downwards.

    core -> methods, io -> run -> serve -> cli        (bench: core and methods)

A file's layer is its folder: include/cnnviz/<layer>/ or src/<layer>/. Each
`#include "cnnviz/<layer>/..."` (and each quoted include of a file beside it)
must name the file's own layer or one it may use; third-party headers are
held to their layers too (no OpenCV below io, no HTTP below serve, no CLI11
outside cli and bench). Method names appear as string literals only in
src/methods/ (the registry is the one source of a method's facts).

Usage: check_layers.py [ROOT]   (default: the repository holding this file)
Prints one line per violation and exits 1 when there is any.
"""
import pathlib
import re
import sys

# What each layer may include, itself included.
ALLOWED = {
    "core": {"core"},
    "methods": {"core", "methods"},
    "io": {"core", "io"},
    "run": {"core", "methods", "io", "run"},
    "serve": {"core", "methods", "io", "run", "serve"},
    "cli": {"core", "methods", "io", "run", "serve", "cli"},
    "bench": {"core", "methods", "bench"},
}
# Third-party headers by the lowest layer that may use them.
EXTERNAL = [
    (re.compile(r"^opencv2/"), {"io", "run", "serve", "cli"}),
    (re.compile(r"^httplib\.h$"), {"serve"}),
    (re.compile(r"^CLI/"), {"cli", "bench"}),
    # ONNX's protobuf classes: the importer in core only (its API, onnx.h, has none).
    (re.compile(r"^(onnx|google/protobuf)/"), {"core"}),
]
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def layer_of(root, path):
    rel = path.relative_to(root).parts
    if rel[:2] == ("include", "cnnviz") and len(rel) > 3:
        return rel[2]
    if rel[0] == "src" and len(rel) > 2:
        return rel[1]
    return None


def method_names(root):
    text = (root / "src/methods/registry.cpp").read_text()
    names = set(re.findall(r'Row\("([a-z+-]+)"', text))
    names |= set(re.findall(r'\.alias\("([a-z+-]+)"\)', text))
    return names


def check_file(root, path, names):
    layer = layer_of(root, path)
    if layer not in ALLOWED:
        return []
    problems = []
    text = path.read_text(errors="replace")
    for m in INCLUDE.finditer(text):
        kind, target = m.group(1), m.group(2)
        line = text.count("\n", 0, m.start()) + 1
        where = f"{path.relative_to(root)}:{line}"
        if kind == '"':
            own = re.match(r"cnnviz/([a-z]+)/", target)
            used = own.group(1) if own else (layer if (path.parent / target).exists() else None)
            if used is None:
                problems.append(f"{where}: include \"{target}\" is neither cnnviz/<layer>/ nor beside it")
            elif used not in ALLOWED[layer]:
                problems.append(f"{where}: {layer} includes {used} (\"{target}\"): layers depend downwards only")
            continue
        for pattern, layers in EXTERNAL:
            if pattern.search(target) and layer not in layers:
                problems.append(f"{where}: {layer} includes <{target}>, which belongs to "
                                f"{', '.join(sorted(layers))}")
    if layer != "methods" and path.suffix == ".cpp":
        for name in names:
            for m in re.finditer(r'"' + re.escape(name) + r'"', text):
                line = text.count("\n", 0, m.start()) + 1
                problems.append(f"{path.relative_to(root)}:{line}: names the method '{name}' "
                                "outside src/methods/ (ask the registry)")
    return problems


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent.parent)
    root = root.resolve()
    names = method_names(root)
    files = sorted(p for d in ("include/cnnviz", "src") for p in (root / d).rglob("*")
                   if p.suffix in (".h", ".cpp"))
    problems = [p for f in files for p in check_file(root, f, names)]
    for p in problems:
        print(p)
    print(f"check_layers: {len(files)} files, {len(problems)} violations")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
