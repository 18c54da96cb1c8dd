#!/usr/bin/env python3
"""Benchmarks cnnviz against the same work in Python, side by side in one run, and prints the
ratios against their targets.

Both sides run as fresh processes (build/cnnviz or build/cnnviz_bench; scripts/bench_*.py or
scripts/serve_load.py for eager PyTorch), alternating, best of R. Weights do not change the
cost: a model that is neither a file nor models/NAME.pt is exported with random weights into
build/bench-models (scripts/export_models.py --random-weights).

Each figure is printed on a line of its own; a ratio with a target ends with PASS or MISS.
--json FILE also writes every figure (with its unit, and its target where it has one).

Without a mode, bench.py runs classify. `bench.py MODE --help` tells what MODE measures.
"""

import argparse
import importlib.util
import inspect
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

PROG = "bench.py"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
BUILD = os.path.join(ROOT, "build")
SHARED_IMAGES = os.path.normpath(os.path.join(ROOT, "..", "shared", "images"))
TIMINGS_PREFIX = "cnnviz: timings "
# glibc's malloc set as cnnviz sets it (cnnviz::reuse_freed_memory): no per-block mappings,
# no trimming on free.
MALLOC_AS_CNNVIZ = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "2147483647"}
SYSTEM_MALLOC = {"CNNVIZ_SYSTEM_MALLOC": "1"}
REEXEC_MARK = "CNNVIZ_BENCH_PYTHON"


class BenchError(Exception):
    """A step of the benchmark failed; the message says which."""


# ---------------------------------------------------------------------------------------------
# Processes and their JSON

def run(cmd, env=None, stdout=subprocess.DEVNULL):
    """Runs `cmd` to the end; returns (CompletedProcess with text stderr/stdout, wall ms).
    Raises BenchError, with the last lines of stderr, when it fails."""
    full_env = dict(os.environ, **env) if env else None
    start = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], env=full_env, stdin=subprocess.DEVNULL,
                          stdout=stdout, stderr=subprocess.PIPE, text=True)
    wall_ms = (time.perf_counter() - start) * 1000.0
    if proc.returncode != 0:
        tail = "\n  ".join(proc.stderr.strip().splitlines()[-5:])
        raise BenchError(f"{os.path.basename(str(cmd[0]))} {cmd[1]} exited with "
                         f"{proc.returncode}:\n  {tail}")
    return proc, wall_ms


def timings_of(proc):
    """The JSON object of a `cnnviz ... --timings` run's "cnnviz: timings {...}" line."""
    for line in reversed(proc.stderr.splitlines()):
        if line.startswith(TIMINGS_PREFIX):
            return json.loads(line[len(TIMINGS_PREFIX):])
    raise BenchError("no 'cnnviz: timings' line in the output (a binary without --timings?)")


def json_of(stdout):
    """The last JSON line a helper (cnnviz_bench, scripts/bench_*.py) printed on stdout."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"no JSON line in the output: {stdout.strip()[-200:]!r}")


def json_run(cmd, env=None):
    """Runs a helper that prints one JSON line; returns that object."""
    proc, _ = run(cmd, env=env, stdout=subprocess.PIPE)
    return json_of(proc.stdout)


def manifest_timings(out_dir):
    """The "timings" object of a run's manifest.json."""
    with open(os.path.join(out_dir, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)["timings"]


def peak_rss_kib(cmd):
    """Peak resident memory (KiB, the kernel's ru_maxrss for this child alone, as
    /usr/bin/time reports it) of running `cmd` to the end."""
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip()[-300:]
            raise BenchError(f"{os.path.basename(str(cmd[0]))} {cmd[1]} exited with "
                             f"{proc.returncode}: {tail}")
    return usage.ru_maxrss


def alternate(repeat, *measures, by=None):
    """Calls each measure once per round, in turn, for `repeat` rounds, so that a drift in the
    machine's load hits every side alike. A measure returns a dict of figures. Returns, per
    measure, the least value of each figure over the rounds; with `by`, the whole dict of the
    round whose figure `by` is least."""
    rounds = [[] for _ in measures]
    for _ in range(repeat):
        for runs, measure in zip(rounds, measures):
            runs.append(measure())
    if by:
        return [min(runs, key=lambda r: r[by]) for runs in rounds]
    return [{key: min(r[key] for r in runs) for key in runs[0]} for runs in rounds]


# ---------------------------------------------------------------------------------------------
# Printed and saved figures

def _number(value):
    if isinstance(value, int):
        return str(value)
    if value != value:  # NaN
        return "nan"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


class Report:
    """Prints one line per figure under section titles and keeps them all for --json."""

    def __init__(self, mode, settings):
        self.doc = {"mode": mode, "settings": settings, "sections": []}
        self.figures = None

    def section(self, title):
        print(title, flush=True)
        self.figures = {}
        self.doc["sections"].append({"title": title, "figures": self.figures})

    def figure(self, key, label, value, unit):
        print(f"  {label:<58} {_number(value):>9} {unit}", flush=True)
        self.figures[key] = {"label": label, "value": value, "unit": unit}

    def ratio(self, key, label, value, target=None):
        """A ratio; `target` is ("<=" or ">=", bound) where the benchmark has one."""
        line = f"  {label:<58} {value:>9.2f}x"
        entry = {"label": label, "value": value, "unit": "x"}
        if target:
            op, bound = target
            if f"{value:.2f}" == f"{bound:.2f}":  # a third digit shows which side it is on
                line = f"  {label:<58} {value:>10.3f}x"
            passed = value <= bound if op == "<=" else value >= bound
            line += f"   target {op} {bound:.2f}   {'PASS' if passed else 'MISS'}"
            entry.update(target=f"{op} {bound}", passed=passed)
        print(line, flush=True)
        self.figures[key] = entry

    def text(self, lines):
        """Lines a helper printed itself (kept verbatim in the JSON)."""
        self.figures.setdefault("text", []).extend(lines)

    def save(self, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.doc, f, indent=2)
            f.write("\n")


# ---------------------------------------------------------------------------------------------
# Binaries, models and images

def use_torch_python():
    """Re-runs this script under the interpreter that imports torch and torchvision
    (scripts/find_python.sh: CNNVIZ_PYTHON, /usr/bin/python3, ...), which the helpers, PIL and
    scikit-image's sample photo need."""
    found = subprocess.run([os.path.join(SCRIPTS, "find_python.sh")], stdout=subprocess.PIPE,
                           text=True)
    if found.returncode != 0:
        raise BenchError("no Python with torch (see the message above)")
    python = found.stdout.strip()
    if os.environ.get(REEXEC_MARK) or os.path.abspath(sys.executable) == python:
        return
    sys.stdout.flush()
    os.environ[REEXEC_MARK] = python
    os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:])


def build_binary(name):
    path = os.path.join(BUILD, name)
    if not os.access(path, os.X_OK):
        raise BenchError(f"build/{name} missing (build first: scripts/setup.sh, or "
                         f"cmake --build build)")
    return path


BENCH_DETECTORS = {"yolov8_resnet50", "tiny_yolov8"}  # tests/reference/tiny_models.py


def model_file(name):
    """NAME if it is a file, else models/NAME.pt, else build/bench-models/NAME.pt, exported
    with random weights when missing (weights do not change the cost)."""
    if os.path.isfile(name):
        return os.path.abspath(name)
    mine = os.path.join(ROOT, "models", name + ".pt")
    if os.path.isfile(mine):
        return mine
    outdir = os.path.join(BUILD, "bench-models")
    path = os.path.join(outdir, name + ".pt")
    if not os.path.isfile(path):
        print(f"{PROG}: exporting {name} with random weights into build/bench-models",
              file=sys.stderr, flush=True)
        # The benchmark's own detector is built by the tests' model script.
        exporter = ([os.path.join(ROOT, "tests", "reference", "tiny_models.py")]
                    if name in BENCH_DETECTORS else
                    [os.path.join(SCRIPTS, "export_models.py"), "--random-weights"])
        proc = subprocess.run([sys.executable, *exporter, "-o", outdir, name], stdout=sys.stderr)
        if proc.returncode != 0 or not os.path.isfile(path):
            raise BenchError(f"cannot export model '{name}' (see export_models.py's message)")
    return path


def onnx_twin(name, model):
    """The ONNX file beside MODEL (the same name with .onnx), else build/bench-models/NAME.onnx,
    exported with random weights when missing (scripts/export_models.py --onnx)."""
    beside = os.path.splitext(model)[0] + ".onnx"
    if os.path.isfile(beside):
        return beside
    outdir = os.path.join(BUILD, "bench-models")
    path = os.path.join(outdir, os.path.basename(beside))
    if not os.path.isfile(path):
        print(f"{PROG}: exporting {name} as ONNX with random weights into build/bench-models",
              file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, os.path.join(SCRIPTS, "export_models.py"),
                               "--random-weights", "--onnx", "-o", outdir, name],
                              stdout=sys.stderr)
        if proc.returncode != 0 or not os.path.isfile(path):
            raise BenchError(f"cannot export model '{name}' as ONNX (see export_models.py's "
                             f"message)")
    return path


def chelsea():
    """scikit-image's sample cat photo (CC0), found without importing scikit-image."""
    spec = importlib.util.find_spec("skimage")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "data", "chelsea.png")
        if os.path.isfile(path):
            return path
    return None


def sample_sources():
    """The shared photos and scikit-image's cat."""
    found = []
    if os.path.isdir(SHARED_IMAGES):
        found = [os.path.join(SHARED_IMAGES, f) for f in sorted(os.listdir(SHARED_IMAGES))
                 if not f.startswith(".")]
    found = [f for f in found + [chelsea()] if f and os.path.isfile(f)]
    if not found:
        raise BenchError("no sample images found (../shared/images, or python3-skimage)")
    return found


def make_images(folder, count):
    """COUNT copies of the sample photos, cycled, in FOLDER: every file is read from disk like
    a real dataset's. Returns their paths in order."""
    sources = sample_sources()
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        src = sources[i % len(sources)]
        paths.append(os.path.join(folder, f"img{i:04d}{os.path.splitext(src)[1]}"))
        shutil.copyfile(src, paths[-1])
    return paths


def one_image():
    """The one image of the single-image modes: cat_dog.png, else scikit-image's cat."""
    path = os.path.join(SHARED_IMAGES, "cat_dog.png")
    path = path if os.path.isfile(path) else chelsea()
    if not path:
        raise BenchError("no sample image found (../shared/images/cat_dog.png, or python3-skimage)")
    return path


class Bench:
    """What every mode uses: options, the report, a scratch folder, the binaries and models."""

    def __init__(self, args, work):
        self.args, self.work = args, work
        self.threads = args.threads
        self.repeat = getattr(args, "repeat", 1)
        self.python = sys.executable
        self.cnnviz = build_binary("cnnviz")
        self.model = model_file(args.model)
        self.report = Report(args.mode, {k: v for k, v in vars(args).items()
                                         if k not in ("json", "func")})
        self.report.doc["settings"]["model_path"] = self.model
        self._fresh = itertools.count()

    def bench_binary(self):
        return build_binary("cnnviz_bench")

    def script(self, name):
        return [self.python, os.path.join(SCRIPTS, name)]

    def fresh(self, name):
        """A path under the scratch folder that does not exist yet."""
        return os.path.join(self.work, f"{name}{next(self._fresh)}")

    def fwdbwd_measure(self, image, facts):
        """A measure for alternate(): eager PyTorch's one forward + one backward of `image`
        (bench_visualize.py --mode fwdbwd, after its warm-up) as {"ms": ...}; the FLOPs of that
        work go to facts["flops"]."""
        def measure():
            run = json_run(self.script("bench_visualize.py") + [
                self.model, image, "--mode", "fwdbwd", "--threads", self.threads, "--repeat", 1])
            facts["flops"] = run["flops"]
            return {"ms": run["best_ms"]}
        return measure

    def python_fwdbwd(self, image, batch=1, repeat=1):
        """Eager PyTorch's one forward + one backward of `batch` copies of `image`
        (bench_visualize.py --mode fwdbwd, the best of `repeat` timed runs after its warm-up):
        ms."""
        return json_run(self.script("bench_visualize.py") + [
            self.model, image, "--mode", "fwdbwd", "--batch", batch,
            "--threads", self.threads, "--repeat", repeat])["best_ms"]

    def name(self, path=None):
        return os.path.basename(path or self.model)

    def image_folder(self, name, count):
        """A folder of COUNT sample photos under the scratch folder."""
        folder = os.path.join(self.work, name)
        make_images(folder, count)
        return folder


# ---------------------------------------------------------------------------------------------
# classify

def mode_classify(b):
    """`cnnviz classify` against PIL + torchvision transforms + the same TorchScript file
    (scripts/bench_classify.py) over N images (default 32, cycled from ../shared/images and
    scikit-image's cat), batch B (default 8). Both sides are fresh processes timed after the
    model is loaded, cold (no warm-up), best of R (default 5), alternating; their whole-process
    wall times are printed too. Default model squeezenet1_1."""
    a = b.args
    images = make_images(os.path.join(b.work, "photos"), a.images)
    common = ["--batch-size", a.batch_size, "--threads", b.threads]

    def ours():
        proc, wall = run([b.cnnviz, "classify", "-m", b.model, *common, "--timings", *images])
        return {"run_ms": timings_of(proc)["run_ms"], "wall_ms": wall}

    def theirs():
        proc, wall = run(b.script("bench_classify.py") + [b.model, *images, *common,
                                                         "--repeat", 1, "--warmup", 0],
                         stdout=subprocess.PIPE)
        return {"run_ms": json_of(proc.stdout)["run_ms"][0], "wall_ms": wall}

    c, p = alternate(b.repeat, ours, theirs)
    r = b.report
    r.section(f"classify: {b.name()}, {a.images} images, batch {a.batch_size}, "
              f"{b.threads} threads, best of {b.repeat}")
    r.figure("cnnviz_ms_per_image", "cnnviz, after loading the model", c["run_ms"] / a.images,
             "ms/image")
    r.figure("cnnviz_process_ms", "cnnviz, whole process", c["wall_ms"], "ms")
    r.figure("python_ms_per_image", "python, after loading the model", p["run_ms"] / a.images,
             "ms/image")
    r.figure("python_process_ms", "python, whole process", p["wall_ms"], "ms")
    r.ratio("python_over_cnnviz", "python/cnnviz (excluding process start and model load)",
            p["run_ms"] / c["run_ms"])


# ---------------------------------------------------------------------------------------------
# batch

BATCH = 16


def mode_batch(b):
    """The batch targets (default model squeezenet1_1):
    - `classify` over 64 images at batch 16 against the pure forward throughput of the same
      model and batch size over the same 4 batches from a cold process (build/cnnviz_bench
      forward --warmup 0, synthetic input), best of R (default 3), alternating: once with T
      network threads (also with glibc's default malloc, CNNVIZ_SYSTEM_MALLOC=1, on both
      sides) and once with T-1 (one core left to decoding). The first cannot reach 1.0:
      decoding then competes with the network for the same cores; the printed bound is what
      perfect packing of both CPU loads would give. Target <= 1.10.
    - `gradcam --all-layers` (compute + writing) over 16 images against 16 x one image.
      Target <= 1.20.
    - peak memory (the child's ru_maxrss, as /usr/bin/time -v reports it) of
      `gradcam --all-layers` over N images (default 500) against 20.
    --classify-only stops after the first."""
    i64 = b.image_folder("i64", 64)
    classify_vs_forward(b, i64, b.threads)
    if b.threads > 1:
        classify_vs_forward(b, i64, b.threads - 1)
    if b.args.classify_only:
        return
    gradcam_batch_vs_one(b, b.image_folder("i1", 1), b.image_folder("i16", 16))
    gradcam_peak_memory(b, b.image_folder("i20", 20), b.image_folder("iN", b.args.images))


def classify_vs_forward(b, folder, t):
    """classify over FOLDER against cnnviz_bench forward, with T network threads."""
    bench = b.bench_binary()
    full = t >= b.threads

    def classify(env=None):
        proc, _ = run([b.cnnviz, "classify", "-q", "-m", b.model, "--batch-size", BATCH,
                       "--threads", t, "--timings", folder], env=env)
        tm = timings_of(proc)
        return {"ms": tm["per_image_ms"], "decode_ms": tm["decode_cpu_ms_per_image"]}

    def forward(env=None):
        return {"ms": json_run([bench, "forward", "-m", b.model, "--batch-size", BATCH,
                                "--batches", 4, "--warmup", 0, "--threads", t],
                               env=env)["total_ms_per_image"]}

    measures = [classify, forward]
    if full:
        measures += [lambda: classify(SYSTEM_MALLOC), lambda: forward(SYSTEM_MALLOC)]
    best = alternate(b.repeat, *measures)
    c, f, d = best[0]["ms"], best[1]["ms"], best[0]["decode_ms"]
    r = b.report
    r.section(f"classify, 64 images, batch {BATCH}, {t} network threads (best of {b.repeat})")
    r.figure("classify_ms_per_image", "classify", c, "ms/image")
    r.figure("forward_ms_per_image", "pure forward, same 4 batches", f, "ms/image")
    r.ratio("classify_over_forward", "classify/forward", c / f, ("<=", 1.10))
    if not full:
        r.figure("decode_cpu_ms_per_image",
                 f"decoding and preprocessing, on the {b.threads - t} spare core(s)", d,
                 "CPU ms/image")
        return
    r.figure("decode_cpu_ms_per_image", "decoding and preprocessing", d, "CPU ms/image")
    r.ratio("best_possible_ratio",
            f"best possible classify/forward, all {b.threads} cores in the forward",
            (f * b.threads + d) / (f * b.threads))
    cs, fs = best[2]["ms"], best[3]["ms"]
    r.figure("classify_system_malloc_ms_per_image", "classify, glibc's default malloc", cs,
             "ms/image")
    r.figure("forward_system_malloc_ms_per_image", "pure forward, glibc's default malloc", fs,
             "ms/image")
    r.ratio("classify_over_forward_system_malloc", "classify/forward, glibc's default malloc",
            cs / fs)
    r.ratio("heap_reuse_speedup_classify", "classify: speed-up from cnnviz's heap reuse", cs / c)
    r.ratio("heap_reuse_speedup_forward", "pure forward: speed-up from cnnviz's heap reuse",
            fs / f)


def gradcam_args(b, folder, out):
    return [b.cnnviz, "gradcam", "--all-layers", "-q", "--no-raw", "--batch-size", 4,
            "--threads", b.threads, "-m", b.model, "-o", out, folder]


def gradcam_batch_vs_one(b, one, sixteen):
    """gradcam --all-layers: compute + writing over 16 images against one image."""
    def ms(folder):
        proc, _ = run(gradcam_args(b, folder, b.fresh("out")) + ["--timings"])
        tm = timings_of(proc)
        return tm["compute_ms"] + tm["write_ms"]

    a, s = ms(one), ms(sixteen)
    r = b.report
    r.section("gradcam --all-layers, compute + writing, batch size 4 (one run each)")
    r.figure("one_image_ms", "1 image", a, "ms")
    r.figure("sixteen_images_ms", "16 images", s, "ms")
    r.figure("sixteen_images_ms_per_image", "16 images, per image", s / 16, "ms/image")
    r.ratio("per_image_over_one", "per image of 16 / 1 image", s / 16 / a, ("<=", 1.20))


def gradcam_peak_memory(b, twenty, many):
    """Peak memory of gradcam --all-layers over MANY images against 20."""
    r20 = peak_rss_kib(gradcam_args(b, twenty, b.fresh("mem")))
    rn = peak_rss_kib(gradcam_args(b, many, b.fresh("mem")))
    r = b.report
    r.section("peak memory, gradcam --all-layers, batch size 4")
    r.figure("peak_20_mib", "20 images", r20 / 1024, "MiB")
    r.figure("peak_n_mib", f"{b.args.images} images", rn / 1024, "MiB")
    r.ratio("peak_n_over_20", f"{b.args.images} images / 20 images", rn / r20)


# ---------------------------------------------------------------------------------------------
# pipeline

def output_files(folder):
    """(count, bytes) of the files a run wrote under FOLDER, its journal and manifest left
    out."""
    count = size = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            if not name.startswith(("journal", "manifest")):
                count += 1
                size += os.path.getsize(os.path.join(dirpath, name))
    return count, size


def whole_run(b, binary, args):
    """One whole run, `BINARY ARGS -q --timings --threads T -o OUT`, into an emptied OUT: its
    process wall time, the timings' compute, writing (wall and CPU, summed over writers), writers
    and tail (writing left after the last batch), and the files and bytes found on disk. A
    binary without the pipeline's timings (a --baseline) wrote on the main thread: writing is
    then its write_ms, all of it after compute."""
    out = os.path.join(b.work, "out")
    shutil.rmtree(out, ignore_errors=True)
    proc, wall = run([binary, *args, "-q", "--timings", "--threads", b.threads, "-o", out])
    tm = timings_of(proc)
    files, size = output_files(out)
    result = {"wall_ms": wall, "compute_ms": tm["compute_ms"], "write_ms": tm["write_ms"],
              "images": tm["images"], "files": files, "bytes": size}
    if "writers" in tm:
        result.update(writers=tm["writers"], write_cpu_ms=tm["write_cpu_ms"],
                      tail_ms=tm["tail_ms"])
    else:
        result.update(writers=1, write_cpu_ms=tm["write_ms"], tail_ms=tm["write_ms"])
    return result


def best_whole_runs(b, binaries, args):
    """Per binary, its whole run of least wall time over R rounds, alternating the binaries."""
    measures = [lambda binary=binary: whole_run(b, binary, args) for binary in binaries]
    return alternate(b.repeat, *measures, by="wall_ms")


def report_whole_run(r, key, label, w, floor_ms, targets=None):
    """The figures of one whole run; TARGETS may hold "write" and "wall" (over compute)."""
    targets = targets or {}
    compute, images = w["compute_ms"], max(1, w["images"])
    write, cpu = w["write_ms"] / w["writers"], w["write_cpu_ms"] / w["writers"]
    r.figure(f"{key}.wall_ms", f"{label}: process wall time", w["wall_ms"], "ms")
    r.figure(f"{key}.compute_ms", f"{label}: compute", compute, "ms")
    r.figure(f"{key}.write_ms_per_writer", f"{label}: writing per writer", write, "ms")
    r.figure(f"{key}.write_cpu_ms_per_writer", f"{label}: writing per writer, CPU", cpu, "ms")
    r.figure(f"{key}.writers", f"{label}: writers", w["writers"], "threads")
    r.figure(f"{key}.tail_ms", f"{label}: writing after the last batch", w["tail_ms"], "ms")
    r.figure(f"{key}.files_per_image", f"{label}: files per image", w["files"] / images,
             "files")
    r.figure(f"{key}.mb_per_image", f"{label}: bytes per image", w["bytes"] / images / 1e6, "MB")
    r.ratio(f"{key}.write_over_compute", f"{label}: writing/compute (wall time per writer)",
            write / compute, targets.get("write"))
    r.ratio(f"{key}.write_cpu_over_compute", f"{label}: writing/compute (CPU time per writer)",
            cpu / compute)
    r.ratio(f"{key}.wall_over_compute", f"{label}: wall/compute", w["wall_ms"] / compute,
            targets.get("wall"))
    r.ratio(f"{key}.wall_over_floor", f"{label}: wall/compute floor", w["wall_ms"] / floor_ms)


def mode_pipeline(b):
    """Whole runs as a user sees them (fresh processes, files written), best of R (default 3)
    by process wall time:
    - `gradcam --all-layers` over N photos (default 32, cycled from ../shared/images and
      scikit-image's cat) with `--write npy` (nothing but the raw arrays: the compute floor
      of the same run), with the default outputs (targets: writing <= compute, wall <= 2x
      compute) and with `--write overlay` (target: wall <= 1.3x compute); printed: process
      wall time, compute (forward, backward and maps), writing per writer thread (wall and
      CPU), the tail (writing left after the last batch), files and bytes per image, and the
      ratios. Default model squeezenet1_1 (the real one when models/ has it).
    - vgg16 `gradcam --all-layers` against `--layer features.28` on one image (cat_dog.png),
      whole process, alternating (target <= 1.3x).
    --baseline BIN runs the default-output and vgg16 runs with another cnnviz binary too,
    alternating with this one (e.g. a build of an older commit)."""
    a, r = b.args, b.report
    photos = b.image_folder("photos", a.images)
    binaries = [b.cnnviz] + ([a.baseline] if a.baseline else [])
    gradcam = ["gradcam", "--all-layers", "-m", b.model]
    r.section(f"gradcam --all-layers, {b.name()}, {a.images} photos, {b.threads} threads, "
              f"best of {b.repeat} (process wall time)")
    (floor,) = best_whole_runs(b, [b.cnnviz], gradcam + ["--write", "npy", photos])
    r.figure("npy.wall_ms", "--write npy: process wall time", floor["wall_ms"], "ms")
    r.figure("npy.compute_ms", "--write npy: compute (the compute floor)", floor["compute_ms"],
             "ms")
    runs = best_whole_runs(b, binaries, gradcam + [photos])
    report_whole_run(r, "default", "default outputs", runs[0], floor["compute_ms"],
                     {"write": ("<=", 1.0), "wall": ("<=", 2.0)})
    if a.baseline:
        report_whole_run(r, "baseline", "baseline", runs[1], floor["compute_ms"])
        r.ratio("baseline_over_cnnviz_wall", "baseline/cnnviz process wall time",
                runs[1]["wall_ms"] / runs[0]["wall_ms"])
    (overlay,) = best_whole_runs(b, [b.cnnviz], gradcam + ["--write", "overlay", photos])
    report_whole_run(r, "overlay", "--write overlay", overlay, floor["compute_ms"],
                     {"wall": ("<=", 1.3)})
    vgg16_all_layers_vs_one(b, binaries)


def vgg16_all_layers_vs_one(b, binaries):
    """vgg16 gradcam --all-layers against --layer features.28, whole processes, per binary."""
    vgg, image = model_file("vgg16"), one_image()
    for binary in binaries:
        def layers(*which):
            return lambda: {"wall_ms": whole_run(b, binary, ["gradcam", *which, "-m", vgg,
                                                             image])["wall_ms"]}
        every, one = alternate(b.repeat, layers("--all-layers"), layers("--layer", "features.28"))
        label = "vgg16" if binary == b.cnnviz else "vgg16 (baseline)"
        b.report.section(f"{label} gradcam, one image ({os.path.basename(image)}), "
                         f"whole process, best of {b.repeat}")
        b.report.figure("all_layers_ms", "--all-layers", every["wall_ms"], "ms")
        b.report.figure("one_layer_ms", "--layer features.28", one["wall_ms"], "ms")
        b.report.ratio("all_over_one", "--all-layers / --layer features.28",
                       every["wall_ms"] / one["wall_ms"], ("<=", 1.30))


# ---------------------------------------------------------------------------------------------
# visualize, backbone

def warm_compute(cmd, image):
    """Compute time of CMD (a `cnnviz ... --timings` run at batch 1) over one image in a
    fresh process (cold), and the least of three more images' in one process after a first
    (warm, as the Python side is measured after a warm-up: the timings' batch_compute_ms).
    Returns (cold ms, warm ms, the one-image run's timings)."""
    one = timings_of(run(cmd + [image])[0])
    four = timings_of(run(cmd + [image] * 4)[0])
    return one["compute_ms"], min(four["batch_compute_ms"][1:]), one


def mode_visualize(b):
    """`cnnviz guided-gradcam --all-layers` on one image (cat_dog.png): compute time (forward,
    backward passes and maps), warm (after a first image in the same process) and cold, best
    of R (default 3), file writing reported apart; against scripts/bench_visualize.py on the
    eager model: the floor (one forward + two backward passes, all layers hooked; also with
    glibc's malloc set as cnnviz sets it), one layer per pass, and the seed tutorial's loop
    (Grad-CAM + guided backprop per layer). Default model vgg16."""
    image = one_image()
    cmd = [b.cnnviz, "guided-gradcam", "--all-layers", "--no-raw", "--timings", "--threads",
           b.threads, "--batch-size", 1, "-m", b.model, "-o", os.path.join(b.work, "out")]

    def ours():
        cold, warm, one = warm_compute(cmd, image)
        return {"cold": cold, "warm": warm, "write": one["write_ms"]}

    def python(mode, repeat, env=None):
        return json_run(b.script("bench_visualize.py") + [
            b.model, image, "--threads", b.threads, "--mode", mode, "--repeat", repeat], env=env)

    (c,) = alternate(b.repeat, ours)
    floor = python("floor", b.repeat)
    reuse = python("floor", b.repeat, MALLOC_AS_CNNVIZ)["best_ms"]
    per_layer = python("per-layer", 1)["best_ms"]
    seed = python("seed", 1)["best_ms"]
    warm, r = c["warm"], b.report
    r.section(f"guided-gradcam --all-layers: {b.name()}, {floor['layers']} layers, 1 image, "
              f"{b.threads} threads")
    r.figure("cnnviz_warm_ms", f"cnnviz warm (best of {b.repeat})", warm, "ms")
    r.figure("cnnviz_cold_ms", "cnnviz cold, first image", c["cold"], "ms")
    r.figure("cnnviz_write_ms", "cnnviz writing PNGs", c["write"], "ms")
    r.figure("python_floor_ms", f"python floor: 1 fwd + 2 bwd (best of {b.repeat})",
             floor["best_ms"], "ms")
    r.ratio("cnnviz_over_floor", "cnnviz/floor", warm / floor["best_ms"])
    r.figure("python_floor_malloc_ms", "python floor, malloc as in cnnviz", reuse, "ms")
    r.ratio("cnnviz_over_floor_malloc", "cnnviz/floor, malloc as in cnnviz", warm / reuse)
    r.figure("python_per_layer_ms", "python one layer per pass", per_layer, "ms")
    r.ratio("per_layer_over_cnnviz", "python one layer per pass/cnnviz", per_layer / warm)
    r.figure("python_seed_ms", "python seed loop", seed, "ms")
    r.ratio("seed_over_cnnviz", "python seed loop/cnnviz", seed / warm)


def feature_layer_count(b):
    """The model's feature stages, from `cnnviz layers --json`."""
    proc, _ = run([b.cnnviz, "layers", "--json", "-m", b.model], stdout=subprocess.PIPE)
    return sum(bool(layer["feature_layer"]) for layer in json.loads(proc.stdout)["layers"])


def mode_backbone(b):
    """`cnnviz gradcam --all-layers` on one image (cat_dog.png; compute time, warm, best of R,
    default 3) against one forward + one backward of the same model in eager PyTorch
    (scripts/bench_visualize.py --mode fwdbwd, best of R), alternating: the cost of a map at
    every encoder block over the bare gradient (target <= 1.05x). Both as a share of the
    machine's matrix-product rate: a 2048-square float32 product through the same LibTorch and
    BLAS (cnnviz_bench gemm, best of R, timed between the runs), against the FLOPs of that
    forward and backward (bench_visualize.py's count: matrix products and convolutions; target:
    cnnviz at >= 0.6 of the rate). Default model vit_b_16 (12 blocks)."""
    image, bench = one_image(), b.bench_binary()
    cmd = [b.cnnviz, "gradcam", "--all-layers", "--write", "npy", "--timings", "--threads",
           b.threads, "--batch-size", 1, "-m", b.model, "-o", os.path.join(b.work, "out")]
    fwdbwd = {}
    python = b.fwdbwd_measure(image, fwdbwd)

    def gemm():  # the best rate is the least negated one
        run = json_run([bench, "gemm", "--gemm-size", 2048, "--batches", 3,
                        "--threads", b.threads])
        return {"minus_gflops": -run["gflops"], "blas": run["blas"]}

    c, p, g = alternate(b.repeat, lambda: {"ms": warm_compute(cmd, image)[1]}, python, gemm)
    rate, gflop = -g["minus_gflops"], fwdbwd["flops"] / 1e9
    r = b.report
    r.section(f"gradcam --all-layers: {b.name()}, {feature_layer_count(b)} layers, 1 image, "
              f"{b.threads} threads, {g['blas']}")
    r.figure("gemm_gflops", f"sgemm 2048, the machine's rate (best of {b.repeat})", rate,
             "GFLOP/s")
    r.figure("fwdbwd_gflop", "work: 1 forward + 1 backward to the input", gflop, "GFLOP")
    r.figure("cnnviz_warm_ms", f"cnnviz warm (best of {b.repeat})", c["ms"], "ms")
    r.figure("python_fwdbwd_ms", f"python 1 fwd + 1 bwd (best of {b.repeat})", p["ms"], "ms")
    r.ratio("python_of_gemm", "python: share of the sgemm rate",
            gflop / p["ms"] * 1000 / rate, None)
    r.ratio("cnnviz_of_gemm", "cnnviz: share of the sgemm rate",
            gflop / c["ms"] * 1000 / rate, (">=", 0.6))
    r.ratio("cnnviz_over_python", "cnnviz/python", c["ms"] / p["ms"], ("<=", 1.05))



def mode_attention(b):
    """The methods made for attention on one image (cnnviz_bench explain: the capture pass and
    the maps of every attention block, warm, best of three in one process, best of R, default
    3): rollout and raw attention against one forward as classify runs it (cnnviz_bench
    forward: the frozen inference module, whose nn.MultiheadAttention takes its fused path;
    target <= 1.1x), attention-grad against one forward + one backward in eager PyTorch
    (bench_visualize.py --mode fwdbwd; target <= 1.2x), alternating. Default model vit_b_16
    (12 blocks of 12 heads)."""
    image, bench = one_image(), b.bench_binary()

    def ours(method):
        return lambda: {"ms": json_run([bench, "explain", "-m", b.model, "--method", method,
                                        "--batch-size", 1, "--batches", 3,
                                        "--threads", b.threads])["best_ms_per_image"]}

    def forward():
        return {"ms": json_run([bench, "forward", "-m", b.model, "--batch-size", 1,
                                "--batches", 3, "--threads", b.threads])["best_ms_per_image"]}

    ro, at, ag, fw, fb = alternate(b.repeat, ours("rollout"), ours("attention"),
                                   ours("attention-grad"), forward,
                                   lambda: {"ms": b.python_fwdbwd(image, 1, 3)})
    r = b.report
    r.section(f"attention methods: {b.name()}, 1 image, {b.threads} threads")
    r.figure("forward_ms", f"one forward, frozen module (best of {b.repeat})", fw["ms"], "ms")
    r.figure("python_fwdbwd_ms", f"python 1 fwd + 1 bwd (best of {b.repeat})", fb["ms"], "ms")
    r.figure("rollout_ms", "rollout, every block", ro["ms"], "ms")
    r.figure("attention_ms", "raw attention, every block", at["ms"], "ms")
    r.figure("attention_grad_ms", "attention-grad, every block", ag["ms"], "ms")
    r.ratio("rollout_over_forward", "rollout/forward", ro["ms"] / fw["ms"], ("<=", 1.1))
    r.ratio("attention_over_forward", "attention/forward", at["ms"] / fw["ms"], ("<=", 1.1))
    r.ratio("attention_grad_over_fwdbwd", "attention-grad/(fwd + bwd)", ag["ms"] / fb["ms"],
            ("<=", 1.2))


# ---------------------------------------------------------------------------------------------
# attribution

# Masked forwards per image: 13 x 13 windows of 32 at stride 16 on 224x224 plus the capture
# pass and occlusion's unmasked score; 1000 masks plus the capture pass.
PERTURBATION_FORWARDS = (("occlusion", 170), ("rise", 1001))


def mode_attribution(b):
    """DeepLIFT's compute on one image (build/cnnviz_bench explain, warm, best of R, default
    3) against one forward + one backward of a batch of two (the image and its baseline) in
    eager PyTorch (bench_visualize.py --mode fwdbwd --batch 2; target <= 1.3x); LRP's (the
    default composite, epsilon-plus-box) against one forward + one backward (target <= 1.3x);
    occlusion (default 32x32 windows, stride 16) and RISE (1000 masks) at --sample-batch 16 as
    masked forwards per second against the frozen forward's throughput at batch 16
    (cnnviz_bench forward, as classify runs it; target >= 0.9x), and their peak memory at 4x
    the windows and masks against the default (bounded: streamed accumulation). Default model
    vgg16 (DeepLIFT, LRP); occlusion and RISE always run on squeezenet1_1."""
    image, bench = one_image(), b.bench_binary()
    against_fwdbwd(b, bench, image, "deeplift", 2)
    against_fwdbwd(b, bench, image, "lrp", 1)
    squeezenet = model_file("squeezenet1_1")
    perturbation_throughput(b, bench, squeezenet)
    perturbation_memory(b, squeezenet, image)


def against_fwdbwd(b, bench, image, method, batch):
    """METHOD's compute against eager PyTorch's forward + backward of BATCH copies, each the
    best of three runs after a warm-up in one process (a second LRP pass on vgg16 still pays
    for fresh memory: 930 ms, then 620 ms)."""
    def ours():
        return {"ms": json_run([bench, "explain", "-m", b.model, "--method", method,
                                "--batch-size", 1, "--batches", 3,
                                "--threads", b.threads])["best_ms_per_image"]}

    c, p = alternate(b.repeat, ours, lambda: {"ms": b.python_fwdbwd(image, batch, 3)})
    r = b.report
    r.section(f"{method}: {b.name()}, 1 image, {b.threads} threads")
    r.figure("cnnviz_ms", f"cnnviz (best of {b.repeat})", c["ms"], "ms")
    r.figure("python_fwdbwd_ms", f"python 1 fwd + 1 bwd, batch {batch} (best of {b.repeat})",
             p["ms"], "ms")
    r.ratio("cnnviz_over_python", "cnnviz/python", c["ms"] / p["ms"], ("<=", 1.3))


def perturbation_throughput(b, bench, model):
    """Occlusion's and RISE's masked forwards per second against the frozen forward's."""
    def best_ms(mode, *extra):
        return json_run([bench, mode, "-m", model, *extra, "--batches", b.repeat,
                         "--threads", b.threads])["best_ms_per_image"]

    fwd = best_ms("forward", "--batch-size", 16)
    r = b.report
    r.section(f"occlusion and RISE: {b.name(model)}, 1 image, --sample-batch 16, "
              f"{b.threads} threads")
    r.figure("forward_ms_per_image", f"frozen forward, batch 16 (best of {b.repeat})", fwd,
             "ms/image")
    r.figure("forward_images_per_s", "frozen forward, batch 16, throughput", 1000 / fwd,
             "images/s")
    for method, forwards in PERTURBATION_FORWARDS:
        t = best_ms("explain", "--method", method, "--batch-size", 1)
        r.figure(f"{method}_ms", f"{method}, {forwards} forwards (best of {b.repeat})", t, "ms")
        r.figure(f"{method}_forwards_per_s", f"{method}, throughput", forwards * 1000 / t,
                 "forwards/s")
        r.ratio(f"{method}_over_forward", f"{method}: forwards/s over the forward's images/s",
                forwards * fwd / t, (">=", 0.9))


def perturbation_memory(b, model, image):
    """Peak memory of occlusion and RISE at the defaults and at 4x the windows and masks."""
    def kib(method, *extra):
        return peak_rss_kib([b.cnnviz, method, *extra, "-q", "--threads", b.threads, "-m", model,
                             "-o", os.path.join(b.work, method), image])

    r = b.report
    r.section("peak memory, occlusion and RISE (bounded: streamed accumulation)")
    for method, label, extra, more in (("occlusion", "windows", ["--stride", 8], (169, 729)),
                                       ("rise", "masks", ["--masks", 4000], (1000, 4000))):
        base, big = kib(method), kib(method, *extra)
        r.figure(f"{method}_kib", f"{method}, {more[0]} {label}", base, "KiB")
        r.figure(f"{method}_4x_kib", f"{method}, {more[1]} {label}", big, "KiB")
        r.ratio(f"{method}_4x_over_default", f"{method}, {more[1]} / {more[0]} {label}",
                big / base)


# ---------------------------------------------------------------------------------------------
# featviz

def mode_featviz(b):
    """`cnnviz filters` (8 channels of the layer at 128x128, 64 steps, the defaults otherwise)
    as time per optimization step after the first (the manifest's steps_after_first_ms)
    against the same loop in plain PyTorch after a warm-up step (scripts/bench_featviz.py:
    forward with a hook, backward, Adam step), both with the whole network and stopped at the
    layer as cnnviz does (target >= 1x the steps per second); best of R (default 3),
    alternating. Then `cnnviz top-activations` over N images (default 64): its pass (decoding
    and network, the manifest's scan_ms) against `cnnviz classify --timings`'s run_ms over
    the same images (target >= 0.9x the throughput); whole processes too. Default model
    squeezenet1_1, layer features.12 (vgg16: features.28)."""
    layer = "features.28" if b.name().startswith("vgg16") else "features.12"
    filters_vs_pytorch(b, layer)
    top_activations_vs_classify(b, layer)


def filters_vs_pytorch(b, layer, steps=64, rows=8, size=128):
    """cnnviz filters' ms per step against bench_featviz.py's, whole and truncated network."""
    def ours():
        out = os.path.join(b.work, "filters")
        run([b.cnnviz, "filters", "-q", "-m", b.model, "--layer", layer, "--channels",
             f"0-{rows - 1}", "--batch", rows, "--steps", steps, "--size", size,
             "--threads", b.threads, "-o", out])
        # After the first step, as the Python loop times its steps after a warm-up step.
        return {"ms": manifest_timings(out)["steps_after_first_ms"] / (steps - 1)}

    def pytorch(truncate):
        d = json_run(b.script("bench_featviz.py") + [
            "--model", b.model, "--layer", layer, "--batch", rows, "--size", size,
            "--steps", steps, "--threads", b.threads] + (["--truncate"] if truncate else []))
        return {"ms": 1000 * d["seconds"] / d["steps"]}

    c, f, t = (x["ms"] for x in alternate(b.repeat, ours, lambda: pytorch(False),
                                          lambda: pytorch(True)))
    r = b.report
    r.section(f"filters: {b.name()} {layer}, {rows} channels at {size}x{size}, {steps} steps, "
              f"{b.threads} threads (best of {b.repeat}; per step, after the first)")
    r.figure("cnnviz_ms_per_step", "cnnviz, per step", c, "ms/step")
    r.figure("cnnviz_steps_per_s", "cnnviz, throughput", 1000 / c, "steps/s")
    r.figure("pytorch_ms_per_step", "pytorch, whole network, per step", f, "ms/step")
    r.figure("pytorch_steps_per_s", "pytorch, whole network, throughput", 1000 / f,
             "steps/s")
    r.ratio("cnnviz_over_pytorch", "cnnviz steps/s over pytorch's, whole network", f / c,
            (">=", 1.0))
    r.figure("pytorch_truncated_ms_per_step", "pytorch, stopped at the layer, per step", t,
             "ms/step")
    r.figure("pytorch_truncated_steps_per_s", "pytorch, stopped at the layer, throughput", 1000 / t,
             "steps/s")
    r.ratio("cnnviz_over_pytorch_truncated", "cnnviz steps/s over pytorch's, stopped at the layer",
            t / c)


def top_activations_vs_classify(b, layer):
    """top-activations' pass against classify's run over the same N images."""
    n = b.args.images
    images = b.image_folder("imgs", n)
    common = ["-q", "-m", b.model, "--threads", b.threads, "--batch-size", 16]

    def top():
        out = b.fresh("top")
        _, wall = run([b.cnnviz, "top-activations", *common, "--layer", layer, "-o", out, images])
        return {"pass_ms": manifest_timings(out)["scan_ms"], "wall_ms": wall}

    def classify():
        proc, wall = run([b.cnnviz, "classify", *common, "--timings", images])
        return {"run_ms": timings_of(proc)["run_ms"], "wall_ms": wall}

    t, c = alternate(b.repeat, top, classify)
    r = b.report
    r.section(f"top-activations: {n} images, {layer}, 16 channels, k 9, {b.threads} threads "
              f"(best of {b.repeat})")
    r.figure("top_pass_ms", "top-activations pass (decoding and network)", t["pass_ms"], "ms")
    r.figure("top_images_per_s", "top-activations pass, throughput", n * 1000 / t["pass_ms"],
             "images/s")
    r.figure("classify_run_ms", "classify run", c["run_ms"], "ms")
    r.figure("classify_images_per_s", "classify run, throughput", n * 1000 / c["run_ms"],
             "images/s")
    r.ratio("top_over_classify", "top-activations images/s over classify's",
            c["run_ms"] / t["pass_ms"], (">=", 0.9))
    r.figure("top_process_ms", "top-activations, whole process (with its 32 sheets)",
             t["wall_ms"], "ms")
    r.figure("classify_process_ms", "classify, whole process", c["wall_ms"], "ms")


# ---------------------------------------------------------------------------------------------
# serve

def distinct_jpegs(sources, folder):
    """Copies of SOURCES with distinct bytes (the server caches by content): each cut by a few
    pixels more than the last and mirrored or not, saved as JPEG."""
    from PIL import Image

    os.makedirs(folder)
    for i, src in enumerate(sources):
        with Image.open(src) as opened:
            im = opened.convert("RGB")
        im = im.crop((i, i, im.width - i, im.height - i))
        if i % 2:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        im.save(os.path.join(folder, f"img{i:03d}.jpg"), quality=92)
    return folder


def echo_run(cmd):
    """Runs CMD, echoing its stdout line by line as it comes; returns the lines."""
    proc = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line.rstrip("\n"))
    if proc.wait() != 0:
        raise BenchError(f"{os.path.basename(str(cmd[1]))} {cmd[2]} exited with "
                         f"{proc.returncode}")
    return lines


def mode_serve(b):
    """`cnnviz serve` (scripts/serve_load.py) on N distinct photos (default 8: the sample
    photos, each cut and mirrored differently, so that the content cache cannot help): the
    first maps of a new image (gradcam, every feature stage, one request) as the server's time
    per request against `cnnviz gradcam --all-layers --timings`'s compute time per image over
    the same images (target <= 1.2x); a cached layer switch (one layer's u8 map) as server
    time, p50 and p99 (target <= 30 ms); then the load test: 8 clients, 400 requests mixing
    classify, new maps and cached maps, p50/p99 per kind, none lost or failed. serve_load.py
    prints these figures itself; --json keeps its lines as text."""
    n = b.args.images
    if n < 4:  # serve_load.py leaves the first two requests out and medians both kinds after
        raise BenchError("serve needs --images 4 or more")
    images = distinct_jpegs(make_images(os.path.join(b.work, "src"), n),
                            os.path.join(b.work, "images"))
    serve_load = b.script("serve_load.py")
    b.report.section(f"serve: {b.name()}, {n} images, {b.threads} threads")
    b.report.text(echo_run(serve_load + ["bench", b.cnnviz, b.model, images, "--threads",
                                         b.threads, "--images", n, "--work", b.work]))
    b.report.text(echo_run(serve_load + ["load", b.cnnviz, b.model, images, "--threads",
                                         b.threads, "--clients", 8, "--requests", 400]))


# ---------------------------------------------------------------------------------------------
# Command line

def mode_detector(b):
    """A detector's maps on one image (cat_dog.png), compute time warm, best of R (default 3),
    alternating with one forward + one backward of the same detector in eager PyTorch
    (scripts/bench_visualize.py --mode fwdbwd: the best anchor's score, letterboxed input):
    `gradcam --all-layers --box 0`, every backbone stage for one detection (target <= 1.2x);
    with --box 0 .. 3, the cost of each further detection over the first (target <= 0.75 of
    one forward + backward: it is one more backward to the input, about half of them); and D-RISE's peak memory (the whole
    process) at 1,000 and 4,000 masks, on tiny_yolov8 (target: flat, <= 1.1x). Default model
    yolov8_resnet50
    (tests/reference/tiny_models.py: ResNet-50 body, 640 x 640, 8,400 anchors, 80 classes;
    random weights, exported into build/bench-models)."""
    image = one_image()
    base = [b.cnnviz, "gradcam", "--all-layers", "--write", "npy", "--timings", "--threads",
            b.threads, "--batch-size", 1, "-m", b.model, "-o", os.path.join(b.work, "out")]
    four = [a for k in range(4) for a in ("--box", k)]
    fwdbwd = {}
    python = b.fwdbwd_measure(image, fwdbwd)
    one, many, p = alternate(b.repeat, lambda: {"ms": warm_compute(base + ["--box", 0], image)[1]},
                             lambda: {"ms": warm_compute(base + four, image)[1]}, python)
    # Thousands of masked passes of the full detector take hours on a few cores: the
    # streaming is shown on the tiny one, whose masks cost the same memory per batch.
    tiny = model_file("tiny_yolov8")
    drise = [b.cnnviz, "d-rise", "--box", 0, "--write", "npy", "--threads", b.threads,
             "--sample-batch", 16, "-m", tiny, "-o", os.path.join(b.work, "drise"), image]
    peak = {m: peak_rss_kib(drise + ["--masks", m]) / 1024 for m in (1000, 4000)}
    r = b.report
    r.section(f"gradcam --all-layers: {b.name()}, {feature_layer_count(b)} layers, 1 image, "
              f"{b.threads} threads")
    r.figure("fwdbwd_gflop", "work: 1 forward + 1 backward to the input",
             fwdbwd["flops"] / 1e9, "GFLOP")
    r.figure("python_fwdbwd_ms", f"python 1 fwd + 1 bwd (best of {b.repeat})", p["ms"], "ms")
    r.figure("cnnviz_one_ms", f"cnnviz, one detection (best of {b.repeat})", one["ms"], "ms")
    r.figure("cnnviz_four_ms", f"cnnviz, four detections (best of {b.repeat})", many["ms"], "ms")
    r.ratio("one_over_fwdbwd", "one detection / python fwd + bwd", one["ms"] / p["ms"],
            ("<=", 1.2))
    r.ratio("further_over_fwdbwd", "each further detection / python fwd + bwd",
            (many["ms"] - one["ms"]) / 3 / p["ms"], ("<=", 0.75))
    r.section("d-rise --box 0: tiny_yolov8 (64 x 64), --sample-batch 16, peak memory of the "
              "whole process")
    r.figure("drise_1000_mib", "1,000 masks", peak[1000], "MiB")
    r.figure("drise_4000_mib", "4,000 masks", peak[4000], "MiB")
    r.ratio("drise_4000_over_1000", "4,000 / 1,000 masks", peak[4000] / peak[1000], ("<=", 1.1))


def mode_onnx(b):
    """The same model as TorchScript (.pt) and as ONNX (.onnx beside it, else exported with
    random weights into build/bench-models), alternating, best of R (default 5):
    - loading as a user sees it: the whole `cnnviz classify` process on one image
      (cat_dog.png), ONNX parse and graph build included (target <= 1.2x TorchScript's);
    - one forward + one plain backward to the input through the engine, warm (cnnviz_bench
      fwdbwd, best of 5 batches of 1 image; target <= 1.05x);
    - the whole `cnnviz gradcam --all-layers` process on that image (--write npy).
    Default model resnet50."""
    image, bench = one_image(), b.bench_binary()
    models = {"torchscript": b.model, "onnx": onnx_twin(b.args.model, b.model)}

    def measure(model):
        _, load = run([b.cnnviz, "classify", "--threads", b.threads, "-m", model, image])
        fb = json_run([bench, "fwdbwd", "-m", model, "--batch-size", 1, "--batches", 5,
                       "--threads", b.threads])["best_ms_per_image"]
        out = os.path.join(b.work, "out")
        shutil.rmtree(out, ignore_errors=True)
        _, whole = run([b.cnnviz, "gradcam", "--all-layers", "--write", "npy", "-q",
                        "--threads", b.threads, "-m", model, "-o", out, image])
        return {"load_ms": load, "fwdbwd_ms": fb, "gradcam_ms": whole}

    ts, ox = alternate(b.repeat, *[lambda m=m: measure(m) for m in models.values()])
    r = b.report
    r.section(f"ONNX against TorchScript: {b.name()}, 1 image, {b.threads} threads")
    for key, label in (("load_ms", "classify, whole process"),
                       ("fwdbwd_ms", "1 forward + 1 backward, warm"),
                       ("gradcam_ms", "gradcam --all-layers, whole process")):
        r.figure(f"torchscript_{key}", f"TorchScript: {label} (best of {b.repeat})", ts[key],
                 "ms")
        r.figure(f"onnx_{key}", f"ONNX: {label} (best of {b.repeat})", ox[key], "ms")
    r.ratio("load_ratio", "classify (load + first run): ONNX/TorchScript",
            ox["load_ms"] / ts["load_ms"], ("<=", 1.2))
    r.ratio("fwdbwd_ratio", "forward + backward: ONNX/TorchScript",
            ox["fwdbwd_ms"] / ts["fwdbwd_ms"], ("<=", 1.05))
    r.ratio("gradcam_ratio", "gradcam --all-layers run: ONNX/TorchScript",
            ox["gradcam_ms"] / ts["gradcam_ms"])


MODES = {  # name: (function, summary, defaults)
    "classify": (mode_classify, "cnnviz classify against PIL + torchvision (the default mode)",
                 {"model": "squeezenet1_1", "images": 32, "batch_size": 8, "repeat": 5}),
    "batch": (mode_batch, "classify against the pure forward; batch against one image; peak "
              "memory", {"model": "squeezenet1_1", "images": 500, "repeat": 3,
                         "classify_only": False}),
    "pipeline": (mode_pipeline, "whole gradcam --all-layers runs, files written",
                 {"model": "squeezenet1_1", "images": 32, "repeat": 3, "baseline": None}),
    "visualize": (mode_visualize, "guided-gradcam --all-layers against eager PyTorch",
                  {"model": "vgg16", "repeat": 3}),
    "backbone": (mode_backbone, "gradcam --all-layers against one forward + backward",
                 {"model": "vit_b_16", "repeat": 3}),
    "attention": (mode_attention, "rollout, attention and attention-grad against a forward "
                  "(+ backward)", {"model": "vit_b_16", "repeat": 3}),
    "attribution": (mode_attribution, "DeepLIFT, LRP, occlusion and RISE",
                    {"model": "vgg16", "repeat": 3}),
    "detector": (mode_detector, "a detector's maps against one forward + backward; D-RISE's "
                 "memory", {"model": "yolov8_resnet50", "repeat": 3}),
    "featviz": (mode_featviz, "filters against the PyTorch loop; top-activations against "
                "classify", {"model": "squeezenet1_1", "images": 64, "repeat": 3}),
    "onnx": (mode_onnx, "an ONNX model's load and forward + backward against its TorchScript "
             "export", {"model": "resnet50", "repeat": 5}),
    "serve": (mode_serve, "cnnviz serve: new maps, layer switches, load test",
              {"model": "squeezenet1_1", "images": 8}),
}


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def executable(text):
    path = os.path.realpath(text)
    if not os.access(path, os.X_OK) or os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"'{text}' is not an executable file")
    return path


OPTIONS = {
    "images": (["--images"], dict(type=positive_int, metavar="N", help="number of images")),
    "batch_size": (["--batch-size"], dict(type=positive_int, metavar="B", help="batch size")),
    "repeat": (["--repeat"], dict(type=positive_int, metavar="R", help="best of R runs")),
    "classify_only": (["--classify-only"], dict(action="store_true",
                                                help="stop after classify against forward")),
    "baseline": (["--baseline"], dict(type=executable, metavar="BIN",
                                      help="another cnnviz binary to run alternately")),
}


def add_mode(subparsers, name, func, summary, defaults):
    p = subparsers.add_parser(name, help=summary, description=inspect.cleandoc(func.__doc__),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=defaults["model"], metavar="NAME|PATH",
                   help="a TorchScript file, or a name: models/NAME.pt, else exported with "
                   "random weights into build/bench-models (default %(default)s)")
    p.add_argument("--threads", type=positive_int, default=len(os.sched_getaffinity(0)),
                   metavar="T", help="network threads (default: every core, %(default)s)")
    for key, default in defaults.items():
        if key in OPTIONS:
            flags, spec = OPTIONS[key]
            suffix = " (default %(default)s)" if default not in (None, False) else ""
            p.add_argument(*flags, default=default, **dict(spec, help=spec["help"] + suffix))
    p.add_argument("--json", metavar="FILE", type=os.path.abspath,
                   help="also write every figure as JSON to FILE")
    p.set_defaults(func=func)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="mode", metavar="MODE")
    for name, (func, summary, defaults) in MODES.items():
        add_mode(subparsers, name, func, summary, defaults)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["classify"] + argv  # the default mode
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    bench = None
    try:
        use_torch_python()
        with tempfile.TemporaryDirectory(prefix="cnnviz-bench-") as work:
            bench = Bench(args, work)
            args.func(bench)
    except BenchError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        if bench:
            bench.report.doc["error"] = str(exc)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if bench and args.json:
            bench.report.save(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
