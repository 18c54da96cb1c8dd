#!/usr/bin/env python3
"""Reference visual explanations with plain PyTorch autograd on an EAGER torchvision model.

usage: methods_ref.py MODEL.pt IMAGE OUTDIR [--class C] [--layers L1,L2,...] [--all-layers]
                      [--region MASK.png]
                      [--cam] [--extra] [--score-cam] [--noise NOISE.npy]
                      [--ig] [--ig-steps M] [--blur-sigma S] [--score S] [--counterfactual]
                      [--threads N]

The TorchScript file only supplies the architecture name (cnnviz.json "arch") and the weights:
the model is rebuilt as torchvision.models.<arch>(weights=None) with the constructor arguments of
scripts/export_models.py (GoogLeNet: transform_input=True, no auxiliary heads), loaded strictly
from the scripted state_dict, frozen, and checked against the scripted logits (max abs diff
< 1e-4; a scripted GoogLeNet returns a tuple, its element 0 is the logits). No TorchScript graph
is touched, so this is independent of how cnnviz instruments its graphs.

Every ReLU (nn.ReLU modules, nested ones, the functional F.relu of DenseNet's forward, in-place
ones) is replaced for the duration of a pass by monkeypatching torch.nn.functional.relu,
torch.relu, torch.relu_ and Tensor.relu/relu_ with a custom autograd function. Its forward is an
out-of-place relu; its backward follows a mode read at backward time:
  plain   g * (y > 0)        (ordinary ReLU: saliency, Grad-CAM)
  guided  max(g, 0) * (y > 0) (guided backpropagation)
  deconv  max(g, 0)           (deconvnet)
Every ReLU6 (MobileNetV2: nn.ReLU6 calls F.hardtanh(x, 0., 6., inplace); also F.relu6 and
torch._C._nn.relu6/relu6_/hardtanh/hardtanh_ with bounds 0 and 6) is replaced the same way, out
of place, with forward y = clamp(x, 0, 6) and backward
  plain   g * ((y > 0) & (y < 6))
  guided  max(g, 0) * ((y > 0) & (y < 6))
  deconv  max(g, 0)
hardtanh with other bounds is left as it is. SiLU (EfficientNet) keeps its true gradient in
every mode: F.silu only goes through a counting wrapper that calls the original.
Being out of place, no ReLU can overwrite a layer's output: activations are true module outputs.

Feature stages ("discovered_layers"): scripts/export_models.py's feature_stages() on the eager
model and the input image. A module qualifies when it runs exactly once in the forward pass and
outputs [N,C,h,w] with h*w > 1. From the root, take the qualifying direct children in the order
of their first call; when exactly one of them has a qualifying child, descend into it and
repeat; otherwise those children are the stages.

Target: the pre-softmax logit y_c (default c: top-1 of the clean image); --score probability,
log-probability or sigmoid differentiates softmax(y)_c, log_softmax(y)_c or sigmoid(y_c)
instead, and --counterfactual the negation (every gradient below; not Score-CAM's softmax, nor
CAM's weights, nor the IG completeness check, which use the logit). A segmenter's y_c is the
sum of its "out" scores of class c over the pixels the clean image labels c (within --region
MASK.png: black outside, one colour inside, resized and cropped as the image with NEAREST), the
same pixels for every perturbed pass; default c: the largest class but the background; Score-CAM
then weighs by y_c, not a softmax (so for a detector). A detector's (YOLO layouts, letterboxed as
tests/reference/detect_ref.py does) "class" c is its detection c on the clean image
(detect_ref.py's decoding and NMS at min-score 0.25, IoU 0.45; default 0), and y_c that
detection's score at its anchor and class: objectness (yolov5) times the class score. x is the
normalized
input [1,3,H,W]; "upsample" is F.interpolate(mode="bilinear", align_corners=False) to H,W.
Written to OUTDIR as float32 .npy (little-endian, C order):
  input.npy [3,H,W]  logits.npy [1000]
  saliency.npy, guided.npy, deconv.npy [3,H,W]: dy_c/dx with plain, guided, deconv ReLUs
  per layer L (dotted path from named_modules; default: the metadata's default_layer;
  --all-layers: every discovered feature stage; --layers adds its own):
    activation_<L>.npy [K,h,w] (the module's output A), grad_<L>.npy [K,h,w] (g = dy_c/dA,
    plain ReLUs), gradcam_<L>.npy [h,w] = relu(sum_k w_k A_k), w_k = spatial mean of g_k
  cam.npy [h,w] with --cam: CAM of Zhou et al., where the head is global average pooling:
    resnet50      sum_k fc.weight[c,k] A_k, A = layer4 output (no bias)
    googlenet     sum_k fc.weight[c,k] A_k, A = inception5b output (no bias)
    densenet121   sum_k classifier.weight[c,k] A_k, A = relu(features output) (no bias)
    mobilenet_v2, efficientnet_b0
                  sum_k classifier[1].weight[c,k] A_k, A = features output (no bias)
    squeezenet1_1 relu(conv1x1(A))[c], A = features output: the class channel whose spatial
                  mean is the logit (the conv's bias is part of it, as in the network)
    vgg16, alexnet: no global-average-pool head; skipped (a note on stderr, "cam": null)
  with --extra (the maps of a layer L are computed in float64 from the float32 A [K,h,w] and g,
  and saved as float32; S_k = sum of A_k over the h*w positions):
    gradxinput.npy [3,H,W]   x * dy_c/dx (plain)
    gradcampp_<L>.npy [h,w]  Grad-CAM++: alpha = g^2 / (2 g^2 + S_k g^3 + 1e-7) element-wise,
                             alpha = 0 where g == 0; w_k = sum over positions of
                             relu(g_k) alpha_k; map = relu(sum_k w_k A_k)
    xgradcam_<L>.npy [h,w]   XGrad-CAM: w_k = sum over positions of g_k A_k / (S_k + 1e-7);
                             map = relu(sum_k w_k A_k)
    layercam_<L>.npy [h,w]   Layer-CAM: relu(sum_k relu(g_k) * A_k) (element-wise)
    hirescam_<L>.npy [h,w]   HiResCAM: relu(sum_k g_k * A_k) (element-wise)
    eigencam_<L>.npy [h,w]   Eigen-CAM (class independent): M = A as [h*w, K] (row = position),
                             not centered; v1 = first right singular vector of M
                             (torch.linalg.svd); p = M v1 as [h,w]; p = -p if p.sum() < 0;
                             map = relu(p)
    layercam_fused.npy [H,W] over the requested layers: each layer's Layer-CAM map upsampled,
                             divided by its max when the max is > 0 (else all zeros), then the
                             element-wise max across the layers
  with --score-cam, per layer L:
    scorecam_<L>.npy [h,w]   Score-CAM: H_k = upsample(A_k) min-max normalized to [0,1] (all
                             zeros when max == min; float32); s_k = softmax(model(x * H_k))[c],
                             the mask multiplying all 3 channels of the normalized input;
                             map = relu(sum_k s_k A_k) (no-grad forwards in batches of 32;
                             softmax and the sum in float64)
  with --noise NOISE.npy (float32 [S,3,H,W]):
    smoothgrad.npy [3,H,W]         mean over s of dy_c/dx at x + noise[s], plain ReLUs
    smoothgrad_guided.npy [3,H,W]  the same with guided ReLUs
  with --ig, Integrated Gradients with a right Riemann sum, M = --ig-steps (default 50), plain
  ReLUs: IG = (x - x') * (1/M) sum_{k=1..M} dy_c/dx at x' + (k/M)(x - x'), for the baselines
    ig_black.npy [3,H,W]              x' = the normalized black image, (0 - mean) / std per channel
    ig_blurred.npy [3,H,W]            x' = gaussian_blur(x, S), S = --blur-sigma (default 10.0)
    ig_baseline_blurred.npy [3,H,W]   that x'
    gaussian_blur (common.gaussian_blur): r = ceil(3 S), k_i = exp(-i^2 / (2 S^2)) for
    i = -r..r normalized to sum 1; F.pad(mode="reflect") by r on each side; a depthwise conv2d
    (groups=3) horizontally, then vertically; float32.
  meta.json {"arch", "class", "relu_count", "relu6_count", "silu_count", "layers",
             "discovered_layers", "eager_vs_script_max_abs", "cam"
             [, "ig": {"black": {"sum", "delta"}, "blurred": {"sum", "delta"}}]}
relu_count, relu6_count and silu_count are the numbers of patched ReLU, ReLU6 and SiLU calls in
one forward pass (the same in the plain, guided and deconv passes, or the run fails). In "ig",
"sum" is the sum of all elements of IG (in float64) and "delta" is y_c(x) - y_c(x')
(completeness: sum -> delta as M grows).
The gradient passes over several inputs (SmoothGrad, IG) run in batches of 8: in eval mode a
sample's gradient does not depend on the others of its batch.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from cnnviz_python import ensure_torch  # noqa: E402

ensure_torch("methods_ref.py")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402

import common  # noqa: E402
import detect_ref  # noqa: E402
import export_models  # noqa: E402
import tiny_models  # noqa: E402
import torchvision_detectors  # noqa: E402
from torch import nn  # noqa: E402

PROG = "methods_ref.py"
MODES = ("plain", "guided", "deconv")
# The originals, captured before any patching.
_RELU = torch.relu
_CLAMP = torch.clamp
_HARDTANH = F.hardtanh
_SILU = F.silu
_C_HARDTANH = torch._C._nn.hardtanh
_C_HARDTANH_ = torch._C._nn.hardtanh_
GRAD_BATCH = 8  # inputs per forward+backward in SmoothGrad and IG
FORWARD_BATCH = 32  # inputs per no-grad forward in Score-CAM


class RefError(Exception):
    pass


class ReluState:
    """Backward mode of the patched ReLUs and ReLU6s (read at backward time) and call counters
    (calls: ReLU, relu6_calls: ReLU6, silu_calls: SiLU, which is counted only)."""

    def __init__(self, mode="plain"):
        self.mode = mode
        self.calls = 0
        self.relu6_calls = 0
        self.silu_calls = 0


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


class _ModalReLU6(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, state):
        y = _CLAMP(x, 0.0, 6.0)
        ctx.save_for_backward(y)
        ctx.state = state
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        mode = ctx.state.mode
        inside = (y > 0) & (y < 6)
        if mode == "plain":
            return g * inside, None
        if mode == "guided":
            return g.clamp(min=0) * inside, None
        if mode == "deconv":
            return g.clamp(min=0), None
        raise RuntimeError(f"unknown ReLU6 mode {mode!r}")


def _is_relu6(min_val, max_val):
    return float(min_val) == 0.0 and float(max_val) == 6.0


@contextlib.contextmanager
def modal_relus(state):
    """Route every relu and relu6 of the eager model through _ModalReLU / _ModalReLU6, and count
    the F.silu calls, while the block runs."""

    def relu(input, *args, **kwargs):  # F.relu(input, inplace=...), torch.relu, Tensor.relu
        state.calls += 1
        return _ModalReLU.apply(input, state)

    def relu_(input):  # out of place on purpose: callers use the returned tensor
        state.calls += 1
        return _ModalReLU.apply(input, state)

    def relu6(input, *args, **kwargs):  # F.relu6(input, inplace), torch._C._nn.relu6(_)
        state.relu6_calls += 1
        return _ModalReLU6.apply(input, state)

    def hardtanh_with(original):
        def hardtanh(input, min_val=-1.0, max_val=1.0, *args, **kwargs):
            if _is_relu6(min_val, max_val):  # nn.ReLU6: F.hardtanh(x, 0., 6., inplace)
                state.relu6_calls += 1
                return _ModalReLU6.apply(input, state)
            return original(input, min_val, max_val, *args, **kwargs)
        return hardtanh

    def silu(input, *args, **kwargs):  # counted, not changed
        state.silu_calls += 1
        return _SILU(input, *args, **kwargs)

    targets = [(F, "relu", relu), (torch, "relu", relu), (torch, "relu_", relu_),
               (torch.Tensor, "relu", relu), (torch.Tensor, "relu_", relu_),
               (F, "relu6", relu6), (torch._C._nn, "relu6", relu6),
               (torch._C._nn, "relu6_", relu6), (F, "hardtanh", hardtanh_with(_HARDTANH)),
               (torch._C._nn, "hardtanh", hardtanh_with(_C_HARDTANH)),
               (torch._C._nn, "hardtanh_", hardtanh_with(_C_HARDTANH_)),
               (F, "silu", silu)]
    with common.patched(targets):
        yield state


def vit_tokens(grid):
    """[N,1+grid*grid,C] -> [N,C,grid,grid]: drop the class token, the rest row by row (the
    patch embedding's convolution is [N,C,h,w] already)."""
    def reshape(_name, t):
        if t.dim() == 4:
            return t
        return t[:, 1:, :].reshape(t.shape[0], grid, grid, t.shape[2]).permute(0, 3, 1, 2)
    return reshape


def swin_channels_last(stem_conv):
    """Swin's modules output [N,h,w,C], all but the stem's convolution: permute them."""
    return lambda name, t: t if name == stem_conv else t.permute(0, 3, 1, 2)


# The layer outputs that are not [N,C,h,w], written out by hand per architecture (as users of
# hook-based tools do with a reshape_transform); cnnviz infers the same from the shapes alone.
RESHAPE = {
    "vit_b_16": vit_tokens(14),
    "swin_t": swin_channels_last("features.0.0"),
    "tiny_vit": vit_tokens(4),
    "tiny_swin": swin_channels_last("features.0.0"),
}
LAYOUT = {"reshape": None}  # the current model's entry of RESHAPE (main sets it)


class LayerTaps:
    """Forward hooks that record each named module's true output A and, through a tensor hook,
    dy/dA, both as [C,h,w] (RESHAPE for the models that need it). The hook hands a clone
    downstream, so a later in-place op cannot touch A (or move the gradient hook onto a modified
    tensor)."""

    def __init__(self, model, names):
        modules = dict(model.named_modules())
        for name in names:
            if name not in modules or name == "":
                raise RefError(f"no module named '{name}' in the model")
        self.activation, self.grad, self._handles = {}, {}, []
        for name in names:
            self._handles.append(modules[name].register_forward_hook(self._make_hook(name)))

    def _make_hook(self, name):
        reshape = LAYOUT["reshape"] or (lambda _name, t: t)

        def hook(_module, _inputs, output):
            if not torch.is_tensor(output):
                raise RefError(f"layer '{name}' does not output a tensor")
            if name in self.activation:
                raise RefError(f"layer '{name}' runs more than once per forward pass")
            activation = reshape(name, output.detach())
            if activation.dim() != 4:
                raise RefError(f"layer '{name}' does not output an [N,C,H,W] tensor")
            self.activation[name] = activation.clone()[0]
            if output.requires_grad:
                output.register_hook(
                    lambda g: self.grad.__setitem__(name, reshape(name, g.detach()).clone()[0]))
            return output.clone()
        return hook

    def close(self):
        for handle in self._handles:
            handle.remove()


def logits_of(output):
    """Logits of a model's output (a scripted GoogLeNet returns (logits, aux2, aux1))."""
    return output[0] if isinstance(output, tuple) else output


class TorchvisionScores(nn.Module):
    """A torchvision detector run whole, as torchvision runs it (its transform without its
    resize, which the preprocessing did; its heads, region proposals, decoding, threshold at
    0.25 and NMS at its own IoU, without a top-k cap, at most 300 detections): forward(x,
    normalized as cnnviz's input) returns its list of detections per image. `backbone` comes
    first so that layer paths read as the export's."""

    def __init__(self, detector, meta):
        super().__init__()
        self.backbone = detector.backbone
        self.detector = detector
        # Faster R-CNN's thresholds are its RoI heads'; RetinaNet's, FCOS's and SSD's its own.
        settings = getattr(detector, "roi_heads", detector)
        settings.score_thresh = 0.25
        settings.detections_per_img = 300
        detector.topk_candidates = 10 ** 6
        # Resized already: torchvision's resize would rescale a side that flooring shortened
        # (1280 x 853 becomes 1200 x 799, which it would stretch back to 800).
        detector.transform.resize = lambda image, target=None: (image, target)
        pre = meta["preprocess"]
        self.register_buffer("mean", torch.tensor(pre["mean"])[None, :, None, None])
        self.register_buffer("std", torch.tensor(pre["std"])[None, :, None, None])

    def forward(self, x):
        return self.detector(list(x * self.std + self.mean))


def torchvision_detector(arch):
    """The torchvision detector (eval mode, random weights) whose dense wrapper `arch` exports,
    or None."""
    if arch in tiny_models.TV_DETECTORS:
        return tiny_models.TV_DETECTORS[arch]()
    if arch in export_models.DETECTORS:
        return export_models.construct(arch).eval()
    return None


def load_eager(path):
    """(eager model, metadata, scripted model); parameters frozen, eval mode. A torchvision
    detector's eager model is TorchvisionScores."""
    scripted, meta = common.load_model(path)
    arch = meta.get("arch")
    detector = torchvision_detector(arch)
    if detector is not None:
        detector.load_state_dict(scripted.state_dict(), strict=True)
        model = TorchvisionScores(detector, meta).eval()
        model.requires_grad_(False)
        return model, meta, scripted
    if arch in tiny_models.TINY:
        model = tiny_models.TINY[arch]()
    elif arch and (hasattr(torchvision.models, arch) or arch in export_models.SEGMENTERS):
        model = export_models.construct(arch)
    else:
        raise RefError(f"{path}: no usable 'arch' in cnnviz.json ({arch!r})")
    model.load_state_dict(scripted.state_dict(), strict=True)
    model.eval()
    model.requires_grad_(False)
    return model, meta, scripted


def script_diff(model, scripted, x):
    """Max abs difference of eager and scripted logits (a segmenter's scores per pixel) on the
    batch x."""
    if isinstance(model, TorchvisionScores):  # its dense rows, computed by the wrapper's code
        model = torchvision_detectors.dense_detector(model.detector)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Scripted GoogleNet")
        eager, script = model(x), scripted(x)
        if isinstance(eager, tuple):  # a two-stage detector's (rows, proposals)
            eager, script = eager[0], script[0]
        if isinstance(eager, dict):
            return (eager["out"] - script["out"]).abs().max().item()
        return (eager - logits_of(script)).abs().max().item()


# A segmenter's targets (pytorch-grad-cam's SemanticSegmentationTarget): class c's score is the
# sum of the "out" scores of c over the pixels the clean image labels c (argmax over classes),
# within --region. "labels": those labels [1,H,W] (-1 outside the region), fixed for every
# pass, the perturbed ones included.
SEGMENT = {"labels": None}


# A detector's targets: its detections on the clean image (tests/reference/detect_ref.py's
# letterbox, decoding and NMS at its defaults); "class" k is detection k, whose score is
# objectness (yolov5; 1 for yolov8) times its class's score at its anchor, the same anchor and
# class in every pass.
# With --box, "class" 0 is instead the sum of the scores of the detections whose box overlaps
# the given one (image pixels, carried through the letterbox) by IoU >= --match-iou, of its
# label when it has one: pytorch-grad-cam's FasterRCNNBoxScoreTarget without the IoU term,
# summed over every match.
DETECT = {"layout": None, "targets": None, "boxes": None, "groups": None}


def torchvision_scores(output):
    """[N,K]: each detection's score in a torchvision detector's own detections (output: one
    dict per image): the score of its detection of the same label whose box overlaps the clean
    image's by IoU >= 0.99 (0 when none does)."""
    per_image = []
    for found in output:
        scores = []
        for (_, label), box in zip(DETECT["targets"], DETECT["boxes"]):
            iou = torchvision.ops.box_iou(box[None], found["boxes"])[0]
            iou = torch.where(found["labels"] == label, iou, torch.zeros_like(iou))
            j = int(iou.argmax()) if iou.numel() else -1
            scores.append(found["scores"][j] if j >= 0 and iou[j] >= 0.99
                          else found["scores"].sum() * 0)
        per_image.append(torch.stack(scores))
    return torch.stack(per_image)


def detection_scores(output):
    """[N,K]: each detection's (or box query's) score in the detector's raw output."""
    if DETECT["layout"] == "torchvision":
        scores = torchvision_scores(output)
        if DETECT["groups"] is not None:
            return torch.stack([sum(scores[:, k] for k in g) for g in DETECT["groups"]], dim=1)
        return scores
    rows = output.transpose(1, 2) if DETECT["layout"] == "yolov8" else output
    scores = []
    for anchor, label in DETECT["targets"]:
        if DETECT["layout"] == "yolov8":
            scores.append(rows[:, anchor, 4 + label])
        else:
            scores.append(rows[:, anchor, 4] * rows[:, anchor, 5 + label])
    if DETECT["groups"] is not None:
        return torch.stack([sum(scores[k] for k in group) for group in DETECT["groups"]], dim=1)
    return torch.stack(scores, dim=1)


def match_box(spec, geometry, size, match_iou):
    """The detections (indices into DETECT["targets"]) a --box X1,Y1,X2,Y2[:LABEL] matches."""
    corners, _, label = spec.partition(":")
    x1, y1, x2, y2 = (float(v) for v in corners.split(","))
    w, h = size
    sx, sy = geometry["width"] / w, geometry["height"] / h
    query = torch.tensor([[x1 * sx + geometry["left"], y1 * sy + geometry["top"],
                           x2 * sx + geometry["left"], y2 * sy + geometry["top"]]],
                         dtype=DETECT["boxes"].dtype)
    # A detection counts with its part inside the image (not a letterbox's bars), the box
    # `cnnviz detect` reports.
    left, top = geometry["left"], geometry["top"]
    lo = torch.tensor([left, top, left, top], dtype=query.dtype)
    hi = torch.tensor([left + geometry["width"], top + geometry["height"]] * 2, dtype=query.dtype)
    iou = torchvision.ops.box_iou(query, torch.max(torch.min(DETECT["boxes"], hi), lo))[0]
    group = [k for k, (_, lab) in enumerate(DETECT["targets"])
             if iou[k].item() >= match_iou and (not label or lab == int(label))]
    if not group:
        raise RefError(f"--box {spec} matches no detection")
    DETECT["query"] = (query[0], int(label) if label else DETECT["targets"][group[0]][1])
    return group


# D-RISE (Petsiuk et al. 2021), --drise -> drise.npy [H,W]: RISE's masks (the same seed, order
# and upsampling as perturbation_ref.py's), each masked image's proposals (every anchor, before
# threshold and NMS) compared with the target box and class by IoU x objectness x cosine of the
# class scores with the one-hot class; a mask weighs by its best proposal; sum / (N p).
def random_masks(h, w, args):
    """RISE's masks for an input of h x w, args.batch at a time: [c, h, w] float32 each."""
    s = args.grid
    g = torch.Generator().manual_seed(args.seed)
    cells = (torch.rand(args.masks, s, s, generator=g) < args.p).float()
    cell = math.ceil(max(h, w) / s)
    shifts = torch.randint(0, cell, (args.masks, 2), generator=g)
    for i in range(0, args.masks, args.batch):
        up = F.interpolate(cells[i:i + args.batch, None], size=((s + 1) * cell, (s + 1) * cell),
                           mode="bilinear", align_corners=False)
        yield torch.stack([up[k, 0, dy:dy + h, dx:dx + w]
                           for k, (dy, dx) in enumerate(shifts[i:i + args.batch].tolist())])


def drise(model, x, box, label, args):
    _, _, h, w = x.shape
    total = torch.zeros(h, w, dtype=torch.float64)
    for masks in random_masks(h, w, args):
        with torch.no_grad():
            out = model(x * masks[:, None]).double()
        if DETECT["layout"] == "yolov8":
            rows = out.transpose(1, 2)
            obj, probs = torch.ones(rows.shape[:2], dtype=rows.dtype), rows[..., 4:]
        else:
            rows = out
            obj, probs = rows[..., 4], rows[..., 5:]
        cx, cy, bw, bh = rows[..., :4].unbind(-1)
        boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
        iou = torchvision.ops.box_iou(box[None].double(), boxes.reshape(-1, 4))
        iou = iou.reshape(boxes.shape[:2])
        onehot = torch.zeros(probs.shape[-1], dtype=probs.dtype)
        onehot[label] = 1
        norm = torch.linalg.vector_norm(probs, dim=-1)
        cosine = torch.where(norm > 0, (probs * onehot).sum(-1) / norm.clamp_min(1e-300),
                             torch.zeros_like(norm))
        weight = (iou * obj * cosine).max(1).values
        total += (weight.view(-1, 1, 1) * masks.double()).sum(0)
    return (total / (args.masks * args.p)).float()


# A detector's occlusion and RISE, --perturb: the target's score (head()) of the masked images,
# the anchors fixed by the clean image. Occlusion: windows of --window, --stride (flush with
# the bottom and right borders) filled with the mean colour (0 after normalization), the score's
# drop averaged over the windows covering each pixel. RISE: the same masks as D-RISE, weighted
# by the score, sum / (N p).
def window_starts(length, window, stride):
    out = list(range(0, length - window + 1, stride))
    if not out or out[-1] + window < length:
        out.append(length - window)
    return out


def detector_occlusion(model, x, cls, window, stride):
    _, _, h, w = x.shape
    with torch.no_grad():
        base = head(model(x))[0, cls].double()
        total = torch.zeros(h, w, dtype=torch.float64)
        count = torch.zeros(h, w, dtype=torch.float64)
        for top in window_starts(h, window, stride):
            for left in window_starts(w, window, stride):
                covered = x.clone()
                covered[:, :, top:top + window, left:left + window] = 0
                total[top:top + window, left:left + window] += (
                    base - head(model(covered))[0, cls].double())
                count[top:top + window, left:left + window] += 1
    return (total / count).float()


def detector_rise(model, x, cls, args):
    _, _, h, w = x.shape
    total = torch.zeros(h, w, dtype=torch.float64)
    for masks in random_masks(h, w, args):
        with torch.no_grad():
            weight = head(model(x * masks[:, None]))[:, cls].double()
        total += (weight.view(-1, 1, 1) * masks.double()).sum(0)
    return (total / (args.masks * args.p)).float()


def find_detections(model, meta, x):
    """Fixes DETECT["targets"] from the clean image x (letterboxed; a torchvision detector's
    resized, and its own detections)."""
    if isinstance(model, TorchvisionScores):
        DETECT["layout"] = "torchvision"
        with torch.no_grad():
            found = model(x)[0]
        if not len(found["scores"]):
            raise RefError("the detector finds no box above 0.25")
        DETECT["targets"] = [(j, int(lab)) for j, lab in enumerate(found["labels"])]
        DETECT["boxes"] = found["boxes"]
        DETECT["scores"] = found["scores"]
        return
    DETECT["layout"] = meta["layout"]
    with torch.no_grad():
        out = model(x)
    boxes, scores, labels = detect_ref.decode(out, meta["layout"], meta.get("num_classes"))
    anchors = detect_ref.select(boxes, scores, labels, 0.25, 0.45, 300)
    if not anchors:
        raise RefError("the detector finds no box above 0.25")
    DETECT["targets"] = [(a, int(labels[a])) for a in anchors]
    DETECT["boxes"] = boxes[anchors]


def head(output):
    """What the targets index, [N,C]: a classifier's logits, a segmenter's class scores, or a
    detector's detection scores."""
    if DETECT["targets"] is not None:
        return detection_scores(output)
    if not isinstance(output, dict):
        return logits_of(output)
    scores = output["out"]  # [N,K,H,W]
    labels = SEGMENT["labels"]
    per_class = torch.stack([(labels == k) for k in range(scores.shape[1])], dim=1)
    return (scores * per_class.to(scores.dtype)).sum(dim=(2, 3))


def region_mask(path, meta):
    """--region: the mask picture (black outside, one colour inside) resized and cropped as the
    image is, with PIL's NEAREST; [H,W] bool."""
    from PIL import Image
    rgb = np.asarray(Image.open(path).convert("RGB"))
    inside = rgb.any(axis=2)
    if len({tuple(c) for c in rgb[inside]}) != 1:
        raise RefError(f"{path}: not one colour inside the region")
    params = common.preprocess_params(meta)
    mask = Image.fromarray(inside.astype(np.uint8) * 255)
    mask = torchvision.transforms.functional.resize(
        mask, params["resize"], interpolation=torchvision.transforms.InterpolationMode.NEAREST)
    if params.get("crop"):
        mask = torchvision.transforms.functional.center_crop(mask, params["crop"])
    return torch.from_numpy(np.asarray(mask) > 0)


def segment_labels(model, meta, x, region_path):
    """Fixes SEGMENT["labels"] from the clean image x; returns the default class: the one with
    the largest area (within the region) but the background."""
    with torch.no_grad():
        labels = model(x)["out"].argmax(dim=1)
    if region_path:
        labels[:, ~region_mask(region_path, meta)] = -1
    SEGMENT["labels"] = labels
    areas = torch.bincount(labels[labels >= 0], minlength=int(meta["num_classes"])).double()
    for k, label in enumerate(meta.get("labels", [])):
        if label.lower() in ("background", "__background__"):
            areas[k] = -1
    return int(areas.argmax())


# What the backward passes differentiate (--score, --counterfactual); Score-CAM keeps the
# softmax probability of the paper.
SCORE = {"kind": "logit", "negate": False}


def score_of(out, cls):
    """The score of class cls for each row of the model's output out [N,C]: the logit, the
    softmax probability, the log-softmax, or the sigmoid of the logit; negated when
    counterfactual. [N]."""
    kind = SCORE["kind"]
    if kind == "logit":
        s = out[:, cls]
    elif kind == "probability":
        s = torch.softmax(out, dim=1)[:, cls]
    elif kind == "log-probability":
        s = torch.log_softmax(out, dim=1)[:, cls]
    elif kind == "sigmoid":
        s = torch.sigmoid(out[:, cls])
    else:
        raise RefError(f"unknown score {kind}")
    return -s if SCORE["negate"] else s


# --unit LAYER:K[:Y:X]: the backward passes differentiate channel K of LAYER's output (as a
# [N,C,h,w] map, RESHAPE'd by hand where needed) averaged over positions, or its value at (Y, X),
# instead of a class score.
UNIT = {"layer": None, "channel": 0, "y": None, "x": None}


def parse_unit(spec):
    parts = spec.split(":")
    if len(parts) not in (2, 4) or not parts[0]:
        raise RefError(f"--unit {spec!r}: expected LAYER:K or LAYER:K:Y:X")
    UNIT["layer"], UNIT["channel"] = parts[0], int(parts[1])
    if len(parts) == 4:
        UNIT["y"], UNIT["x"] = int(parts[2]), int(parts[3])


class UnitHook:
    """Keeps the unit layer's output (attached to the graph) during a forward pass."""

    def __init__(self, model):
        self.output = None
        module = dict(model.named_modules())[UNIT["layer"]]
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, _module, _inputs, output):
        if self.output is not None:
            raise RefError(f"unit layer '{UNIT['layer']}' runs more than once per forward pass")
        self.output = output

    def value(self):
        """The unit's value per image, [N] (negated when counterfactual)."""
        reshape = LAYOUT["reshape"] or (lambda _name, t: t)
        fmap = reshape(UNIT["layer"], self.output)[:, UNIT["channel"]]
        v = fmap.mean(dim=(1, 2)) if UNIT["y"] is None else fmap[:, UNIT["y"], UNIT["x"]]
        return -v if SCORE["negate"] else v

    def close(self):
        self._handle.remove()


def backprop(model, x, cls, mode, tap_names=(), state=None):
    """One forward and backward of y_cls (or of the --unit) with the ReLUs in `mode` (`state`,
    when given, is the ReluState to use and keeps its counts). Returns (dy/dx [3,H,W], logits
    [C], relu calls, LayerTaps)."""
    state = ReluState(mode) if state is None else state
    state.mode = mode
    taps = LayerTaps(model, tap_names)
    unit = UnitHook(model) if UNIT["layer"] else None  # after the taps: sees what flows on
    try:
        x = x.detach().clone().requires_grad_(True)
        with modal_relus(state):
            out = head(model(x))
            logits = out[0]
            target = int(logits.argmax()) if cls is None else cls
            objective = unit.value() if unit else score_of(out, target)
            objective.sum().backward()
    finally:
        taps.close()
        if unit:
            unit.close()
    return x.grad[0], logits.detach(), state.calls, taps


def mean_input_gradient(model, inputs, cls, mode, batch=GRAD_BATCH):
    """Mean over the inputs [S,3,H,W] of dy_cls/dx at each, with the ReLUs in `mode`; [3,H,W].
    Batches are independent: each sample's logit depends on that sample only (eval mode)."""
    total = torch.zeros(inputs.shape[1:], dtype=torch.float64)
    state = ReluState(mode)
    for start in range(0, inputs.shape[0], batch):
        xb = inputs[start:start + batch].detach().clone().requires_grad_(True)
        with modal_relus(state):
            score_of(head(model(xb)), cls).sum().backward()
        total += xb.grad.double().sum(dim=0)
    return (total / inputs.shape[0]).float()


def logit(model, x, cls):
    """y_cls of a single input [1,3,H,W] (no patching, no grad)."""
    with torch.no_grad():
        return head(model(x))[0, cls].item()


def grad_cam(activation, grad):
    """relu(sum_k w_k A_k), w_k = spatial mean of dy/dA_k; [K,h,w] -> [h,w]."""
    weights = grad.mean(dim=(1, 2))
    return torch.relu((weights[:, None, None] * activation).sum(dim=0))


def grad_cam_pp(activation, grad):
    """Grad-CAM++ (see the module docstring); [K,h,w] -> [h,w], float64."""
    a, g = activation.double(), grad.double()
    s = a.sum(dim=(1, 2), keepdim=True)
    g2 = g * g
    alpha = g2 / (2 * g2 + s * g2 * g + 1e-7)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    weights = (torch.relu(g) * alpha).sum(dim=(1, 2))
    return torch.relu((weights[:, None, None] * a).sum(dim=0))


def xgrad_cam(activation, grad):
    """XGrad-CAM: w_k = sum g_k A_k / (S_k + 1e-7); [K,h,w] -> [h,w], float64."""
    a, g = activation.double(), grad.double()
    weights = (g * a).sum(dim=(1, 2)) / (a.sum(dim=(1, 2)) + 1e-7)
    return torch.relu((weights[:, None, None] * a).sum(dim=0))


def layer_cam(activation, grad):
    """Layer-CAM: relu(sum_k relu(g_k) * A_k); [K,h,w] -> [h,w], float64."""
    return torch.relu((torch.relu(grad.double()) * activation.double()).sum(dim=0))


def hires_cam(activation, grad):
    """HiResCAM: relu(sum_k g_k * A_k); [K,h,w] -> [h,w], float64."""
    return torch.relu((grad.double() * activation.double()).sum(dim=0))


def eigen_cam(activation):
    """Eigen-CAM: projection of the uncentered [h*w, K] activations on their first right
    singular vector, sign chosen so that it sums to >= 0, then relu; [K,h,w] -> [h,w], float64."""
    k, h, w = activation.shape
    m = activation.double().reshape(k, h * w).t()
    _, _, vh = torch.linalg.svd(m, full_matrices=False)
    p = (m @ vh[0]).reshape(h, w)
    if p.sum() < 0:
        p = -p
    return torch.relu(p)


def upsample(maps, size):
    """Bilinear (align_corners=False) resize of [..., h, w] maps to size (H, W)."""
    lead = maps.shape[:-2]
    out = F.interpolate(maps.reshape(1, -1, *maps.shape[-2:]), size=size, mode="bilinear",
                        align_corners=False)
    return out.reshape(*lead, *size)


def fused_layer_cam(maps, size):
    """Element-wise max over layers of each Layer-CAM map upsampled to size and divided by its
    max (all zeros when the max is not > 0); float64 [H,W]."""
    fused = torch.zeros(size, dtype=torch.float64)
    for cam in maps:
        up = upsample(cam.double(), size)
        peak = up.max()
        up = up / peak if peak > 0 else torch.zeros_like(up)
        fused = torch.maximum(fused, up)
    return fused


def score_cam(model, x, activation, cls, batch=FORWARD_BATCH):
    """Score-CAM of one layer (see the module docstring); [K,h,w] -> [h,w], float64."""
    masks = upsample(activation, tuple(x.shape[2:]))  # [K,H,W], float32
    low = masks.amin(dim=(1, 2), keepdim=True)
    high = masks.amax(dim=(1, 2), keepdim=True)
    span = high - low
    safe = torch.where(span > 0, span, torch.ones_like(span))
    masks = torch.where(span > 0, (masks - low) / safe, torch.zeros_like(masks))
    scores = []
    with torch.no_grad():
        for start in range(0, masks.shape[0], batch):
            masked = x * masks[start:start + batch, None]  # [B,3,H,W]
            out = head(model(masked)).double()
            # A segmenter's or detector's score is its class or detection score (cnnviz takes
            # no softmax of those).
            raw = SEGMENT["labels"] is not None or DETECT["targets"] is not None
            scores.append(out[:, cls] if raw else out.softmax(dim=1)[:, cls])
    scores = torch.cat(scores)
    return torch.relu((scores[:, None, None] * activation.double()).sum(dim=0))


def integrated_gradients(model, x, baseline, cls, steps):
    """IG with a right Riemann sum (plain ReLUs); x, baseline [1,3,H,W] -> [3,H,W]."""
    alphas = (torch.arange(1, steps + 1, dtype=torch.float64) / steps).float()
    path = baseline + alphas[:, None, None, None] * (x - baseline)  # [M,3,H,W]
    return ((x - baseline)[0] * mean_input_gradient(model, path, cls, "plain"))


# Layer whose output A the CAM weighs, and how, per architecture (None: no GAP head).
CAM_LAYER = {"resnet50": "layer4", "densenet121": "features", "squeezenet1_1": "features",
             "googlenet": "inception5b", "mobilenet_v2": "features",
             "efficientnet_b0": "features", "vgg16": None, "alexnet": None}


def class_activation_map(model, arch, activation, cls, logit):
    """CAM of class cls from the activation of CAM_LAYER[arch]; checks that its spatial mean
    (plus the head's bias where the bias is outside the map) gives back the logit."""
    with torch.no_grad():
        if arch in ("resnet50", "googlenet"):
            cam, bias = torch.einsum("k,khw->hw", model.fc.weight[cls], activation), model.fc.bias
        elif arch == "densenet121":
            a = torch.relu(activation)
            cam, bias = (torch.einsum("k,khw->hw", model.classifier.weight[cls], a),
                         model.classifier.bias)
        elif arch in ("mobilenet_v2", "efficientnet_b0"):
            head = model.classifier[1]
            cam, bias = torch.einsum("k,khw->hw", head.weight[cls], activation), head.bias
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
        prog=PROG, description="Reference saliency, guided backprop, deconvnet, Grad-CAM, CAM "
        "and more on the eager torchvision model (float32 .npy files in OUTDIR)")
    parser.add_argument("model", metavar="MODEL.pt")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("outdir", metavar="OUTDIR")
    parser.add_argument("--class", dest="cls", type=int, default=None,
                        help="target class (default: top-1)")
    parser.add_argument("--layers", default=None,
                        help="comma-separated module paths (default: the metadata's default_layer)")
    parser.add_argument("--all-layers", action="store_true",
                        help="every discovered feature stage")
    parser.add_argument("--cam", action="store_true", help="also write cam.npy where defined")
    parser.add_argument("--extra", action="store_true",
                        help="gradient x input, Grad-CAM++, XGrad-CAM, Layer-CAM (and fused), "
                        "HiResCAM, Eigen-CAM")
    parser.add_argument("--score-cam", action="store_true", help="Score-CAM of every layer")
    parser.add_argument("--noise", metavar="NOISE.npy", default=None,
                        help="SmoothGrad (plain and guided) over these float32 [S,3,H,W] noises")
    parser.add_argument("--ig", action="store_true",
                        help="Integrated Gradients from a black and a blurred baseline")
    parser.add_argument("--ig-steps", type=int, default=50, metavar="M",
                        help="IG Riemann steps (default: 50)")
    parser.add_argument("--blur-sigma", type=float, default=10.0, metavar="S",
                        help="sigma of the blurred IG baseline (default: 10.0)")
    parser.add_argument("--score", default="logit",
                        choices=["logit", "probability", "log-probability", "sigmoid"],
                        help="what the gradients differentiate (default: the logit)")
    parser.add_argument("--counterfactual", action="store_true",
                        help="differentiate the negated score")
    parser.add_argument("--unit", default=None, metavar="LAYER:K[:Y:X]",
                        help="differentiate a channel's mean (or one neuron) of a layer instead "
                        "of a class score")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--region", default=None, metavar="MASK.png",
                        help="a segmenter's region: its targets count only these pixels")
    parser.add_argument("--box", default=None, metavar="X1,Y1,X2,Y2[:LABEL]",
                        help="a detector's target: the detections matching this box (image pixels)")
    parser.add_argument("--match-iou", type=float, default=0.5,
                        help="--box: a detection matches at this IoU or more")
    parser.add_argument("--drise", action="store_true", help="a detector's D-RISE map")
    parser.add_argument("--perturb", action="store_true",
                        help="a detector's occlusion (occlusion.npy) and RISE (rise.npy) maps")
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--masks", type=int, default=100)
    parser.add_argument("--grid", type=int, default=7)
    parser.add_argument("--p", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16, help="masks per forward pass")
    args = parser.parse_args()
    if args.ig_steps < 1:
        parser.error("--ig-steps must be >= 1")
    if not args.blur_sigma > 0:
        parser.error("--blur-sigma must be > 0")

    torch.set_num_threads(args.threads)
    SCORE["kind"], SCORE["negate"] = args.score, args.counterfactual
    if args.unit:
        parse_unit(args.unit)
    start = time.perf_counter()
    try:
        model, meta, scripted = load_eager(args.model)
        arch = meta["arch"]
        LAYOUT["reshape"] = RESHAPE.get(arch)

        if meta.get("task") == "detect":
            pre = common.preprocess_params(meta)
            rgb = common.load_rgb(args.image)
            if isinstance(model, TorchvisionScores):
                x = common.preprocess(rgb, **pre)[None]
                geometry = {"width": x.shape[3], "height": x.shape[2], "left": 0, "top": 0}
            else:
                x, geometry = detect_ref.letterbox(rgb, pre["resize"], pre["mean"], pre["std"])
                x = x[None]
            find_detections(model, meta, x)
            if DETECT["layout"] == "torchvision":
                os.makedirs(args.outdir, exist_ok=True)
                with open(os.path.join(args.outdir, "detections.json"), "w") as f:
                    json.dump({"boxes": DETECT["boxes"].tolist(), "scores":
                               DETECT["scores"].tolist(),
                               "labels": [lab for _, lab in DETECT["targets"]]}, f)
            if args.box:
                DETECT["groups"] = [match_box(args.box, geometry, rgb.size, args.match_iou)]
                with open(os.path.join(args.outdir, "matched.json"), "w") as f:
                    json.dump(DETECT["groups"][0], f)
            args.cls = 0 if args.cls is None else args.cls
        else:
            x = common.preprocess(common.load_rgb(args.image),
                                  **common.preprocess_params(meta))[None]
        diff = script_diff(model, scripted, x)
        if meta.get("task") == "segment":
            best = segment_labels(model, meta, x, args.region)
            args.cls = best if args.cls is None else args.cls
        elif args.region:
            raise RefError("--region: the model is not a segmenter")
        if not diff < 1e-4:
            raise RefError(f"eager and scripted logits differ by {diff:g} (>= 1e-4)")
        num_classes = (len(DETECT["groups"]) if DETECT["groups"] is not None
                       else len(DETECT["targets"]) if DETECT["targets"] is not None
                       else int(meta.get("num_classes", 1000)))
        if args.cls is not None and not 0 <= args.cls < num_classes:
            raise RefError(f"--class {args.cls} out of range [0, {num_classes})")
        discovered = export_models.feature_stages(model, x)

        layers = []
        if args.layers:
            layers += [name for name in args.layers.split(",") if name]
        if args.all_layers:
            layers += discovered
        if not args.layers and not args.all_layers:
            layers = [meta.get("default_layer") or meta["gradcam_layer"]]
        layers = list(dict.fromkeys(layers))  # drop duplicates, keep order

        noise = None
        if args.noise:
            noise = torch.from_numpy(np.load(args.noise)).float()
            if noise.dim() != 4 or tuple(noise.shape[1:]) != tuple(x.shape[1:]):
                raise RefError(f"{args.noise}: shape {list(noise.shape)}, expected "
                               f"[S,{','.join(str(n) for n in x.shape[1:])}]")

        cam_layer = CAM_LAYER.get(arch) if args.cam else None
        if args.cam and cam_layer is None:
            print(f"{PROG}: note: no CAM for {arch} (no global-average-pool head); skipped",
                  file=sys.stderr)
        taps = list(dict.fromkeys(layers + ([cam_layer] if cam_layer else [])))

        state = ReluState("plain")
        saliency, logits, _, tapped = backprop(model, x, args.cls, "plain", taps, state)
        counts = (state.calls, state.relu6_calls, state.silu_calls)
        cls = int(logits.argmax()) if args.cls is None else args.cls
        for mode in ("guided", "deconv"):
            other = ReluState(mode)
            result, _, _, _ = backprop(model, x, cls, mode, state=other)
            if (other.calls, other.relu6_calls, other.silu_calls) != counts:
                raise RefError(f"ReLU/ReLU6/SiLU counts differ between passes: {counts} plain, "
                               f"{(other.calls, other.relu6_calls, other.silu_calls)} {mode}")
            if mode == "guided":
                guided = result
            else:
                deconv = result
        for name in layers:
            if name not in tapped.grad:
                raise RefError(f"layer '{name}' got no gradient (not on the path to the logits)")

        os.makedirs(args.outdir, exist_ok=True)
        save(args.outdir, "input.npy", x[0])
        save(args.outdir, "logits.npy", logits)
        save(args.outdir, "saliency.npy", saliency)
        save(args.outdir, "guided.npy", guided)
        save(args.outdir, "deconv.npy", deconv)
        size = tuple(x.shape[2:])
        layer_cams = []
        for name in layers:
            activation, grad = tapped.activation[name], tapped.grad[name]
            save(args.outdir, f"activation_{name}.npy", activation)
            save(args.outdir, f"grad_{name}.npy", grad)
            save(args.outdir, f"gradcam_{name}.npy", grad_cam(activation, grad))
            if args.extra:
                save(args.outdir, f"gradcampp_{name}.npy", grad_cam_pp(activation, grad))
                save(args.outdir, f"xgradcam_{name}.npy", xgrad_cam(activation, grad))
                layer_cams.append(layer_cam(activation, grad))
                save(args.outdir, f"layercam_{name}.npy", layer_cams[-1])
                save(args.outdir, f"hirescam_{name}.npy", hires_cam(activation, grad))
                save(args.outdir, f"eigencam_{name}.npy", eigen_cam(activation))
            if args.score_cam:
                save(args.outdir, f"scorecam_{name}.npy", score_cam(model, x, activation, cls))
        if args.extra:
            save(args.outdir, "gradxinput.npy", x[0] * saliency)
            save(args.outdir, "layercam_fused.npy", fused_layer_cam(layer_cams, size))
        if cam_layer:
            cam = class_activation_map(model, arch, tapped.activation[cam_layer], cls,
                                       logits[cls].item())
            save(args.outdir, "cam.npy", cam)
        if noise is not None:
            save(args.outdir, "smoothgrad.npy",
                 mean_input_gradient(model, x + noise, cls, "plain"))
            save(args.outdir, "smoothgrad_guided.npy",
                 mean_input_gradient(model, x + noise, cls, "guided"))

        report = {"arch": arch, "class": cls, "relu_count": counts[0], "relu6_count": counts[1],
                  "silu_count": counts[2], "layers": layers, "discovered_layers": discovered,
                  "eager_vs_script_max_abs": diff, "cam": cam_layer}
        if args.ig:
            # The black image as the preprocessing would normalize it: float32 arithmetic, as
            # torchvision's Normalize on a float32 tensor.
            mean = torch.tensor(common.preprocess_params(meta)["mean"], dtype=torch.float32)
            std = torch.tensor(common.preprocess_params(meta)["std"], dtype=torch.float32)
            black = ((0 - mean) / std)[None, :, None, None].expand_as(x).contiguous()
            blurred = common.gaussian_blur(x, args.blur_sigma)
            report["ig"] = {}
            y = logit(model, x, cls)
            for kind, baseline in (("black", black), ("blurred", blurred)):
                ig = integrated_gradients(model, x, baseline, cls, args.ig_steps)
                save(args.outdir, f"ig_{kind}.npy", ig)
                report["ig"][kind] = {"sum": ig.double().sum().item(),
                                      "delta": y - logit(model, baseline, cls)}
            save(args.outdir, "ig_baseline_blurred.npy", blurred[0])

        if args.drise:
            if DETECT["targets"] is None:
                raise RefError("--drise: the model is not a detector")
            box, label = (DETECT["query"] if DETECT["groups"] is not None
                          else (DETECT["boxes"][cls], DETECT["targets"][cls][1]))
            save(args.outdir, "drise.npy", drise(model, x, box, label, args))
        if args.perturb:
            if DETECT["targets"] is None:
                raise RefError("--perturb: the model is not a detector")
            save(args.outdir, "occlusion.npy",
                 detector_occlusion(model, x, cls, args.window, args.stride))
            save(args.outdir, "rise.npy", detector_rise(model, x, cls, args))

        with open(os.path.join(args.outdir, "meta.json"), "w") as out:
            json.dump(report, out, indent=1)
            out.write("\n")
    except (RefError, detect_ref.RefError, OSError, RuntimeError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.outdir}: {arch} class {cls} relus {counts[0]} relu6s {counts[1]} "
          f"silus {counts[2]} layers {len(layers)} cam {cam_layer} eager/script {diff:.2g} "
          f"({time.perf_counter() - start:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
