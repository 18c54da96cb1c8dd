#!/usr/bin/env python3
"""Python side of the GPU benchmark: guided Grad-CAM at every feature stage of a model for a
batch of images, in plain PyTorch on one device, the way a careful Python user would write it.

usage: bench_gpu.py MODEL.pt [--device cuda] [--batch N] [--mode floor|per-layer|per-layer-tools]
                   [--repeat R] [--cudnn-benchmark]

The eager torchvision model is rebuilt from MODEL.pt as tests/reference/methods_ref.py does
(weights from the file, parameters frozen, every ReLU patched so that its backward can be
guided), moved to the device, TF32 off. The input is a seeded random batch [N,3,224,224]; the
targets are each image's top-1 logit; the layers are the feature stages that
scripts/export_models.py's feature_stages() discovers (31 on VGG16).
  floor      1 forward and 2 backward passes for the whole batch: a plain backward
             (retain_graph) with forward and tensor hooks on every layer gives every Grad-CAM,
             then a guided backward through the same graph gives the guided gradient
  per-layer  one forward + backward per layer (hooks on that layer only), plus one guided pass:
             what pytorch-grad-cam and the seed's tools do when asked for several layers,
             but with the parameters frozen, so no weight gradient is computed
  per-layer-tools  the same loop as those tools run it: the model's parameters require
             gradients (as loaded), model.zero_grad() before each backward, so every
             backward also computes the weight gradients
Each mode ends with the maps: per image and layer, the CAM upsampled bilinearly to the input,
min-max normalized, times the guided gradient. Timed with torch.cuda.synchronize() around each
run; one untimed warm-up, then R runs. TF32 off; --cudnn-benchmark sets
torch.backends.cudnn.benchmark (off by default, as in PyTorch). Prints one JSON line:
  {"mode", "device", "cudnn_benchmark", "batch", "layers", "run_ms": [...], "best_ms",
   "best_ms_per_image"}
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import export_models  # noqa: E402
import methods_ref as ref  # noqa: E402


class Hooks:
    """Forward hooks keeping each layer's output and, through a tensor hook, its gradient."""

    def __init__(self, model, names):
        modules = dict(model.named_modules())
        self.activation, self.grad = {}, {}
        self.handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name):
        def hook(_module, _inputs, output):
            self.activation[name] = output.detach()

            def keep(grad):
                self.grad[name] = grad.detach()
            output.register_hook(keep)
        return hook

    def close(self):
        for h in self.handles:
            h.remove()


def maps(activation, grad, guided):
    """Guided Grad-CAM of a batch: [N,K,h,w] x2, [N,3,H,W] -> [N,3,H,W]."""
    cam = torch.relu((grad.mean(dim=(2, 3), keepdim=True) * activation).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=guided.shape[-2:], mode="bilinear", align_corners=False)
    low = cam.amin(dim=(2, 3), keepdim=True)
    high = cam.amax(dim=(2, 3), keepdim=True)
    cam = torch.where(high > low, (cam - low) / (high - low).clamp_min(1e-30),
                      torch.zeros_like(cam))
    return guided * cam


def forward(model, x, layers, state):
    """Forward of x with hooks on `layers` and plain ReLUs; returns (hooks, input, target), the
    target being the sum of each image's top-1 logit."""
    hooks = Hooks(model, layers)
    state.mode = "plain"
    try:
        xx = x.detach().clone().requires_grad_(True)
        with ref.modal_relus(state):
            logits = model(xx)
    finally:
        hooks.close()
    if isinstance(logits, tuple):
        logits = logits[0]
    return hooks, xx, logits.gather(1, logits.argmax(1, keepdim=True)).sum()


def backward_pass(model, x, layers, state, mode):
    """Forward with hooks on `layers`, backward of the top-1 logits in ReLU mode `mode`."""
    hooks, xx, target = forward(model, x, layers, state)
    state.mode = mode
    if next(model.parameters()).requires_grad:  # per-layer-tools
        model.zero_grad()
    target.backward()
    return hooks, xx.grad


def run_floor(model, x, layers, state):
    hooks, xx, target = forward(model, x, layers, state)
    target.backward(retain_graph=True)
    acts, grads = dict(hooks.activation), dict(hooks.grad)
    state.mode = "guided"  # read by the ReLUs' backward: the same graph serves
    xx.grad = None
    target.backward()
    return [maps(acts[n], grads[n], xx.grad) for n in layers]


def run_per_layer(model, x, layers, state):
    cams = []
    for name in layers:
        hooks, _ = backward_pass(model, x, [name], state, "plain")
        cams.append((hooks.activation[name], hooks.grad[name]))
    _, guided = backward_pass(model, x, [], state, "guided")
    return [maps(a, g, guided) for a, g in cams]


RUNS = {"floor": run_floor, "per-layer": run_per_layer, "per-layer-tools": run_per_layer}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", metavar="MODEL.pt")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--mode", choices=list(RUNS), default="floor")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cudnn-benchmark", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    model, meta, _ = ref.load_eager(args.model)
    if args.mode == "per-layer-tools":
        model.requires_grad_(True)
    model = model.to(device)
    x = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(device)
    layers = export_models.feature_stages(model, x[:1])
    state = ref.ReluState("plain")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    run = RUNS[args.mode]
    run(model, x, layers, state)
    sync()
    run_ms = []
    for _ in range(args.repeat):
        sync()
        start = time.perf_counter()
        out = run(model, x, layers, state)
        float(out[-1].sum())
        sync()
        run_ms.append((time.perf_counter() - start) * 1000.0)
    best = min(run_ms)
    print(json.dumps({"mode": args.mode, "device": str(device),
                      "cudnn_benchmark": args.cudnn_benchmark, "batch": args.batch,
                      "layers": len(layers), "run_ms": [round(ms, 3) for ms in run_ms],
                      "best_ms": round(best, 3),
                      "best_ms_per_image": round(best / args.batch, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
