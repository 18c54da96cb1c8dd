#!/usr/bin/env python3
"""Reference faithfulness metrics of a saliency map: deletion, insertion, confidence drop.

usage: evaluate_ref.py MODEL.pt IMAGE MAP.npy OUTDIR --class C [--steps N] [--blur-sigma S]
                       [--threads T]
       evaluate_ref.py --spearman A.npy B.npy

Forward passes only, on the TorchScript file itself (torch.jit.load; when the model returns a
tuple, as a scripted GoogLeNet does, its element 0 is the logits), with the preprocessing of
tests/reference/common.py and the model's cnnviz.json. x is the normalized input [1,3,H,W];
MAP.npy a float32 saliency map [H,W] at input resolution (finite values); C the class; a
"probability" is softmax(logits)[C], computed in float64 from the float32 logits.

Pixel order: the H*W pixels sorted by the map, descending, with a stable sort
(torch.sort(map.flatten(), descending=True, stable=True): equal values keep raster order).
With p = ceil(H*W / N) pixels per step, point k (k = 0..N) changes the first min(k*p, H*W)
pixels of that order, in all 3 channels:
  deletion   starts from x and sets the changed pixels to 0 in the normalized tensor (the mean
             colour, as RISE does)
  insertion  starts from gaussian_blur(x, S) (common.gaussian_blur, S = --blur-sigma, default
             10.0) and sets the changed pixels to their values in x
The forwards run in batches of 32 (no grad).

OUTDIR/evaluate.json:
  "class" C, "steps" N, "pixels_per_step" p, "blur_sigma" S
  "deletion", "insertion"   lists of the N+1 probabilities of points k = 0..N
  "deletion_auc", "insertion_auc"
                            trapezoid rule on a uniform grid over [0,1]:
                            sum_{k=0..N-1} (s_k + s_{k+1}) / 2 / N
  "confidence"              softmax(model(x))[C]
  "masked_confidence"       softmax(model(x * E))[C], E = the map min-max normalized to [0,1]
                            (float32; all zeros when the map is constant), the same for the 3
                            channels
  "drop"                    max(0, confidence - masked_confidence) / confidence
  "increase"                masked_confidence > confidence (true/false)

--spearman A.npy B.npy prints {"spearman": r} on stdout: the Spearman rank correlation of the
two maps (same shape, flattened; ties get their average rank; scipy.stats.spearmanr). r is null
when it is undefined (a constant map).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from cnnviz_python import ensure_torch  # noqa: E402

ensure_torch("evaluate_ref.py")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import common  # noqa: E402

PROG = "evaluate_ref.py"
BATCH = 32  # inputs per forward


class EvalError(Exception):
    pass


def probabilities(model, inputs, cls, batch=BATCH):
    """softmax(logits)[cls] of every input [B,3,H,W], float64 [B]."""
    out = []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Scripted GoogleNet")
        for start in range(0, inputs.shape[0], batch):
            logits = model(inputs[start:start + batch])
            if isinstance(logits, tuple):
                logits = logits[0]
            out.append(logits.double().softmax(dim=1)[:, cls])
    return torch.cat(out)


def curve(model, start, target, order, steps, cls, batch=BATCH):
    """Probabilities of the N+1 points of a deletion/insertion curve: point k takes the first
    min(k*p, H*W) pixels of `order` from `target` and the others from `start` ([1,3,H,W])."""
    height, width = start.shape[2:]
    pixels = height * width
    per_step = math.ceil(pixels / steps)
    rank = torch.empty(pixels, dtype=torch.long)
    rank[order] = torch.arange(pixels)
    rank = rank.view(height, width)
    scores = []
    for first in range(0, steps + 1, batch):
        ks = torch.arange(first, min(first + batch, steps + 1))
        changed = rank[None] < torch.clamp(ks * per_step, max=pixels)[:, None, None]  # [B,H,W]
        points = torch.where(changed[:, None], target, start)  # [B,3,H,W]
        scores.append(probabilities(model, points, cls, batch))
    return torch.cat(scores), per_step


def auc(scores):
    """Trapezoid rule on a uniform grid of len(scores) points over [0,1]."""
    steps = len(scores) - 1
    return float(sum((scores[k] + scores[k + 1]) / 2 for k in range(steps)) / steps)


def spearman(path_a, path_b):
    from scipy.stats import spearmanr

    a, b = np.load(path_a), np.load(path_b)
    if a.shape != b.shape:
        raise EvalError(f"maps differ in shape: {list(a.shape)} and {list(b.shape)}")
    if a.size < 2 or np.all(a == a.flat[0]) or np.all(b == b.flat[0]):
        return None  # undefined: no variation in one of the rankings
    return float(spearmanr(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0])


def evaluate(args):
    model, meta = common.load_model(args.model)
    x = common.preprocess(common.load_rgb(args.image), **common.preprocess_params(meta))[None]
    height, width = x.shape[2:]
    saliency = torch.from_numpy(np.load(args.map)).float()
    if tuple(saliency.shape) != (height, width):
        raise EvalError(f"{args.map}: shape {list(saliency.shape)}, expected [{height},{width}] "
                        "(the input resolution)")
    if not torch.isfinite(saliency).all():
        raise EvalError(f"{args.map}: the map has non-finite values")
    num_classes = int(meta.get("num_classes", 1000))
    if not 0 <= args.cls < num_classes:
        raise EvalError(f"--class {args.cls} out of range [0, {num_classes})")

    order = torch.sort(saliency.flatten(), descending=True, stable=True).indices
    deletion, per_step = curve(model, x, torch.zeros_like(x), order, args.steps, args.cls)
    blurred = common.gaussian_blur(x, args.blur_sigma)
    insertion, _ = curve(model, blurred, x, order, args.steps, args.cls)

    low, high = saliency.min(), saliency.max()
    explanation = (saliency - low) / (high - low) if high > low else torch.zeros_like(saliency)
    confidence, masked = probabilities(model, torch.cat([x, x * explanation]), args.cls).tolist()
    return {
        "class": args.cls,
        "steps": args.steps,
        "pixels_per_step": per_step,
        "blur_sigma": args.blur_sigma,
        "deletion": deletion.tolist(),
        "insertion": insertion.tolist(),
        "deletion_auc": auc(deletion.tolist()),
        "insertion_auc": auc(insertion.tolist()),
        "confidence": confidence,
        "masked_confidence": masked,
        "drop": max(0.0, confidence - masked) / confidence,
        "increase": masked > confidence,
    }


def main(argv):
    if "--spearman" in argv:
        parser = argparse.ArgumentParser(prog=f"{PROG} --spearman",
                                         description="Spearman rank correlation of two maps")
        parser.add_argument("--spearman", nargs=2, required=True, metavar=("A.npy", "B.npy"))
        args = parser.parse_args(argv)
        try:
            print(json.dumps({"spearman": spearman(*args.spearman)}))
        except (EvalError, OSError, ValueError) as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 1
        return 0

    parser = argparse.ArgumentParser(
        prog=PROG, description="Reference deletion/insertion curves and confidence drop of a "
        "saliency map (OUTDIR/evaluate.json)",
        epilog=f"also: {PROG} --spearman A.npy B.npy  (Spearman rank correlation, JSON on stdout)")
    parser.add_argument("model", metavar="MODEL.pt")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("map", metavar="MAP.npy", help="float32 [H,W] map at input resolution")
    parser.add_argument("outdir", metavar="OUTDIR")
    parser.add_argument("--class", dest="cls", type=int, required=True, help="target class")
    parser.add_argument("--steps", type=int, default=224, metavar="N",
                        help="points of the curves after the first (default: 224)")
    parser.add_argument("--blur-sigma", type=float, default=10.0, metavar="S",
                        help="sigma of the insertion start image (default: 10.0)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    if not args.blur_sigma > 0:
        parser.error("--blur-sigma must be > 0")

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        result = evaluate(args)
        os.makedirs(args.outdir, exist_ok=True)
        with open(os.path.join(args.outdir, "evaluate.json"), "w") as out:
            json.dump(result, out, indent=1)
            out.write("\n")
    except (EvalError, OSError, RuntimeError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.outdir}: class {args.cls} deletion auc {result['deletion_auc']:.4f} insertion "
          f"auc {result['insertion_auc']:.4f} drop {result['drop']:.4f} "
          f"({time.perf_counter() - start:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
