#!/usr/bin/env python3
"""Python side of the visualize benchmark: Grad-CAM, guided backprop and guided Grad-CAM for
every feature layer of a model, in PyTorch, organised three ways.

usage: bench_visualize.py MODEL.pt IMAGE [--mode seed|per-layer|floor] [--threads N]
                          [--repeat 3]

All modes run on the eager torchvision model rebuilt from MODEL.pt as
tests/reference/methods_ref.py does (parameters frozen, the input requiring grad, every ReLU
routed through its patched relu), for each layer L of the metadata's feature_layers, target the
top-1 logit:
  seed       the seed tutorial's loop (pytorch-cnn-visualizations): per layer, a Grad-CAM pass
             (forward + backward, hooks on L) and a guided-backprop pass (forward + backward,
             guided ReLUs): 2 forward+backward per layer
  per-layer  methods_ref.py one layer per pass: 1 forward+backward per layer for Grad-CAM,
             plus one guided pass
  floor      1 forward, 2 backward: a plain backward (retain_graph) with hooks on every layer
             gives all Grad-CAMs at once, then a guided backward through the same graph; the
             cost cnnviz's engine is designed for
  fwdbwd     1 forward + 1 backward of the top-1 logit (a segmenter's: the sum of its largest
             class's scores over that class's pixels; a detector's: its best anchor's score, on
             the letterboxed image; a torchvision detector's: its best detection's score, the
             model run whole by torchvision) to the input, no hooks and nothing else:
             the floor of Grad-CAM at every layer (the backbone benchmark's reference); with
             --batch B, of B copies of the image (DeepLIFT's floor: a batch of two)
Every mode then forms, per layer, the CAM upsampled (bilinear) to the input size and min-max
normalized, and guided Grad-CAM = guided gradient * that CAM.

The model is loaded and the image preprocessed once (not timed); one untimed warm-up run, then
`--repeat` timed runs. Prints one JSON line:
  {"mode": ..., "layers": n, "threads": T, "run_ms": [...], "best_ms": ...}
with, in mode fwdbwd, "flops": the floating-point operations of that forward and backward
(matrix products and convolutions; fwdbwd_flops), counted in one more, untimed, run.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cnnviz_python import ensure_torch  # noqa: E402

ensure_torch("bench_visualize.py")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import export_models  # noqa: E402

import common  # noqa: E402
import detect_ref  # noqa: E402
import methods_ref as ref  # noqa: E402


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def upsampled_cam(activation, grad, size):
    """Grad-CAM [h,w] -> bilinear to `size`, min-max normalized (zeros when constant)."""
    cam = F.interpolate(ref.grad_cam(activation, grad)[None, None], size=size, mode="bilinear",
                        align_corners=False)[0, 0]
    low, high = cam.min(), cam.max()
    return (cam - low) / (high - low) if high > low else torch.zeros_like(cam)


def run_seed(model, x, layers):
    cls, results = None, []
    for layer in layers:
        _, logits, _, taps = ref.backprop(model, x, cls, "plain", [layer])
        cls = int(logits.argmax()) if cls is None else cls
        cam = upsampled_cam(taps.activation[layer], taps.grad[layer], x.shape[-2:])
        guided, _, _, _ = ref.backprop(model, x, cls, "guided")
        results.append(guided * cam)
    return results


def run_per_layer(model, x, layers):
    cls, cams = None, []
    for layer in layers:
        _, logits, _, taps = ref.backprop(model, x, cls, "plain", [layer])
        cls = int(logits.argmax()) if cls is None else cls
        cams.append(upsampled_cam(taps.activation[layer], taps.grad[layer], x.shape[-2:]))
    guided, _, _, _ = ref.backprop(model, x, cls, "guided")
    return [guided * cam for cam in cams]


def run_floor(model, x, layers):
    state = ref.ReluState("plain")
    taps = ref.LayerTaps(model, layers)
    try:
        xx = x.detach().clone().requires_grad_(True)
        with ref.modal_relus(state):
            logits = model(xx)[0]
    finally:
        taps.close()
    target = logits[int(logits.argmax())]
    target.backward(retain_graph=True)
    # Before the second backward: the layers' tensor hooks fire again there.
    cams = [upsampled_cam(taps.activation[layer], taps.grad[layer], x.shape[-2:])
            for layer in layers]
    state.mode = "guided"  # read by the ReLUs' backward, so the same graph serves
    xx.grad = None
    target.backward()
    guided = xx.grad[0]
    return [guided * cam for cam in cams]


def run_fwdbwd(model, x, _layers):
    xx = x.detach().clone().requires_grad_(True)
    out = model(xx)
    if isinstance(out, dict):
        # A segmenter: the sum of a class's scores over the pixels labelled with it (the
        # class with the most pixels), as cnnviz explains it.
        scores = out["out"]
        labels = scores.detach().argmax(dim=1)
        cls = int(torch.bincount(labels.flatten()).argmax())
        (scores[:, cls] * (labels == cls)).sum().backward()
        return [xx.grad[0]]
    if isinstance(out, list):
        # A torchvision detector run whole (its own transform, proposals, postprocessing):
        # the score of its best detection.
        if any(not len(found["scores"]) for found in out):
            raise SystemExit("bench_visualize.py: the detector finds no box above 0.25")
        torch.stack([found["scores"][0] for found in out]).sum().backward()
        return [xx.grad[0]]
    if DETECT_LAYOUT["layout"]:
        # A detector: the score of its best anchor, as cnnviz explains a detection.
        rows = out.transpose(1, 2) if DETECT_LAYOUT["layout"] == "yolov8" else out
        scores = (rows[..., 4:] if DETECT_LAYOUT["layout"] == "yolov8"
                  else rows[..., 4:5] * rows[..., 5:])
        scores.flatten(1).max(1).values.sum().backward()
        return [xx.grad[0]]
    logits = out[0] if isinstance(out, tuple) else out
    logits[:, int(logits[0].argmax())].sum().backward()
    return [xx.grad[0]]


DETECT_LAYOUT = {"layout": None}  # a detector's raw output layout (cnnviz.json)


RUNS = {"seed": run_seed, "per-layer": run_per_layer, "floor": run_floor, "fwdbwd": run_fwdbwd}

# Operators whose FLOPs the profiler counts that are matrix products or convolutions (it
# counts element-wise ones too, which are not the work a BLAS or oneDNN does).
PRODUCTS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::conv2d"}


def fwdbwd_flops(model, x):
    """The floating-point operations of one forward plus one backward to the input: the
    profiler's count (2 per multiply-add) of every matrix product and convolution, forward and
    backward, plus each convolution's forward count once more for its backward to the input,
    which the profiler of torch 1.13 does not count (the weights are frozen: no weight
    gradients)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                with_flops=True) as prof:
        run_fwdbwd(model, x, [])
    total = 0
    for event in prof.events():
        if event.name in PRODUCTS and event.flops:
            total += event.flops * (2 if event.name == "aten::conv2d" else 1)
    return total


def main():
    parser = argparse.ArgumentParser(description="Time Grad-CAM + guided backprop + guided "
                                     "Grad-CAM for every feature layer in PyTorch")
    parser.add_argument("model", metavar="MODEL.pt")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("--mode", choices=list(RUNS), default="floor")
    parser.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1,
                        help="intra-op threads (default: all cores)")
    parser.add_argument("--repeat", type=positive_int, default=3)
    parser.add_argument("--batch", type=positive_int, default=1,
                        help="fwdbwd: copies of the image in the batch (DeepLIFT's floor: 2)")
    args = parser.parse_args()

    # Set explicitly: the default depends on the build and on OMP_NUM_THREADS.
    torch.set_num_threads(args.threads)
    try:
        model, meta, _ = ref.load_eager(args.model)
    except (ref.RefError, RuntimeError, OSError) as exc:
        print(f"bench_visualize.py: {exc}", file=sys.stderr)
        return 1
    if isinstance(model, ref.TorchvisionScores):  # resized as torchvision resizes
        x = common.preprocess(common.load_rgb(args.image), **common.preprocess_params(meta))[None]
    elif meta.get("task") == "detect":
        DETECT_LAYOUT["layout"] = meta["layout"]
        pre = common.preprocess_params(meta)
        x = detect_ref.letterbox(common.load_rgb(args.image), pre["resize"], pre["mean"],
                                 pre["std"])[0][None]
    else:
        x = common.preprocess(common.load_rgb(args.image), **common.preprocess_params(meta))[None]
    if isinstance(model, ref.TorchvisionScores) and args.mode != "fwdbwd":
        print("bench_visualize.py: a torchvision detector has the fwdbwd mode only",
              file=sys.stderr)
        return 2
    layers = export_models.feature_stages(model, x)
    if args.mode == "fwdbwd":
        x = x.repeat(args.batch, 1, 1, 1)
    run = RUNS[args.mode]

    run(model, x, layers)  # warm-up
    run_ms = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        run(model, x, layers)
        run_ms.append((time.perf_counter() - start) * 1000.0)

    out = {"mode": args.mode, "layers": len(layers), "threads": torch.get_num_threads(),
           "run_ms": [round(ms, 3) for ms in run_ms], "best_ms": round(min(run_ms), 3)}
    if args.mode == "fwdbwd":
        out["flops"] = fwdbwd_flops(model, x)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
