#!/usr/bin/env python3
"""Reference occlusion and RISE maps, written from the papers' definitions.

usage: perturbation_ref.py MODEL.pt IMAGE OUTDIR [--class C] [--score S] [--counterfactual]
                           [--occlusion] [--window W] [--stride S] [--fill mean|black|blur]
                           [--blur-sigma S] [--rise] [--masks N] [--grid S] [--p P] [--seed S]
                           [--batch B] [--threads N]

What is tested is the perturbation and the accumulation, not the network: the forward passes use
the model file's own TorchScript module, frozen and optimized for inference with
torch.jit.freeze + torch.jit.optimize_for_inference, as cnnviz runs it, in batches of --batch
perturbed images (cnnviz's --sample-batch), so both sides compute the same logits.

x: the normalized input [1,3,H,W] (common.preprocess with the model's cnnviz.json). Score: the
logit of class c (default: top-1 of x), or its softmax probability, log-softmax or sigmoid
(--score); negated with --counterfactual.

Occlusion (Zeiler and Fergus 2014, section 4.2), --occlusion -> occlusion.npy [H,W] float32:
  window tops along a side of length L: 0, S, 2S, ... while top + W <= L, plus L - W when that
  list is empty or its last window ends before L. Windows: every (top, left) pair, tops outer.
  fill: mean = zeros; black = per channel (0 - mean) / std; blur = common.gaussian_blur(x,
  blur_sigma). map[p] = (sum over windows covering p of score(x) - score(x with the window's
  pixels, all channels, replaced by the fill's)) / (number of windows covering p); the sums in
  float64, score(x) from a forward of x alone.
RISE (Petsiuk et al. 2018), --rise -> rise.npy [H,W] float32 (default score: probability):
  g = torch.Generator().manual_seed(seed); cells = (torch.rand(N, s, s, generator=g) < p)
  as float32; C = ceil(max(H, W) / s); shifts = torch.randint(0, C, (N, 2), generator=g) as
  (dy, dx); mask_i = F.interpolate(cells_i[None, None], size=((s+1)C, (s+1)C),
  mode="bilinear", align_corners=False)[0, 0, dy:dy+H, dx:dx+W]; the masked input is
  x * mask_i (every channel); saliency = sum_i score(x * mask_i) mask_i / (N p), summed in
  float64.
meta.json: {"class": c, "score": ..., "windows": count, "occlusion_max": ..., "rise_max": ...}.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "scripts"))
from cnnviz_python import ensure_torch  # noqa: E402

ensure_torch("perturbation_ref.py")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import common  # noqa: E402

PROG = "perturbation_ref.py"


def score(logits, cls, kind, negate):
    if kind == "logit":
        s = logits[:, cls]
    elif kind == "probability":
        s = torch.softmax(logits, dim=1)[:, cls]
    elif kind == "log-probability":
        s = torch.log_softmax(logits, dim=1)[:, cls]
    elif kind == "sigmoid":
        s = torch.sigmoid(logits[:, cls])
    else:
        raise ValueError(f"unknown score {kind}")
    return -s if negate else s


def starts(length, window, stride):
    out = list(range(0, length - window + 1, stride))
    if not out or out[-1] + window < length:
        out.append(length - window)
    return out


def forward(model, batch):
    out = model(batch)
    return out[0] if isinstance(out, tuple) else out


def occlusion(model, x, cls, args, mean, std):
    _, _, h, w = x.shape
    if args.fill == "mean":
        fill = torch.zeros_like(x)
    elif args.fill == "black":
        fill = ((0 - torch.tensor(mean)) / torch.tensor(std)).view(1, -1, 1, 1).expand_as(x)
    else:
        fill = common.gaussian_blur(x, args.blur_sigma)
    win = args.window
    windows = [(t, left) for t in starts(h, win, args.stride) for left in starts(w, win, args.stride)]
    base = score(forward(model, x), cls, args.score, args.counterfactual).double()[0]
    total = torch.zeros(h, w, dtype=torch.float64)
    count = torch.zeros(h, w, dtype=torch.float64)
    for i in range(0, len(windows), args.batch):
        part = windows[i:i + args.batch]
        batch = x.repeat(len(part), 1, 1, 1)
        for k, (t, left) in enumerate(part):
            batch[k, :, t:t + win, left:left + win] = fill[0, :, t:t + win, left:left + win]
        scores = score(forward(model, batch), cls, args.score, args.counterfactual).double()
        for k, (t, left) in enumerate(part):
            total[t:t + win, left:left + win] += base - scores[k]
            count[t:t + win, left:left + win] += 1
    return (total / count).float(), len(windows)


def rise(model, x, cls, args):
    _, _, h, w = x.shape
    s = args.grid
    g = torch.Generator().manual_seed(args.seed)
    cells = (torch.rand(args.masks, s, s, generator=g) < args.p).float()
    cell = math.ceil(max(h, w) / s)
    shifts = torch.randint(0, cell, (args.masks, 2), generator=g)
    total = torch.zeros(h, w, dtype=torch.float64)
    for i in range(0, args.masks, args.batch):
        up = F.interpolate(cells[i:i + args.batch, None], size=((s + 1) * cell, (s + 1) * cell),
                           mode="bilinear", align_corners=False)
        masks = torch.stack([up[k, 0, dy:dy + h, dx:dx + w]
                             for k, (dy, dx) in enumerate(shifts[i:i + args.batch].tolist())])
        scores = score(forward(model, x * masks[:, None]), cls, args.score, args.counterfactual)
        total += (scores.view(-1, 1, 1) * masks).sum(0).double()
    return (total / (args.masks * args.p)).float()


def main():
    parser = argparse.ArgumentParser(prog=PROG, description="Reference occlusion and RISE maps")
    parser.add_argument("model", metavar="MODEL.pt")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("outdir", metavar="OUTDIR")
    parser.add_argument("--class", dest="cls", type=int, default=None)
    parser.add_argument("--score", default=None,
                        choices=["logit", "probability", "log-probability", "sigmoid"],
                        help="default: logit for occlusion, probability for RISE")
    parser.add_argument("--counterfactual", action="store_true")
    parser.add_argument("--occlusion", action="store_true")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--fill", choices=["mean", "black", "blur"], default="mean")
    parser.add_argument("--blur-sigma", type=float, default=10.0)
    parser.add_argument("--rise", action="store_true")
    parser.add_argument("--masks", type=int, default=1000)
    parser.add_argument("--grid", type=int, default=7)
    parser.add_argument("--p", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        scripted, meta = common.load_model(args.model)
        params = common.preprocess_params(meta)
        x = common.preprocess(common.load_rgb(args.image), **params)[None]
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    model = torch.jit.optimize_for_inference(torch.jit.freeze(scripted.eval()))
    os.makedirs(args.outdir, exist_ok=True)
    out = {}
    with torch.no_grad():
        logits = forward(model, x)
        cls = int(logits[0].argmax()) if args.cls is None else args.cls
        out["class"] = cls
        if args.occlusion:
            kind = args.score or "logit"
            run = argparse.Namespace(**{**vars(args), "score": kind})
            m, windows = occlusion(model, x, cls, run, params["mean"], params["std"])
            np.save(os.path.join(args.outdir, "occlusion.npy"), m.numpy())
            out.update({"occlusion_score": kind, "windows": windows,
                        "occlusion_max": float(m.abs().max())})
        if args.rise:
            kind = args.score or "probability"
            run = argparse.Namespace(**{**vars(args), "score": kind})
            m = rise(model, x, cls, run)
            np.save(os.path.join(args.outdir, "rise.npy"), m.numpy())
            out.update({"rise_score": kind, "rise_max": float(m.abs().max())})
    with open(os.path.join(args.outdir, "meta.json"), "w") as f:
        json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
