#!/usr/bin/env python3
"""Reference for cnnviz's feature visualization: the loss and the parameter gradient of ONE
optimization step, with plain PyTorch autograd on the EAGER torchvision model.

usage: featviz_ref.py --model MODEL.pt --spec SPEC.json --out GRAD.npy [--threads N]

Run it at cnnviz's thread count: LibTorch's convolutions round differently with another count,
and a ReLU or max-pool input that close to a tie can then switch sides, which moves the gradient
of a whole receptive field (seen up to 7e-4 relative L2 between 1 and 2 threads on squeezenet1_1,
in about one draw of twenty; 3e-7 otherwise).

The model is rebuilt as methods_ref.py does (load_eager: torchvision.models.<arch> or a tiny
model with the scripted state_dict, frozen, eval mode) and checked against the scripted model on
the step's network input. SPEC.json describes the step:

  {"param": "fft" | "pixel" | "input", "decorrelate": bool, "size": H, "batch": N,
   "param_init": "p.npy",
   "draws": null | {"pad", "jitter1": [oy, ox], "jitter1_size", "scale", "angle",
                    "jitter2": [oy, ox], "jitter2_size"} | {"roll": [dy, dx]},
   "objective": {"kind": "channel" | "neuron" | "class" | "dream" | "invert", "layer",
                 "units": [u_0 .. u_{N-1}], "target": "t.npy"},
   "weights": {"l2", "tv", "blur"}, "mean": [3], "std": [3]}

Everything is float32. With p the parameter (param_init, requiring grad):
  1. image x in [0,1], [N,3,H,W]:
       pixel  lin = p ([N,3,H,W])
       fft    p is [N,3,H,W//2+1,2] (real, imaginary); f = sqrt(rfftfreq(W)^2 + fftfreq(H)^2),
              lin = irfft2(complex(p) / max(f, 1/max(H,W)), s=(H,W), norm="ortho") / 4
       decorrelate: lin[n,d] <- sum_c Mn[d,c] lin[n,c], Mn = M / (largest L2 norm of a column
              of M), M = [[0.26,0.09,0.02],[0.27,0.00,-0.05],[0.27,-0.09,0.03]]
       x = sigmoid(lin)
     input  p is the normalized network input itself (no image, no regularizers)
  2. draws with "pad" (not for input): F.pad(value 0.5) by pad on every side; crop S-d rows and
     columns from (oy, ox) (d = jitter1_size); bilinear resize to ceil(S*scale) (align_corners
     False); rotation by angle degrees (affine_grid + grid_sample, bilinear, zero padding,
     align_corners False; none at angle 0); crop again with jitter2. Draws with "roll": torch.roll by (dy, dx) of
     the image (of p for input).
  3. z = (x - mean) / std per channel (not for input).
  4. A = the output of module `layer` (forward hook; [N,C,h,w], the Swin and ViT layouts of
     methods_ref.RESHAPE rearranged), logits = the model's output on z.
  5. obj_n: channel  mean_{h,w} A[n,u_n]        neuron  A[n,u_n,h//2,w//2]
            class    logits[n,u_n]              dream   mean_{c,h,w} A[n]^2
            invert   -sum (A[n]-T[n])^2 / max(sum T[n]^2, 1e-12)   (T = target, [N,C,h,w])
  6. regularizers of each row of the untransformed x: l2 = mean (x-0.5)^2; tv = mean of the
     squared vertical differences + mean of the squared horizontal ones; blur = mean (x-B(x))^2,
     B = the 3-tap [0.25,0.5,0.25] filter horizontally then vertically (replicate padding by 1).
     loss = sum_n (-obj_n + l2*l2_n + tv*tv_n + blur*blur_n)
  7. GRAD.npy = d loss / d p, float32 with p's shape.

Prints one JSON line: {"loss": ..., "objective": [obj_0 .. obj_{N-1}],
"eager_vs_script_max_abs": ...}. Errors: one line on stderr, exit status 1.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from cnnviz_python import ensure_torch  # noqa: E402

ensure_torch("featviz_ref.py")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import methods_ref  # noqa: E402

PROG = "featviz_ref.py"
PARAMS = ("fft", "pixel", "input")
KINDS = ("channel", "neuron", "class", "dream", "invert")
# Colour correlation of ImageNet images (lucid's color_correlation_svd_sqrt).
COLOR_CORRELATION = [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]]


class RefError(Exception):
    pass


def spectrum_scale(height, width):
    """1 / max(|f|, 1/max(H,W)) of the rfft2 frequencies, float32 [H, W//2+1]."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    f = torch.sqrt(fx * fx + fy * fy)
    return 1.0 / torch.clamp(f, min=1.0 / max(height, width))


def color_matrix():
    """The colour correlation matrix divided by the largest L2 norm of its columns."""
    m = torch.tensor(COLOR_CORRELATION, dtype=torch.float32)
    return m / torch.linalg.norm(m, dim=0).max()


def param_to_image(p, kind, decorrelate, size):
    """The [N,3,H,W] image in [0,1] of the fft or pixel parameter p."""
    if kind == "pixel":
        lin = p
    else:
        spectrum = torch.view_as_complex(p.contiguous()) * spectrum_scale(size, size)
        lin = torch.fft.irfft2(spectrum, s=(size, size), norm="ortho") / 4
    if decorrelate:
        lin = torch.einsum("dc,nchw->ndhw", color_matrix(), lin)
    return torch.sigmoid(lin)


def jitter(x, offset, amount):
    """Keep S-amount rows and columns from (oy, ox); S = the current size."""
    oy, ox = (int(v) for v in offset)
    size = x.shape[-1]
    if not (0 <= oy <= amount and 0 <= ox <= amount and amount < size):
        raise RefError(f"jitter offset {[oy, ox]} outside [0, {amount}] (size {size})")
    return x[:, :, oy:oy + size - amount, ox:ox + size - amount]


def rotate(x, degrees):
    """Rotation about the centre: affine_grid + bilinear grid_sample, zeros outside. A zero angle
    returns x itself: float32 grid_sample at the identity moves values by rounding errors (about
    1e-6), enough to flip near-ties downstream, and cnnviz skips it too."""
    if degrees == 0:
        return x
    t = degrees * math.pi / 180
    theta = torch.tensor([[math.cos(t), -math.sin(t), 0.0], [math.sin(t), math.cos(t), 0.0]],
                         dtype=torch.float32)
    theta = theta[None].repeat(x.shape[0], 1, 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def transform(x, draws):
    """Pad, jitter, scale, rotate, jitter: the same draw for every row."""
    pad = int(draws["pad"])
    x = F.pad(x, (pad, pad, pad, pad), mode="constant", value=0.5)
    x = jitter(x, draws["jitter1"], int(draws["jitter1_size"]))
    side = int(math.ceil(x.shape[-1] * float(draws["scale"])))
    x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    x = rotate(x, float(draws["angle"]))
    return jitter(x, draws["jitter2"], int(draws["jitter2_size"]))


def blur3(x):
    """[0.25,0.5,0.25] horizontally then vertically, replicate padding, per channel."""
    channels = x.shape[1]
    k = torch.tensor([0.25, 0.5, 0.25], dtype=x.dtype)
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    rows = F.conv2d(padded, k.view(1, 1, 1, 3).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(rows, k.view(1, 1, 3, 1).repeat(channels, 1, 1, 1), groups=channels)


def regularizers(x):
    """Per-row l2, tv and blur penalties of the image x [N,3,H,W]; three [N] tensors."""
    l2 = ((x - 0.5) ** 2).mean(dim=(1, 2, 3))
    tv = (((x[:, :, 1:, :] - x[:, :, :-1, :]) ** 2).mean(dim=(1, 2, 3))
          + ((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2).mean(dim=(1, 2, 3)))
    blur = ((x - blur3(x)) ** 2).mean(dim=(1, 2, 3))
    return l2, tv, blur


class LayerOutput:
    """Forward hook keeping a module's output A (attached to the graph) as [N,C,h,w]; the
    network goes on with a clone, so that no later in-place op changes A."""

    def __init__(self, model, name, reshape):
        modules = dict(model.named_modules())
        if not name or name not in modules:
            raise RefError(f"no module named '{name}' in the model")
        self.name, self.reshape, self.output = name, reshape, None
        self._handle = modules[name].register_forward_hook(self._hook)

    def _hook(self, _module, _inputs, output):
        if not torch.is_tensor(output):
            raise RefError(f"layer '{self.name}' does not output a tensor")
        if self.output is not None:
            raise RefError(f"layer '{self.name}' runs more than once per forward pass")
        a = self.reshape(self.name, output) if self.reshape else output
        if a.dim() != 4:
            raise RefError(f"layer '{self.name}' outputs shape {list(output.shape)}, "
                           "not [N,C,h,w]")
        self.output = a
        return output.clone()

    def close(self):
        self._handle.remove()


def objective_values(kind, a, logits, units, target):
    """obj_n of every row, [N]."""
    n = torch.arange(logits.shape[0])
    if kind == "class":
        return logits[n, units]
    if kind == "channel":
        return a[n, units].mean(dim=(1, 2))
    if kind == "neuron":
        return a[n, units, a.shape[2] // 2, a.shape[3] // 2]
    if kind == "dream":
        return (a * a).mean(dim=(1, 2, 3))
    # invert
    err = ((a - target) ** 2).sum(dim=(1, 2, 3))
    return -(err / (target * target).sum(dim=(1, 2, 3)).clamp(min=1e-12))


def load_npy(path, what):
    try:
        return torch.from_numpy(np.ascontiguousarray(np.load(path), dtype=np.float32))
    except (OSError, ValueError) as exc:
        raise RefError(f"cannot read {what} '{path}': {exc}") from None


def read_spec(path):
    """The spec dict with its fields checked (a missing or wrong one raises RefError)."""
    try:
        with open(path) as f:
            spec = json.load(f)
    except (OSError, ValueError) as exc:
        raise RefError(f"cannot read spec '{path}': {exc}") from None
    try:
        if spec["param"] not in PARAMS:
            raise RefError(f"param must be one of {', '.join(PARAMS)} (got {spec['param']!r})")
        objective = spec["objective"]
        if objective["kind"] not in KINDS:
            raise RefError(f"objective kind must be one of {', '.join(KINDS)} "
                           f"(got {objective['kind']!r})")
        size, batch = int(spec["size"]), int(spec["batch"])
        if size < 1 or batch < 1:
            raise RefError(f"size {size} and batch {batch} must be >= 1")
        if objective["kind"] in ("channel", "neuron", "class"):
            if len(objective["units"]) != batch:
                raise RefError(f"{len(objective['units'])} units for a batch of {batch}")
        if objective["kind"] != "class" and not objective.get("layer"):
            raise RefError(f"objective {objective['kind']} needs a layer")
        if objective["kind"] == "invert" and not objective.get("target"):
            raise RefError("objective invert needs a target")
        if len(spec["mean"]) != 3 or len(spec["std"]) != 3:
            raise RefError("mean and std must have 3 values (3-channel models only)")
        draws = spec.get("draws")
        if draws is not None and "pad" not in draws and "roll" not in draws:
            raise RefError("draws must hold either pad... or roll")
    except (KeyError, TypeError) as exc:
        raise RefError(f"spec '{path}': missing or malformed field {exc}") from None
    return spec


def expected_shape(spec):
    n, h = int(spec["batch"]), int(spec["size"])
    if spec["param"] == "fft":
        return [n, 3, h, h // 2 + 1, 2]
    return [n, 3, h, h]


def step(model, spec, p, reshape):
    """Loss, objective values [N] and network input z of one step from the parameter p."""
    kind = spec["param"]
    objective = spec["objective"]
    draws = spec.get("draws") or {}
    weights = spec.get("weights") or {}
    mean = torch.tensor(spec["mean"], dtype=torch.float32)[None, :, None, None]
    std = torch.tensor(spec["std"], dtype=torch.float32)[None, :, None, None]

    if kind == "input":
        x = None
        z = p
        if "roll" in draws:
            z = torch.roll(z, shifts=tuple(int(v) for v in draws["roll"]), dims=(2, 3))
    else:
        x = param_to_image(p, kind, bool(spec.get("decorrelate")), int(spec["size"]))
        seen = x
        if "pad" in draws:
            seen = transform(seen, draws)
        elif "roll" in draws:
            seen = torch.roll(seen, shifts=tuple(int(v) for v in draws["roll"]), dims=(2, 3))
        z = (seen - mean) / std

    hook = None
    if objective["kind"] != "class":
        hook = LayerOutput(model, objective["layer"], reshape)
    try:
        logits = methods_ref.logits_of(model(z))
    finally:
        if hook:
            hook.close()
    a = hook.output if hook else None
    if hook and a is None:
        raise RefError(f"layer '{objective['layer']}' did not run in the forward pass")

    n = logits.shape[0]
    units = torch.tensor([int(u) for u in objective.get("units") or [0] * n], dtype=torch.long)
    if objective["kind"] in ("channel", "neuron", "class"):
        limit = logits.shape[1] if objective["kind"] == "class" else a.shape[1]
        bad = [int(u) for u in units if not 0 <= int(u) < limit]
        if bad:
            raise RefError(f"units {bad} out of range [0, {limit})")
    target = None
    if objective["kind"] == "invert":
        target = load_npy(objective["target"], "target")
        if list(target.shape) != list(a.shape):
            raise RefError(f"target shape {list(target.shape)}, layer output {list(a.shape)}")
    obj = objective_values(objective["kind"], a, logits, units, target)

    per_row = -obj
    if x is not None:
        l2, tv, blur = regularizers(x)
        per_row = (per_row + float(weights.get("l2", 0.0)) * l2
                   + float(weights.get("tv", 0.0)) * tv + float(weights.get("blur", 0.0)) * blur)
    return per_row.sum(), obj, z


def main():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Loss and parameter gradient of one feature-visualization step "
        "on the eager torchvision model (float32 GRAD.npy, one JSON line on stdout)")
    parser.add_argument("--model", required=True, metavar="MODEL.pt")
    parser.add_argument("--spec", required=True, metavar="SPEC.json")
    parser.add_argument("--out", required=True, metavar="GRAD.npy")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="intra-op threads (default: every core this process may use, as "
                        "cnnviz); compare with cnnviz at the same count")
    args = parser.parse_args()
    if args.threads is None:
        args.threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (os.cpu_count() or 1)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    torch.set_num_threads(args.threads)

    try:
        spec = read_spec(args.spec)
        model, meta, scripted = methods_ref.load_eager(args.model)
        reshape = methods_ref.RESHAPE.get(meta.get("arch"))
        p = load_npy(spec["param_init"], "param_init")
        if list(p.shape) != expected_shape(spec):
            raise RefError(f"param_init shape {list(p.shape)}, expected {expected_shape(spec)} "
                           f"for param {spec['param']}")
        p.requires_grad_(True)
        loss, obj, z = step(model, spec, p, reshape)
        (grad,) = torch.autograd.grad(loss, p)
        diff = methods_ref.script_diff(model, scripted, z.detach())
        if not diff < 1e-4:
            raise RefError(f"eager and scripted logits differ by {diff:g} (>= 1e-4)")
        np.save(args.out, np.ascontiguousarray(grad.detach().numpy(), dtype="<f4"))
    except (RefError, methods_ref.RefError, OSError, RuntimeError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"loss": loss.item(), "objective": [v.item() for v in obj],
                      "eager_vs_script_max_abs": diff}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
