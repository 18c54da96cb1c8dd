#!/usr/bin/env python3
"""Export torchvision ImageNet CNNs to TorchScript files that cnnviz loads.

Each model is compiled with torch.jit.script (not traced: the module hierarchy, e.g.
`features.29`, must survive so cnnviz can address layers by name) and saved with a
`cnnviz.json` extra file describing weights, labels, preprocessing, the feature stages and the
default Grad-CAM layer. The stages follow the rule of feature_stages() below, the same rule by
which cnnviz discovers them from a model without metadata (the tests check that both agree on
every architecture); listing them lets cnnviz instrument the model once, without a discovery
pass, and validates the Grad-CAM layer.

Every architecture is built with the same constructor arguments whatever the weights (pretrained,
a file, random), so the scripted graph is the same: GoogLeNet as torchvision builds it for its
pretrained weights (transform_input=True, no auxiliary heads).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cnnviz_python import ensure_torch  # noqa: E402

ensure_torch("export_models.py")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import urllib.error  # noqa: E402
import urllib.parse  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402
import torchvision  # noqa: E402
from torchvision.models._meta import _IMAGENET_CATEGORIES  # noqa: E402

import torchvision_detectors  # noqa: E402

PROG = "export_models.py"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_outdir():
    """The source tree's models/ when run from a source tree; else (installed as cnnviz-export)
    the user's models directory, which cnnviz searches: $XDG_DATA_HOME/cnnviz/models, default
    ~/.local/share/cnnviz/models."""
    if os.path.isfile(os.path.join(REPO, "CMakeLists.txt")):
        return os.path.join(REPO, "models")
    data = os.environ.get("XDG_DATA_HOME", "")
    if not data.startswith("/"):
        data = os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(data, "cnnviz", "models")

# Supported architectures and the layer Grad-CAM uses by default (the last spatial feature map).
GRADCAM_LAYER = {
    "vgg16": "features.29",
    "alexnet": "features.11",
    "densenet121": "features.norm5",
    "squeezenet1_1": "features.12",
    "resnet50": "layer4",
    "googlenet": "inception5b",
    "mobilenet_v2": "features.18",
    "efficientnet_b0": "features.8",
    # Backbones whose layers are not all [N,C,h,w] maps: ViT's blocks output token sequences
    # [N,1+196,768], Swin's stages channels-last maps [N,h,w,C]; cnnviz reads both as maps
    # (README, "Backbones").
    "vit_b_16": "encoder.layers.encoder_layer_11",
    "swin_t": "features.7",
    "convnext_tiny": "features.7",
    "regnet_y_400mf": "trunk_output.block4",
    "inception_v3": "Mixed_7c",
    "maxvit_t": "blocks.3",
}
# Semantic segmenters: their forward returns {"out": [N, 21, H, W]}, the 21 PASCAL VOC classes of
# torchvision's weights. `cnnviz segment` labels pixels with them; their metadata has no feature
# stages (the stage rule reads classifiers).
SEGMENTERS = ("fcn_resnet50", "deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50",
              "lraspp_mobilenet_v3_large")
# torchvision's detectors, exported as dense predictions in YOLOv5's layout through
# scripts/torchvision_detectors.py (COCO's 91 labels, "__background__" first).
DETECTORS = torchvision_detectors.TWO_STAGE + torchvision_detectors.ONE_STAGE
# A detector's default layer: its backbone body's last stage.
DETECTOR_LAYER = {"fasterrcnn_resnet50_fpn": "backbone.body.layer4",
                  "fasterrcnn_mobilenet_v3_large_fpn": "backbone.body.16",
                  "retinanet_resnet50_fpn": "backbone.body.layer4",
                  "fcos_resnet50_fpn": "backbone.body.layer4",
                  "ssdlite320_mobilenet_v3_large": "backbone.features.1"}
MODELS = list(GRADCAM_LAYER) + list(SEGMENTERS) + list(DETECTORS)

# Constructor arguments of the models built without torchvision's weights (from a file, random),
# so that they get the graph of the pretrained model. torchvision's googlenet(weights=DEFAULT)
# builds GoogLeNet(transform_input=True, aux_logits=True, init_weights=False), loads the
# checkpoint, then drops the auxiliary heads (aux_logits=False, aux1 = aux2 = None); without
# weights it would default to aux_logits=True and transform_input=False, another graph.
# init_weights=True is what GoogLeNet does when not told (minus its FutureWarning).
CONSTRUCTOR_ARGS = {
    "googlenet": {"aux_logits": False, "transform_input": True, "init_weights": True},
    # torchvision's inception_v3(weights=DEFAULT) keeps its auxiliary head (run in training
    # only) and transforms the input, as the checkpoint expects.
    "inception_v3": {"aux_logits": True, "transform_input": True, "init_weights": True},
}
# State_dict keys of torchvision checkpoints that the exported graph does not have: GoogLeNet's
# auxiliary classifiers (untrained, and never used in eval mode).
DROPPED_PREFIXES = {"googlenet": ("aux1.", "aux2.")}
# The segmenters' auxiliary heads (FCN, DeepLabV3), likewise trained but never part of the output.
for _name in SEGMENTERS:
    DROPPED_PREFIXES[_name] = ("aux_classifier.",)

# The seed tutorial's preprocessing, kept for the models it covers: Resize(224) (not the usual
# 256), CenterCrop(224), ImageNet mean and std. The other models take the resize and crop of
# their torchvision weights' transforms (inception_v3: 342 and 299); see preprocess_for().
SEED_MODELS = ("vgg16", "alexnet", "densenet121", "squeezenet1_1", "resnet50", "googlenet",
               "mobilenet_v2", "efficientnet_b0")
PREPROCESS = {
    "resize": 224,
    "crop": 224,
    "interpolation": "bilinear",
    "antialias": True,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_WEIGHTS = 0, 1, 2, 3
# The opset --onnx writes: the newest that PyTorch 1.13 writes and cnnviz reads.
ONNX_OPSET = 17


def preprocess_for(name):
    """The preprocessing recorded for `name`: the seed tutorial's for its models, else the
    resize, crop, mean and std of torchvision's default weights for the architecture (known
    offline, whatever weights are exported). cnnviz resizes bilinearly (antialiased) for every
    model; torchvision's transforms for swin_t and maxvit_t resize bicubically."""
    if name in SEED_MODELS:
        return dict(PREPROCESS)
    transforms = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    return {
        "resize": int(transforms.resize_size[0]),
        # Segmenters take the whole resized image: crop 0.
        "crop": 0 if name in SEGMENTERS else int(transforms.crop_size[0]),
        "interpolation": "bilinear",
        "antialias": True,
        "mean": [float(v) for v in transforms.mean],
        "std": [float(v) for v in transforms.std],
    }

EPILOG = f"""\
models: {", ".join(MODELS)}, or all.

weights:
  default           torchvision's pretrained ImageNet weights; read from
                    $TORCH_HOME/hub/checkpoints/<file> (default ~/.cache/torch) when there,
                    downloaded otherwise
  --weights F.pth   a state_dict for the same architecture (one model only)
  --random-weights  random initialization (seeded); predictions are meaningless

exit status:
  0  all requested models exported (or already present)
  1  other failure (scripting, scripted/eager mismatch, write error)
  2  usage error (unknown model, bad option combination)
  3  weights unavailable or invalid
"""


class ExportError(Exception):
    """A failure with a one-line message for the user and an exit code."""

    def __init__(self, message, code=EXIT_FAILURE, hint=None):
        super().__init__(message)
        self.code = code
        self.hint = hint


def display_path(path):
    """`path` relative to the working directory when it lies below it, else absolute."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def first_line(exc):
    """A short one-line description of an exception."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines)[:300] or type(exc).__name__


class _DropDownloadNotice:
    """stderr wrapper that hides torch.hub's 'Downloading: ...' line (shown even when the download
    fails at once without a network); everything else, such as the progress bar, passes through."""

    def __init__(self, real):
        self._real = real

    def write(self, text):
        if text.startswith('Downloading: "'):
            return len(text)
        return self._real.write(text)

    def __getattr__(self, name):
        return getattr(self._real, name)


def build_pretrained(name):
    """Build `name` with torchvision's default pretrained weights; returns (model, weights_meta)."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    real_stderr = sys.stderr
    sys.stderr = _DropDownloadNotice(real_stderr)
    try:
        model = torchvision.models.get_model_builder(name)(weights=weights,
                                                          progress=real_stderr.isatty())
    except Exception as exc:  # network, disk, or a corrupt cached checkpoint
        checkpoint = os.path.basename(urllib.parse.urlparse(weights.url).path)
        hub_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
        cached = os.path.join(hub_dir, checkpoint)
        if isinstance(exc, urllib.error.URLError):
            reason = f"download failed: {exc.reason}"
        elif os.path.exists(cached):
            reason = f"cannot read {cached}: {first_line(exc)}"
        else:
            reason = first_line(exc)
        raise ExportError(
            f"cannot get pretrained weights for {name} ({reason})",
            EXIT_WEIGHTS,
            hint=f"put {checkpoint} (from {weights.url}) in {hub_dir}, "
            "or pass --weights FILE.pth, or --random-weights (predictions will be meaningless)",
        ) from None
    finally:
        sys.stderr = real_stderr
    if name in SEGMENTERS:
        model.aux_classifier = None  # trained beside the model, never part of its output
    return model, {"kind": "pretrained", "source": weights.name}


def build_from_file(name, path):
    """Build `name` and load a state_dict from `path` (strict); returns (model, weights_meta)."""
    path = os.path.abspath(path)
    try:
        state = torch.load(path, map_location="cpu")
    except Exception as exc:
        raise ExportError(f"cannot read weights file '{path}': {first_line(exc)}",
                          EXIT_WEIGHTS) from None
    # Training checkpoints often wrap the state_dict.
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ExportError(f"weights file '{path}' does not hold a state_dict", EXIT_WEIGHTS)
    # Weights saved from nn.DataParallel carry a "module." prefix.
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}

    dropped = [k for k in state if k.startswith(DROPPED_PREFIXES.get(name, ()))]
    if dropped:
        state = {k: v for k, v in state.items() if k not in dropped}
        print(f"{PROG}: note: {name}: ignoring {len(dropped)} keys of the auxiliary classifiers "
              "(not part of the exported model)", file=sys.stderr)

    model = construct(name)
    # Name the key mismatch briefly; load_state_dict's own message lists every key.
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                more = ", ..." if len(keys) > 3 else ""
                parts.append(f"{len(keys)} {what} keys ({', '.join(keys[:3])}{more})")
        raise ExportError(f"weights file '{path}' does not fit {name}: {'; '.join(parts)}",
                          EXIT_WEIGHTS)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # e.g. a shape mismatch; drop the "Error(s) in loading" header line
        lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        reason = lines[0] if lines else first_line(exc)
        raise ExportError(f"weights file '{path}' does not fit {name}: {reason}",
                          EXIT_WEIGHTS) from None
    return model, {"kind": "file", "source": path}


def construct(name):
    """torchvision.models.<name> without weights, with the pretrained model's graph (a
    segmenter without its auxiliary head, and without downloading its backbone's weights)."""
    builder = torchvision.models.get_model_builder(name)
    if name in SEGMENTERS:
        return builder(weights=None, weights_backbone=None, aux_loss=False)
    if name in DETECTORS:
        return builder(weights=None, weights_backbone=None)
    return builder(weights=None, **CONSTRUCTOR_ARGS.get(name, {}))


def labels_of(name):
    """The class names of `name`'s torchvision weights (ImageNet's; PASCAL VOC's 21 for the
    segmenters, COCO's 91 for the detectors, the first being "__background__")."""
    if name in SEGMENTERS or name in DETECTORS:
        return list(torchvision.models.get_model_weights(name).DEFAULT.meta["categories"])
    return list(_IMAGENET_CATEGORIES)


def square_side(preprocess):
    """The side of the input a square image becomes: the crop, or the resize without one."""
    return preprocess["crop"] or preprocess["resize"]


def reinit_zero_linears(model, seed):
    """Gives random weights (normal, std 0.02) to the linear layers that torchvision initializes
    to zero (ViT's classification head): with them every logit of a random model is 0 and every
    gradient vanishes."""
    generator = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear) and not m.weight.any():
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * 0.02)


def build_random(name, seed):
    torch.manual_seed(seed)
    model = construct(name)
    reinit_zero_linears(model, seed)
    print(f"{PROG}: WARNING: {name} has RANDOM weights (seed {seed}); "
          "its predictions are meaningless", file=sys.stderr)
    return model, {"kind": "random", "source": f"seed {seed}"}


def feature_stages(model, example):
    """Dotted paths (as in named_modules) of the model's feature stages, found by running
    `example` (one image, [1,3,H,W]) through the model with forward hooks on every module.

    A module "qualifies" when it runs exactly once in the forward pass and its output reads as a
    spatial map with more than one position: [N,C,h,w]; [N,h,w,C] (channels last: dims 1 and 2
    equal, dims 2 and 3 not); or [N,T,C] token sequences whose T is a square s*s, or 1 + s*s
    with a class token first (s >= 2). A qualifying module is a "container" when at least one
    of its direct children qualifies. A module that never runs itself (a ModuleList, such as
    MaxViT's `blocks`), or that returns no tensor (a segmenter's backbone, which returns a
    dict), is see-through: its children count as its parent's. Starting at the
    root: let C be the direct children of the current module that qualify, in the order of
    their first call; when exactly one element of C is a container, descend into it and repeat;
    when several are but exactly one of those is "deep" (has a container among its qualifying
    children: RegNet's trunk_output beside its stem), descend into that one; otherwise the
    stages are C. So vgg16 gives features.0 ... features.30 (C = [features,
    avgpool] at the root, only features a container), resnet50 conv1, bn1, relu, maxpool,
    layer1 ... layer4 (four containers at the root), vit_b_16 its 12 encoder blocks.
    """
    calls, spatial, first_call, tensor_out = {}, {}, {}, {}

    def square_side(n):
        s = math.isqrt(max(n, 0))
        return s if s >= 2 and s * s == n else 0

    def is_map(output):
        if not torch.is_tensor(output):
            return False
        shape = list(output.shape)
        if len(shape) == 4:
            if shape[1] == shape[2] and shape[2] != shape[3]:
                return shape[1] * shape[2] > 1
            return shape[2] * shape[3] > 1
        if len(shape) == 3:
            return bool(square_side(shape[1]) or square_side(shape[1] - 1))
        return False

    def hook(module, _inputs, output):
        calls[module] = calls.get(module, 0) + 1
        if module not in first_call:
            first_call[module] = len(first_call)
            spatial[module] = is_map(output)
            tensor_out[module] = torch.is_tensor(output)

    handles = [module.register_forward_hook(hook) for module in model.modules()]
    try:
        with torch.no_grad():
            model(example)
    finally:
        # Hooks left on the module would be compiled into the TorchScript file.
        for handle in handles:
            handle.remove()

    def qualifies(module):
        return calls.get(module, 0) == 1 and spatial[module]

    def children(module, prefix):
        """(path, child) of `module`'s children, looking through modules that never run or
        return no tensor (a segmenter's IntermediateLayerGetter returns a dict)."""
        for name, child in module.named_children():
            see_through = calls.get(child, 0) == 0 or not tensor_out.get(child, True)
            if see_through and any(True for _ in child.children()):
                yield from children(child, prefix + name + ".")
            else:
                yield prefix + name, child

    current, prefix = model, ""
    while True:
        stages = sorted(((path, child) for path, child in children(current, prefix)
                         if qualifies(child)), key=lambda item: first_call[item[1]])
        def is_container(module):
            return any(qualifies(child) for _, child in children(module, ""))

        containers = [item for item in stages if is_container(item[1])]
        deep = [item for item in containers
                if any(qualifies(child) and is_container(child)
                       for _, child in children(item[1], ""))]
        if len(containers) == 1:
            current, prefix = containers[0][1], containers[0][0] + "."
        elif len(containers) > 1 and len(deep) == 1:
            current, prefix = deep[0][1], deep[0][0] + "."
        else:
            return [path for path, _ in stages]


def logits_of(output):
    """The logits of a model's output: a scripted GoogLeNet returns a GoogLeNetOutputs tuple
    (logits, aux2, aux1) even in eval mode; a segmenter its class scores per pixel in a dict, as
    "out"."""
    if isinstance(output, dict):
        return output["out"]
    return output[0] if isinstance(output, tuple) else output


def calibrate_batchnorm(model, seed, size=224):
    """Running mean and variance of every BatchNorm from 4 batches of 8 random images (a
    cumulative average): with torchvision's initial statistics (0 and 1) activations shrink
    layer after layer, and a random mobilenet_v2 has logits of size 1e-9. Returns whether the
    model has any BatchNorm."""
    batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not batchnorms:
        return False
    generator = torch.Generator().manual_seed(seed + 1)
    for m in batchnorms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(8, 3, size, size, generator=generator))
    model.eval()
    return True


def build(name, args):
    """(model, weights_meta) as the arguments ask: from a file, random, or pretrained."""
    if args.weights:
        model, weights_meta = build_from_file(name, args.weights)
    elif args.random_weights:
        model, weights_meta = build_random(name, args.seed)
    else:
        model, weights_meta = build_pretrained(name)
    return model.eval(), weights_meta


def stages_of(name, net, example):
    """The feature stages and the default layer of `net` (a detector's dense wrapper): a
    segmenter's default is the stage before its head; a detector's are its backbone's
    (torchvision_detectors.image_stages)."""
    stages = feature_stages(net, example)
    if name in DETECTORS:
        stages = torchvision_detectors.image_stages(stages)
        default_layer = DETECTOR_LAYER[name]
    elif name in SEGMENTERS and len(stages) >= 2:
        default_layer = stages[-2]
    else:
        default_layer = GRADCAM_LAYER.get(name)
    if default_layer not in stages:
        raise ExportError(f"{name}: default layer '{default_layer}' is not among the feature "
                          f"stages {stages}")
    return stages, default_layer


def save_onnx(net, example, path, meta):
    """Writes `net` as ONNX (opset ONNX_OPSET, any batch size; a model that takes images
    uncropped and not letterboxed, as segmenters and torchvision's detectors, any height and
    width too) with the metadata in the model's metadata_props under "cnnviz.json"."""
    import onnx  # python3-onnx; only --onnx needs it

    # PRESERVE keeps each BatchNorm a node of its own (EVAL folds it into the convolution
    # before it), so that the ONNX model has the TorchScript one's layers and arithmetic.
    # The model is in eval mode, so the folding it warns about (of training-mode
    # parameters) does not happen.
    axes = {0: "batch"}
    preprocess = meta["preprocess"]
    if preprocess.get("crop") == 0 and not preprocess.get("letterbox"):
        axes.update({2: "height", 3: "width"})
    # A detector's rows [N, A, 5 + C]: the number of anchors A follows the height and width.
    outputs = {0: "batch", 1: "anchors"} if meta.get("task") == "detect" and 2 in axes else axes
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="It is recommended that constant folding")
        warnings.filterwarnings("ignore", message="The shape inference of prim::Constant")
        torch.onnx.export(net, example, path, opset_version=ONNX_OPSET, input_names=["input"],
                          output_names=["logits"], do_constant_folding=True,
                          training=torch.onnx.TrainingMode.PRESERVE,
                          dynamic_axes={"input": axes, "logits": outputs})
    model = onnx.load(path)
    entry = model.metadata_props.add()
    entry.key, entry.value = "cnnviz.json", json.dumps(meta)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def export_one(name, args, outdir):
    if args.onnx and name in torchvision_detectors.TWO_STAGE:
        raise ExportError(f"{name}: --onnx does not export Faster R-CNN: its region proposal "
                          f"network runs non-maximum suppression inside the model")
    path = os.path.join(outdir, f"{name}.onnx" if args.onnx else f"{name}.pt")
    if os.path.exists(path) and not args.force:
        print(f"{display_path(path)} exists (use --force to re-export)")
        return

    model, weights_meta = build(name, args)
    detector = name in DETECTORS
    # A detector is exported as its dense wrapper; the metadata and the stages read it.
    net = torchvision_detectors.dense_detector(model) if detector else model
    preprocess = torchvision_detectors.preprocess_of(model) if detector else preprocess_for(name)
    side = square_side(preprocess)
    # A two-stage detector's region proposal network needs targets in training mode: its
    # backbone alone is calibrated.
    calibrated = net.backbone if name in torchvision_detectors.TWO_STAGE else net
    if args.random_weights and args.calibrate_bn and \
            calibrate_batchnorm(calibrated, args.seed, min(side, 320) if detector else side):
        weights_meta["source"] += ", BatchNorm calibrated"
    net.eval()

    # A fixed input of the crop size, independent of the weight seed, for the stage discovery
    # and the parity check.
    example = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1234))
    stages, default_layer = stages_of(name, net, example)
    try:
        scripted = torch.jit.script(net)
    except Exception as exc:
        raise ExportError(f"{name}: torch.jit.script failed: {first_line(exc)}") from None

    with torch.no_grad(), warnings.catch_warnings():
        # "Scripted GoogleNet always returns GoogleNetOutputs Tuple": known, handled.
        warnings.filterwarnings("ignore", message="Scripted GoogleNet")
        eager_out = logits_of(net(example))
        scripted_out = logits_of(scripted(example))
    diff = (eager_out - scripted_out).abs().max().item()
    if not diff < 1e-4:
        raise ExportError(f"{name}: scripted model disagrees with the eager model "
                          f"(max abs diff {diff:g} >= 1e-4); not saved")

    meta = {
        "cnnviz_format": 1,
        "name": name,
        "arch": name,
        "task": "segment" if name in SEGMENTERS else "detect" if detector else "classify",
        "weights": weights_meta,
        "num_classes": int(eager_out.shape[-1] - 5 if detector else eager_out.shape[1]),
        "labels": labels_of(name),
        "preprocess": preprocess,
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
    }
    if detector:
        meta.update(torchvision_detectors.decoding_of(model))
    meta["feature_layers"] = stages
    meta["default_layer"] = default_layer
    if meta["num_classes"] != len(meta["labels"]):
        raise ExportError(f"{name}: {meta['num_classes']} outputs but "
                          f"{len(meta['labels'])} labels")

    # Save beside the target and rename, so an interrupted export never leaves a truncated .pt.
    tmp = path + ".tmp"
    try:
        if args.onnx:
            save_onnx(net, example, tmp, meta)
        else:
            torch.jit.save(scripted, tmp, _extra_files={"cnnviz.json": json.dumps(meta)})
        os.replace(tmp, path)
    except BaseException as exc:  # also Ctrl-C: never leave the .tmp behind
        if os.path.exists(tmp):
            os.remove(tmp)
        if not isinstance(exc, Exception):
            raise
        raise ExportError(f"cannot write '{path}': {first_line(exc)}") from None

    if weights_meta["kind"] == "file":
        weights_text = f"weights from {display_path(weights_meta['source'])}"
    else:
        weights_text = f"{weights_meta['kind']} {weights_meta['source']}"
    size_mib = os.path.getsize(path) / 2**20
    size_text = f"{size_mib:.1f}" if size_mib < 10 else f"{size_mib:.0f}"
    print(f"exported {display_path(path)} ({name}, {weights_text}, {size_text} MiB)", flush=True)


def list_models(outdir):
    for name in MODELS:
        path = os.path.join(outdir, f"{name}.pt")
        state = "exported" if os.path.exists(path) else "missing "
        print(f"{name:<14} {state}  {display_path(path)}")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Export torchvision CNNs to TorchScript files (MODEL.pt) with cnnviz metadata.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help=f"one of {', '.join(MODELS)}, or all")
    parser.add_argument("-o", "--outdir", default=default_outdir(),
                        help="output directory (default: the source tree's models/, or, "
                        "installed, $XDG_DATA_HOME/cnnviz/models: %(default)s)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", metavar="FILE.pth",
                        help="load this state_dict (single model only)")
    source.add_argument("--random-weights", action="store_true",
                        help="random initialization instead of pretrained weights")
    parser.add_argument("--seed", type=int, default=0, metavar="N",
                        help="seed for --random-weights (default: 0)")
    parser.add_argument("--calibrate-bn", action="store_true",
                        help="with --random-weights: set BatchNorm running statistics from "
                        "random inputs, so that deep random networks (mobilenet_v2, "
                        "efficientnet_b0, googlenet) give gradients of a usable size (for tests)")
    parser.add_argument("--onnx", action="store_true",
                        help=f"write NAME.onnx (opset {ONNX_OPSET}, metadata in metadata_props) "
                             "instead of TorchScript; not Faster R-CNN")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument("--list", action="store_true",
                        help="list supported models and whether OUTDIR/<name>.pt exists")
    return parser.parse_args(argv)


def usage_error(message):
    print(f"{PROG}: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def main(argv):
    args = parse_args(argv)
    outdir = os.path.abspath(args.outdir)
    if args.list:
        list_models(outdir)
        return EXIT_OK
    if not args.models:
        usage_error("no MODEL given (try --help)")

    names = []
    for model in args.models:
        if model not in MODELS and model != "all":
            usage_error(f"unknown model '{model}' (supported: {', '.join(MODELS)}, all)")
        for name in MODELS if model == "all" else [model]:
            if name not in names:
                names.append(name)
    if args.weights and len(names) > 1:
        usage_error("--weights takes a single model")

    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as exc:
        print(f"{PROG}: cannot create output directory '{outdir}': {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    status = EXIT_OK
    # Keep going after a failure so that e.g. `all` offline still exports what it can;
    # the exit status is that of the first failure.
    for name in names:
        try:
            export_one(name, args, outdir)
        except ExportError as err:
            print(f"{PROG}: {err}", file=sys.stderr)
            if err.hint:
                print(f"{PROG}: hint: {err.hint}", file=sys.stderr)
            status = status or err.code
        except Exception as exc:  # unexpected: one line, not a traceback
            print(f"{PROG}: {name}: {type(exc).__name__}: {first_line(exc)}", file=sys.stderr)
            status = status or EXIT_FAILURE
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
