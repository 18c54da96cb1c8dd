#!/usr/bin/env python3
"""Reference visual explanations with plain PyTorch autograd on an EAGER torchvision model.

usage: methods_ref.py MODEL.pt IMAGE OUTDIR [--class C] [--layers L1,L2,...] [--all-layers]
                      [--cam] [--threads N]

The TorchScript file only supplies the architecture name (cnnviz.json "arch") and the weights:
the model is rebuilt as torchvision.models.<arch>(weights=None), loaded strictly from the
scripted state_dict, frozen, and checked against the scripted logits (max abs diff < 1e-4).
No TorchScript graph is touched, so this is independent of how cnnviz instruments its graphs.

Every ReLU (nn.ReLU modules, nested ones, the functional F.relu of DenseNet's forward, in-place
ones) is replaced for the duration of a pass by monkeypatching torch.nn.functional.relu,
torch.relu, torch.relu_ and Tensor.relu/relu_ with a custom autograd function. Its forward is an
out-of-place relu; its backward follows a mode read at backward time:
  plain   g * (y > 0)        (ordinary ReLU: saliency, Grad-CAM)
  guided  max(g, 0) * (y > 0) (guided backpropagation)
  deconv  max(g, 0)           (deconvnet)
Being out of place, no ReLU can overwrite a layer's output: activations are true module outputs.

Target: the pre-softmax logit y_c (default c: top-1). Written to OUTDIR as float32 .npy
(little-endian, C order):
  input.npy [3,H,W]  logits.npy [1000]
  saliency.npy, guided.npy, deconv.npy [3,H,W]: dy_c/dx with plain, guided, deconv ReLUs
  per layer L (dotted path from named_modules; default: the metadata's gradcam_layer;
  --all-layers: every metadata feature_layers entry):
    activation_<L>.npy [K,h,w] (the module's output), grad_<L>.npy [K,h,w] (dy_c/dA),
    gradcam_<L>.npy [h,w] = relu(sum_k w_k A_k), w_k = spatial mean of dy_c/dA_k
  cam.npy [h,w] with --cam: CAM of Zhou et al., where the head is global average pooling:
    resnet50      sum_k fc.weight[c,k] A_k, A = layer4 output (no bias)
    densenet121   sum_k classifier.weight[c,k] A_k, A = relu(features output) (no bias)
    squeezenet1_1 relu(conv1x1(A))[c], A = features output: the class channel whose spatial
                  mean is the logit (the conv's bias is part of it, as in the network)
    vgg16, alexnet: no global-average-pool head; skipped (a note on stderr, "cam": null)
  meta.json {"arch", "class", "relu_count", "layers", "eager_vs_script_max_abs", "cam"}
relu_count is the number of patched ReLU calls in one forward pass.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from cnnviz_python import ensure_torch  # noqa: E402

ensure_torch("methods_ref.py")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402

import common  # noqa: E402

PROG = "methods_ref.py"
MODES = ("plain", "guided", "deconv")
_RELU = torch.relu  # the original, captured before any patching


class RefError(Exception):
    pass


class ReluState:
    """Backward mode of the patched ReLUs (read at backward time) and a call counter."""

    def __init__(self, mode="plain"):
        self.mode = mode
        self.calls = 0


class _ModalReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, state):
        y = _RELU(x)
        ctx.save_for_backward(y)
        ctx.state = state
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        mode = ctx.state.mode
        if mode == "plain":
            return g * (y > 0), None
        if mode == "guided":
            return g.clamp(min=0) * (y > 0), None
        if mode == "deconv":
            return g.clamp(min=0), None
        raise RuntimeError(f"unknown ReLU mode {mode!r}")


@contextlib.contextmanager
def modal_relus(state):
    """Route every relu of the eager model through _ModalReLU while the block runs."""

    def relu(input, *args, **kwargs):  # F.relu(input, inplace=...), torch.relu, Tensor.relu
        state.calls += 1
        return _ModalReLU.apply(input, state)

    def relu_(input):  # out of place on purpose: callers use the returned tensor
        state.calls += 1
        return _ModalReLU.apply(input, state)

    targets = [(F, "relu", relu), (torch, "relu", relu), (torch, "relu_", relu_),
               (torch.Tensor, "relu", relu), (torch.Tensor, "relu_", relu_)]
    saved = [(owner, name, owner.__dict__.get(name)) for owner, name, _ in targets]
    try:
        for owner, name, fn in targets:
            setattr(owner, name, fn)
        yield state
    finally:
        for owner, name, original in saved:
            if original is None:  # inherited (Tensor methods): drop the override
                delattr(owner, name)
            else:
                setattr(owner, name, original)


class LayerTaps:
    """Forward hooks that record each named module's true output A and, through a tensor hook,
    dy/dA. The hook hands a clone downstream, so a later in-place op cannot touch A (or move the
    gradient hook onto a modified tensor)."""

    def __init__(self, model, names):
        modules = dict(model.named_modules())
        for name in names:
            if name not in modules or name == "":
                raise RefError(f"no module named '{name}' in the model")
        self.activation, self.grad, self._handles = {}, {}, []
        for name in names:
            self._handles.append(modules[name].register_forward_hook(self._make_hook(name)))

    def _make_hook(self, name):
        def hook(_module, _inputs, output):
            if not torch.is_tensor(output) or output.dim() != 4:
                raise RefError(f"layer '{name}' does not output an [N,C,H,W] tensor")
            if name in self.activation:
                raise RefError(f"layer '{name}' runs more than once per forward pass")
            self.activation[name] = output.detach().clone()[0]
            if output.requires_grad:
                output.register_hook(lambda g: self.grad.__setitem__(name, g.detach().clone()[0]))
            return output.clone()
        return hook

    def close(self):
        for handle in self._handles:
            handle.remove()


def load_eager(path):
    """(eager model, metadata, scripted model); parameters frozen, eval mode."""
    scripted, meta = common.load_model(path)
    arch = meta.get("arch")
    if not arch or not hasattr(torchvision.models, arch):
        raise RefError(f"{path}: no usable 'arch' in cnnviz.json ({arch!r})")
    model = getattr(torchvision.models, arch)(weights=None)
    model.load_state_dict(scripted.state_dict(), strict=True)
    model.eval()
    model.requires_grad_(False)
    return model, meta, scripted


def script_diff(model, scripted, x):
    """Max abs difference of eager and scripted logits on the batch x."""
    with torch.no_grad():
        return (model(x) - scripted(x)).abs().max().item()


def backprop(model, x, cls, mode, tap_names=()):
    """One forward and backward of y_cls with the ReLUs in `mode`.
    Returns (dy/dx [3,H,W], logits [C], relu calls, LayerTaps)."""
    state = ReluState(mode)
    taps = LayerTaps(model, tap_names)
    try:
        x = x.detach().clone().requires_grad_(True)
        with modal_relus(state):
            logits = model(x)[0]
            target = int(logits.argmax()) if cls is None else cls
            logits[target].backward()
    finally:
        taps.close()
    return x.grad[0], logits.detach(), state.calls, taps


def grad_cam(activation, grad):
    """relu(sum_k w_k A_k), w_k = spatial mean of dy/dA_k; [K,h,w] -> [h,w]."""
    weights = grad.mean(dim=(1, 2))
    return torch.relu((weights[:, None, None] * activation).sum(dim=0))


# Layer whose output A the CAM weighs, and how, per architecture (None: no GAP head).
CAM_LAYER = {"resnet50": "layer4", "densenet121": "features", "squeezenet1_1": "features",
             "vgg16": None, "alexnet": None}


def class_activation_map(model, arch, activation, cls, logit):
    """CAM of class cls from the activation of CAM_LAYER[arch]; checks that its spatial mean
    (plus the head's bias where the bias is outside the map) gives back the logit."""
    with torch.no_grad():
        if arch == "resnet50":
            cam, bias = torch.einsum("k,khw->hw", model.fc.weight[cls], activation), model.fc.bias
        elif arch == "densenet121":
            a = torch.relu(activation)
            cam, bias = (torch.einsum("k,khw->hw", model.classifier.weight[cls], a),
                         model.classifier.bias)
        elif arch == "squeezenet1_1":
            conv = model.classifier[1]
            cam, bias = torch.relu(conv(activation[None]))[0, cls], None
        else:
            raise RefError(f"no CAM for {arch}")
        rebuilt = cam.mean().item() + (bias[cls].item() if bias is not None else 0.0)
    if abs(rebuilt - logit) > 1e-3 * max(1.0, abs(logit)):
        raise RefError(f"CAM check failed: mean(CAM) (+ bias) = {rebuilt} but logit = {logit}")
    return cam


def save(outdir, name, tensor):
    np.save(os.path.join(outdir, name),
            np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype="<f4"))


def main():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Reference saliency, guided backprop, deconvnet, Grad-CAM and "
        "CAM on the eager torchvision model (float32 .npy files in OUTDIR)")
    parser.add_argument("model", metavar="MODEL.pt")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("outdir", metavar="OUTDIR")
    parser.add_argument("--class", dest="cls", type=int, default=None,
                        help="target class (default: top-1)")
    parser.add_argument("--layers", default=None,
                        help="comma-separated module paths (default: the metadata's gradcam_layer)")
    parser.add_argument("--all-layers", action="store_true",
                        help="every layer of the metadata's feature_layers")
    parser.add_argument("--cam", action="store_true", help="also write cam.npy where defined")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        model, meta, scripted = load_eager(args.model)
        arch = meta["arch"]
        layers = []
        if args.layers:
            layers += [name for name in args.layers.split(",") if name]
        if args.all_layers:
            layers += meta["feature_layers"]
        if not args.layers and not args.all_layers:
            layers = [meta["gradcam_layer"]]
        layers = list(dict.fromkeys(layers))  # drop duplicates, keep order

        x = common.preprocess(common.load_rgb(args.image), **common.preprocess_params(meta))[None]
        diff = script_diff(model, scripted, x)
        if not diff < 1e-4:
            raise RefError(f"eager and scripted logits differ by {diff:g} (>= 1e-4)")
        num_classes = int(meta.get("num_classes", 1000))
        if args.cls is not None and not 0 <= args.cls < num_classes:
            raise RefError(f"--class {args.cls} out of range [0, {num_classes})")

        cam_layer = CAM_LAYER.get(arch) if args.cam else None
        if args.cam and cam_layer is None:
            print(f"{PROG}: note: no CAM for {arch} (no global-average-pool head); skipped",
                  file=sys.stderr)
        taps = list(dict.fromkeys(layers + ([cam_layer] if cam_layer else [])))

        saliency, logits, relu_count, tapped = backprop(model, x, args.cls, "plain", taps)
        cls = int(logits.argmax()) if args.cls is None else args.cls
        guided, _, guided_count, _ = backprop(model, x, cls, "guided")
        deconv, _, deconv_count, _ = backprop(model, x, cls, "deconv")
        if not relu_count == guided_count == deconv_count:
            raise RefError(f"ReLU counts differ between passes: "
                           f"{relu_count}, {guided_count}, {deconv_count}")

        os.makedirs(args.outdir, exist_ok=True)
        save(args.outdir, "input.npy", x[0])
        save(args.outdir, "logits.npy", logits)
        save(args.outdir, "saliency.npy", saliency)
        save(args.outdir, "guided.npy", guided)
        save(args.outdir, "deconv.npy", deconv)
        for name in layers:
            if name not in tapped.grad:
                raise RefError(f"layer '{name}' got no gradient (not on the path to the logits)")
            activation, grad = tapped.activation[name], tapped.grad[name]
            save(args.outdir, f"activation_{name}.npy", activation)
            save(args.outdir, f"grad_{name}.npy", grad)
            save(args.outdir, f"gradcam_{name}.npy", grad_cam(activation, grad))
        if cam_layer:
            cam = class_activation_map(model, arch, tapped.activation[cam_layer], cls,
                                       logits[cls].item())
            save(args.outdir, "cam.npy", cam)

        with open(os.path.join(args.outdir, "meta.json"), "w") as out:
            json.dump({"arch": arch, "class": cls, "relu_count": relu_count, "layers": layers,
                       "eager_vs_script_max_abs": diff,
                       "cam": cam_layer}, out, indent=1)
            out.write("\n")
    except (RefError, OSError, RuntimeError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.outdir}: {arch} class {cls} relus {relu_count} layers {len(layers)} "
          f"cam {cam_layer} eager/script {diff:.2g} ({time.perf_counter() - start:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
