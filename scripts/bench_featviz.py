#!/usr/bin/env python3
"""Python side of the feature-visualization benchmark: the optimization loop of cnnviz's
channel objective in plain PyTorch, on the same model and batch.

usage: bench_featviz.py --model MODEL.pt --layer PATH --batch N --size PX --steps K
                        --threads T [--param fft|pixel] [--truncate]

The model is the eager torchvision model rebuilt from MODEL.pt as tests/reference/methods_ref.py
does (parameters frozen, eval mode); a forward hook on module PATH keeps its output A. Row n of
the batch visualizes channel n % C of A. The parameter (seed 0, normal with sd 0.01) is the
fft spectrum [N,3,PX,PX//2+1,2] (default) or the pixels [N,3,PX,PX], colour-decorrelated and
squashed by a sigmoid as tests/reference/featviz_ref.py describes. Each step:
  image = sigmoid(decorrelate(param)); pad 12 (value 0.5); jitter 8 (offsets 0..7); bilinear
  scale by one of 1 + (i-5)/50, i = 0..10; rotate by an integer angle in -10..10 degrees;
  jitter 4 (offsets 0..3); one draw for the whole batch, as cnnviz draws them, from Python's
  random seeded with 0; normalize with the model's mean and std;
  forward; loss = -sum_n mean_{h,w} A[n, n % C]; backward; Adam (lr 0.05) step.
With --truncate the forward stops at the layer: the hook raises after keeping A, so the layers
after it do not run (as pytorch-cnn-visualizations runs model.features up to the layer).

One untimed warm-up step, then K timed steps. Prints one JSON line:
  {"steps": K, "seconds": ..., "steps_per_s": ..., "batch": N, "size": PX, "layer": PATH,
   "truncate": bool}
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cnnviz_python import ensure_torch  # noqa: E402

ensure_torch("bench_featviz.py")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

import common  # noqa: E402
import featviz_ref as fv  # noqa: E402
import methods_ref as ref  # noqa: E402

PROG = "bench_featviz.py"
PAD, JITTER1, JITTER2 = 12, 8, 4
SCALES = [1 + (i - 5) / 50 for i in range(11)]
ANGLES = list(range(-10, 11))


class _Reached(Exception):
    """Raised by the hook to stop a truncated forward at the layer."""


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def draw(rng):
    """One random draw of the transforms (the same for every row)."""
    return {"pad": PAD, "jitter1": [rng.randrange(JITTER1), rng.randrange(JITTER1)],
            "jitter1_size": JITTER1, "scale": rng.choice(SCALES), "angle": rng.choice(ANGLES),
            "jitter2": [rng.randrange(JITTER2), rng.randrange(JITTER2)],
            "jitter2_size": JITTER2}


class Tap:
    """Forward hook that takes the channel objective sum_n mean_{h,w} A[n, n % C] of the layer's
    output at once, before a later in-place op (a ReLU(inplace=True)) can change A; then raises
    _Reached when truncating."""

    def __init__(self, module, truncate):
        self.objective, self.truncate = None, truncate
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, _module, _inputs, a):
        if not torch.is_tensor(a) or a.dim() != 4:
            raise RuntimeError("the layer does not output an [N,C,h,w] tensor")
        n = torch.arange(a.shape[0])
        self.objective = a[n, n % a.shape[1]].mean(dim=(1, 2)).sum()
        if self.truncate:
            raise _Reached()

    def close(self):
        self._handle.remove()


def make_step(model, tap, param, kind, size, mean, std, optimizer, rng):
    def step():
        x = fv.param_to_image(param, kind, True, size)
        z = (fv.transform(x, draw(rng)) - mean) / std
        tap.objective = None
        try:
            model(z)
        except _Reached:
            pass
        if tap.objective is None:
            raise RuntimeError("the layer did not run in the forward pass")
        loss = -tap.objective
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def main():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Time the channel-objective feature-visualization loop in PyTorch")
    parser.add_argument("--model", required=True, metavar="MODEL.pt")
    parser.add_argument("--layer", required=True, metavar="PATH",
                        help="module path of the layer, e.g. features.12")
    parser.add_argument("--batch", type=positive_int, required=True, metavar="N")
    parser.add_argument("--size", type=positive_int, required=True, metavar="PX")
    parser.add_argument("--steps", type=positive_int, required=True, metavar="K")
    parser.add_argument("--threads", type=positive_int, required=True, metavar="T",
                        help="intra-op threads")
    parser.add_argument("--param", choices=("fft", "pixel"), default="fft")
    parser.add_argument("--truncate", action="store_true",
                        help="stop the forward at the layer")
    args = parser.parse_args()

    # Set explicitly: the default depends on the build and on OMP_NUM_THREADS.
    torch.set_num_threads(args.threads)
    try:
        model, meta, _ = ref.load_eager(args.model)
        modules = dict(model.named_modules())
        if not args.layer or args.layer not in modules:
            raise ref.RefError(f"no module named '{args.layer}' in the model")
        pre = common.preprocess_params(meta)
        mean = torch.tensor(pre["mean"], dtype=torch.float32)[None, :, None, None]
        std = torch.tensor(pre["std"], dtype=torch.float32)[None, :, None, None]

        torch.manual_seed(0)
        shape = ([args.batch, 3, args.size, args.size // 2 + 1, 2] if args.param == "fft"
                 else [args.batch, 3, args.size, args.size])
        param = (torch.randn(shape) * 0.01).requires_grad_(True)
        optimizer = torch.optim.Adam([param], lr=0.05)
        tap = Tap(modules[args.layer], args.truncate)
        step = make_step(model, tap, param, args.param, args.size, mean, std, optimizer,
                         random.Random(0))

        step()  # warm-up
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        seconds = time.perf_counter() - start
        tap.close()
    except (ref.RefError, fv.RefError, OSError, RuntimeError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1

    print(json.dumps({"steps": args.steps, "seconds": round(seconds, 4),
                      "steps_per_s": round(args.steps / seconds, 3), "batch": args.batch,
                      "size": args.size, "layer": args.layer, "truncate": args.truncate}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
