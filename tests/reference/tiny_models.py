#!/usr/bin/env python3
"""Tiny models for the tests, built from torchvision's own classes and exported the way
scripts/export_models.py exports the real ones (TorchScript + cnnviz.json), in a second or two:

  tiny_vit   torchvision VisionTransformer, 32x32 input, 8x8 patches: its encoder blocks output
             [N, 1+16, 16] token sequences (a class token and a 4x4 grid)
  tiny_vit_nobias  tiny_vit with every bias zeroed after initialization: the Linear biases
             (nn.MultiheadAttention's in_proj_bias and out_proj.bias included), conv_proj's
             bias, every LayerNorm's beta, the class token and the position embedding; LRP
             with conservative rules then sums exactly to the logit
  tiny_swin  torchvision SwinTransformer, 32x32 input: its stages output channels-last maps
             [N, 8, 8, 12] and [N, 4, 4, 24]
  tiny_fcn   torchvision FCN (a semantic segmenter) on a two-convolution backbone: any input
             size (no crop, shorter side 40), {"out": [N, 5, H, W]}; class 0 is the background
  tiny_yolov8  a YOLO-style detector, [N,3,S,S] (S = 64 letterboxed; any multiple of 16) to one
             [N, 4+3, A] tensor, as ultralytics' YOLOv8 TorchScript export: rows cx, cy, w, h
             (input pixels), then the 3 sigmoid class scores
  tiny_yolov5  the same backbone, to one [N, A, 5+3] tensor, as YOLOv5's export: cx, cy, w, h,
             sigmoid objectness, then the 3 sigmoid class probabilities

The detectors (class TinyYolo) run `backbone`, an nn.Sequential of four stages backbone.0 ..
backbone.3 (Conv2d 3x3 stride 2 without bias, BatchNorm2d, ReLU; 8, 16, 24, 32 channels), and
`head` on the outputs of backbone.2 (stride 8) and backbone.3 (stride 16): head.m.0 and head.m.1,
1x1 convolutions with bias. Anchors: level stride 8 first, then 16; in each, row-major (y, then
x), one per cell (A = (S/8)^2 + (S/16)^2). For the cell (x, y) of a level of stride s, with raw
outputs r and sigmoid(r) written g:
  yolov8  x1 = (x + 0.5) s - (0.75 + g0) s, y1 = (y + 0.5) s - (0.75 + g1) s,
          x2 = (x + 0.5) s + (0.75 + g2) s, y2 = (y + 0.5) s + (0.75 + g3) s;
          cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1; scores g4 .. g6
  yolov5  cx = (2 g0 - 0.5 + x) s, cy = (2 g1 - 0.5 + y) s, w = (2 g2)^2 2 s,
          h = (2 g3)^2 2 s; objectness g4; class probabilities g5 .. g7
After the seeded initialization, POST_INIT (init_detector, DETECTOR_INIT) gives the backbone
Kaiming-normal weights and scales and shifts the heads' rows, so that an ordinary photo gives a
few to a few dozen boxes above 0.25 after NMS (tests/reference/detect_ref.py).

  tiny_retinanet  torchvision's RetinaNet (its FPN, head, anchors and box coder) on a ResNet
             of one BasicBlock per stage, FPN and head 32 channels wide, 4 classes
             ("__background__" first), exported as scripts/export_models.py exports
             torchvision's one-stage detectors: the dense wrapper of
             scripts/torchvision_detectors.py, [N, A, 5+4] in YOLOv5's layout, the shorter side
             resized to 96 (the longer at most 128), ImageNet mean and std. TV_DETECTORS builds
             the torchvision model itself, which the references run with its own
             postprocessing. POST_INIT standardizes the class logits on a seeded input and
             shifts them to -3 there, which leaves tens of boxes above 0.25.

For the detector benchmark (scripts/bench.py detector), and exported only when named:

  yolov8_resnet50  the yolov8 layout at full size: torchvision's ResNet-50 as backbone.0 (the
             stem) .. backbone.4 (layer4), the head on layer2 .. layer4 (strides 8, 16, 32;
             512, 1024, 2048 channels), 80 classes, 640 x 640 letterboxed (A = 8400). Its class
             rows are standardized on a seeded random input and shifted to a mean of -2.5
             there (calibrate_head), which leaves tens of boxes above 0.25 on most photos.

They let the suite check cnnviz's reshape rule and stage discovery on the real module code of
those architectures against tests/reference/methods_ref.py, without the full models' size.

usage: tiny_models.py -o OUTDIR [NAME...]   (default: all but yolov8_resnet50)
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from cnnviz_python import ensure_torch  # noqa: E402

ensure_torch("tiny_models.py")

import argparse  # noqa: E402
import json  # noqa: E402

from typing import List  # noqa: E402

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.models._utils import IntermediateLayerGetter  # noqa: E402
from torchvision.models.segmentation.fcn import FCN, FCNHead  # noqa: E402
from torchvision.models.swin_transformer import SwinTransformer  # noqa: E402
from torchvision.models.vision_transformer import VisionTransformer  # noqa: E402

import export_models  # noqa: E402
import torchvision_detectors  # noqa: E402
from torchvision.models.detection.backbone_utils import BackboneWithFPN  # noqa: E402
from torchvision.models.detection.faster_rcnn import (FasterRCNN, FastRCNNPredictor,  # noqa: E402
                                                      TwoMLPHead)
from torchvision.models.detection.image_list import ImageList  # noqa: E402
from torchvision.models.detection.retinanet import RetinaNet  # noqa: E402
from torchvision.models.resnet import BasicBlock, ResNet  # noqa: E402
from torchvision.ops.feature_pyramid_network import LastLevelP6P7  # noqa: E402

CLASSES = 10
SEG_CLASSES = 5
DET_CLASSES = 3
DET_SIZE = 64
DET_CHANNELS = [8, 16, 24, 32]
DET_STRIDES = [8, 16]


def tiny_vit():
    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                             mlp_dim=32, num_classes=CLASSES)


def tiny_swin():
    # embed_dim 12, not 8: an [N,8,8,8] output would not tell channels from positions.
    return SwinTransformer(patch_size=[4, 4], embed_dim=12, depths=[1, 1], num_heads=[1, 2],
                           window_size=[2, 2], num_classes=CLASSES)


def tiny_fcn():
    # Two stages, as a ResNet's layer1..4 are: cnnviz finds backbone.0, backbone.1 and the head.
    body = nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU()),
                         nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU()))
    return FCN(IntermediateLayerGetter(body, {"1": "out"}), FCNHead(16, SEG_CLASSES))


def det_stage(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def cell_grid(feature: torch.Tensor):
    """Column and row index (float) of each cell of a [N,C,h,w] map, row-major: two [h*w]."""
    h, w = feature.shape[2], feature.shape[3]
    xs = torch.arange(w, dtype=feature.dtype, device=feature.device).repeat(h)
    # (repeat_interleave(w), written so that PyTorch 1.13's ONNX exporter takes it)
    ys = torch.arange(h, dtype=feature.dtype, device=feature.device).unsqueeze(1) \
        .expand(h, w).reshape(-1)
    return xs, ys


class YoloV8Head(nn.Module):
    """One 1x1 convolution per level to 4 + C channels, decoded to [N, 4+C, A] (module doc)."""

    def __init__(self, channels: List[int], strides: List[int], classes: int):
        super().__init__()
        self.m = nn.ModuleList([nn.Conv2d(c, 4 + classes, 1) for c in channels])
        self.strides = strides

    def forward(self, feats: List[torch.Tensor]) -> torch.Tensor:
        outs: List[torch.Tensor] = []
        for i, conv in enumerate(self.m):
            g = torch.sigmoid(conv(feats[i]).flatten(2))
            s = float(self.strides[i])
            xs, ys = cell_grid(feats[i])
            ax, ay = (xs + 0.5) * s, (ys + 0.5) * s
            d = (0.75 + g[:, :4]) * s
            x1, y1, x2, y2 = ax - d[:, 0], ay - d[:, 1], ax + d[:, 2], ay + d[:, 3]
            box = torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], 1)
            outs.append(torch.cat([box, g[:, 4:]], 1))
        return torch.cat(outs, 2)


class YoloV5Head(nn.Module):
    """One 1x1 convolution per level to 5 + C channels, decoded to [N, A, 5+C] (module doc)."""

    def __init__(self, channels: List[int], strides: List[int], classes: int):
        super().__init__()
        self.m = nn.ModuleList([nn.Conv2d(c, 5 + classes, 1) for c in channels])
        self.strides = strides

    def forward(self, feats: List[torch.Tensor]) -> torch.Tensor:
        outs: List[torch.Tensor] = []
        for i, conv in enumerate(self.m):
            g = torch.sigmoid(conv(feats[i]).flatten(2))
            s = float(self.strides[i])
            xs, ys = cell_grid(feats[i])
            xy = torch.stack([(2 * g[:, 0] - 0.5 + xs) * s, (2 * g[:, 1] - 0.5 + ys) * s], 1)
            wh = (2 * g[:, 2:4]) ** 2 * (2 * s)
            outs.append(torch.cat([xy, wh, g[:, 4:]], 1))
        return torch.cat(outs, 2).permute(0, 2, 1)


class TinyYolo(nn.Module):
    """backbone.0 .. backbone.3 (strides 2 .. 16), then `head` on backbone.2 and backbone.3
    (or the given backbone, the head on its stages from `first_level` on)."""

    def __init__(self, head: nn.Module, backbone: nn.Module = None, first_level: int = 2):
        super().__init__()
        chans = [3] + DET_CHANNELS
        self.backbone = backbone if backbone is not None else nn.Sequential(
            *[det_stage(chans[i], chans[i + 1]) for i in range(4)])
        self.head = head
        self.first_level = first_level

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats: List[torch.Tensor] = []
        for i, stage in enumerate(self.backbone):
            x = stage(x)
            if i >= self.first_level:
                feats.append(x)
        return self.head(feats)


def tiny_yolov8():
    return TinyYolo(YoloV8Head(DET_CHANNELS[2:], DET_STRIDES, DET_CLASSES))


def tiny_yolov5():
    return TinyYolo(YoloV5Head(DET_CHANNELS[2:], DET_STRIDES, DET_CLASSES))


BENCH_CLASSES = 80
BENCH_SIZE = 640
BENCH_SHIFT = -2.5  # gives 20 (cat_dog.png), 156 (cat.jpg), 69 (snake.png), 0 (spider.png) boxes


def yolov8_resnet50():
    r = torchvision.models.resnet50()
    body = nn.Sequential(nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool), r.layer1, r.layer2,
                         r.layer3, r.layer4)
    return TinyYolo(YoloV8Head([512, 1024, 2048], [8, 16, 32], BENCH_CLASSES), body, 2)


def calibrate_head(model, shift=BENCH_SHIFT):
    """Standardizes each head convolution's class rows on a seeded random input and shifts
    them to a mean of `shift` there."""
    x = torch.randn(1, 3, BENCH_SIZE, BENCH_SIZE, generator=torch.Generator().manual_seed(7))
    feats = []
    with torch.no_grad():
        for i, stage in enumerate(model.backbone):
            x = stage(x)
            if i >= model.first_level:
                feats.append(x)
        for conv, f in zip(model.head.m, feats):
            raw = conv(f)[:, 4:]
            mean, std = raw.mean().item(), raw.std().item()
            conv.weight[4:] /= std
            conv.bias[4:] = (conv.bias[4:] - mean) / std + shift


def init_detector(model, box_gain, score_gain, biases):
    """Kaiming-normal (ReLU) weights for the backbone's convolutions, which keeps the activations'
    size from stage to stage; in each head convolution (level l), the box rows 0..3 scaled by
    box_gain, the score rows 4.. by score_gain and their biases set to biases[l]."""
    with torch.no_grad():
        for m in model.backbone.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        for conv, bias in zip(model.head.m, biases):
            conv.weight[:4] *= box_gain
            conv.weight[4:] *= score_gain
            conv.bias[4:] = torch.tensor(bias)


# name -> init_detector's (box_gain, score_gain, biases), tuned by hand on the four photos of
# ../shared/images (cat.jpg, cat_dog.png, snake.png, spider.png) letterboxed to 64: the score
# rows' raw values average about -3.5 for yolov8's classes, -2 for yolov5's objectness and +1
# for its classes (a spread of about 1.5), which leaves 12 to 37 detections above 0.25 after NMS
# at IoU 0.45, boxes of about 16..48 px (yolov8) and 6..42 px (yolov5).
DETECTOR_INIT = {"tiny_yolov8": (6.0, 20.0, [[0.6, 1.4, 0.8], [-4.1, -8.4, -3.0]]),
                 "tiny_yolov5": (2.0, 20.0, [[-0.9, 0.6, 17.7, 4.3], [-3.0, -2.1, 1.1, 3.5]])}


TV_SIZE, TV_MAX = 96, 128


def tv_retinanet():
    """The torchvision RetinaNet of tiny_retinanet (eval mode)."""
    body = ResNet(BasicBlock, [1, 1, 1, 1])
    backbone = BackboneWithFPN(body, {"layer2": "0", "layer3": "1", "layer4": "2"},
                               [128, 256, 512], 32, extra_blocks=LastLevelP6P7(32, 32))
    return RetinaNet(backbone, num_classes=4, min_size=TV_SIZE, max_size=TV_MAX).eval()


def tiny_retinanet():
    return torchvision_detectors.dense_detector(tv_retinanet())


def tv_fasterrcnn():
    """The torchvision Faster R-CNN of tiny_fasterrcnn (eval mode)."""
    body = ResNet(BasicBlock, [1, 1, 1, 1])
    backbone = BackboneWithFPN(body, {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
                               [64, 128, 256, 512], 32)
    return FasterRCNN(backbone, min_size=TV_SIZE, max_size=TV_MAX,
                      box_head=TwoMLPHead(32 * 7 * 7, 64),
                      box_predictor=FastRCNNPredictor(64, 4)).eval()


def tiny_fasterrcnn():
    return torchvision_detectors.dense_detector(tv_fasterrcnn())


def calibrate_fasterrcnn(wrapper, gain=2.0, background=2.0):
    """Standardizes the class logits of the box predictor on a seeded random input, times
    `gain`, and adds `background` to the background's, so that the softmax over the 4 classes
    leaves tens of boxes above 0.25."""
    x = torch.randn(1, 3, TV_SIZE, TV_MAX, generator=torch.Generator().manual_seed(7))
    predictor = wrapper.roi_heads.box_predictor.cls_score
    with torch.no_grad():
        feats = wrapper.backbone(x)
        proposals, _ = wrapper.rpn(ImageList(x, [(TV_SIZE, TV_MAX)]), feats)
        pooled = wrapper.roi_heads.box_roi_pool(feats, proposals, [(TV_SIZE, TV_MAX)])
        raw = predictor(wrapper.roi_heads.box_head(pooled))
        mean, std = raw.mean(dim=0), raw.std().item()
        predictor.weight.mul_(gain / std)
        predictor.bias.copy_((predictor.bias - mean) * gain / std)
        predictor.bias[0] += background


def calibrate_retinanet(wrapper, shift=-3.0):
    """Standardizes the class logits of the head on a seeded random input and shifts them to a
    mean of `shift` there."""
    x = torch.randn(1, 3, TV_SIZE, TV_MAX, generator=torch.Generator().manual_seed(7))
    conv = wrapper.head.classification_head.cls_logits
    with torch.no_grad():
        raw = wrapper.head(list(wrapper.backbone(x).values()))["cls_logits"]
        mean, std = raw.mean().item(), raw.std().item()
        conv.weight /= std
        conv.bias.copy_((conv.bias - mean) / std + shift)


def zero_vit_biases(model):
    """Zeroes, in place, every additive parameter of a torchvision VisionTransformer: the
    biases of its Linear layers (nn.MultiheadAttention's out_proj is one) and convolutions,
    nn.MultiheadAttention's in_proj_bias, LayerNorm's beta, the class token and the position
    embedding."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.LayerNorm)) and m.bias is not None:
                m.bias.zero_()
            if isinstance(m, nn.MultiheadAttention):
                if m.in_proj_bias is not None:
                    m.in_proj_bias.zero_()
                if m.bias_k is not None or m.bias_v is not None:
                    raise SystemExit("tiny_models.py: attention with bias_k/bias_v")
        model.class_token.zero_()
        model.encoder.pos_embedding.zero_()


# name -> constructor; the weights are the constructor's (seeded), then
# export_models.reinit_zero_linears, then POST_INIT[name] where there is one. load_eager
# (methods_ref.py) rebuilds TINY[arch]() and loads the exported weights over it.
TINY = {"tiny_vit": tiny_vit, "tiny_vit_nobias": tiny_vit, "tiny_swin": tiny_swin,
        "tiny_fcn": tiny_fcn, "tiny_yolov8": tiny_yolov8, "tiny_yolov5": tiny_yolov5,
        "yolov8_resnet50": yolov8_resnet50, "tiny_retinanet": tiny_retinanet,
        "tiny_fasterrcnn": tiny_fasterrcnn}
# name -> the torchvision detector whose dense wrapper TINY[name] builds
TV_DETECTORS = {"tiny_retinanet": tv_retinanet, "tiny_fasterrcnn": tv_fasterrcnn}
BENCH_ONLY = {"yolov8_resnet50"}


def zero_fcn_class_bias(model):
    """Zeroes the bias of the FCN's last convolution, so that the random classes vary across an
    image instead of one class winning everywhere."""
    with torch.no_grad():
        model.classifier[4].bias.zero_()


POST_INIT = {"tiny_vit_nobias": zero_vit_biases, "tiny_fcn": zero_fcn_class_bias,
             "tiny_yolov8": lambda m: init_detector(m, *DETECTOR_INIT["tiny_yolov8"]),
             "tiny_yolov5": lambda m: init_detector(m, *DETECTOR_INIT["tiny_yolov5"]),
             "yolov8_resnet50": calibrate_head, "tiny_retinanet": calibrate_retinanet,
             "tiny_fasterrcnn": calibrate_fasterrcnn}
GRADCAM_LAYER = {"tiny_vit": "encoder.layers.encoder_layer_1",
                 "tiny_vit_nobias": "encoder.layers.encoder_layer_1", "tiny_swin": "features.3",
                 "tiny_fcn": "backbone.1", "tiny_yolov8": "backbone.3",
                 "tiny_yolov5": "backbone.3", "yolov8_resnet50": "backbone.4",
                 "tiny_retinanet": "backbone.body.layer4",
                 "tiny_fasterrcnn": "backbone.body.layer4"}
SEGMENTERS = {"tiny_fcn"}
DETECTORS = {"tiny_yolov8": "yolov8", "tiny_yolov5": "yolov5", "yolov8_resnet50": "yolov8"}
CROP = 32


def output_of(out):
    """The logits of a classifier, the "out" map of a segmenter, a two-stage detector's rows
    (before its proposals)."""
    if isinstance(out, tuple):
        return out[0]
    return out["out"] if isinstance(out, dict) else out


def detector_meta(name, scripted):
    """The cnnviz.json fields of a detector, after checking that the scripted model also runs
    at a larger multiple of its coarsest stride and gives one anchor per cell of each level."""
    bench = name in BENCH_ONLY
    size, classes = (BENCH_SIZE, BENCH_CLASSES) if bench else (DET_SIZE, DET_CLASSES)
    strides = [8, 16, 32] if bench else DET_STRIDES
    side = size + 2 * strides[-1]
    with torch.no_grad():
        out = scripted(torch.zeros(1, 3, side, side))
    anchors = sum((side // s) ** 2 for s in strides)
    want = ([1, 4 + classes, anchors] if DETECTORS[name] == "yolov8"
            else [1, anchors, 5 + classes])
    if list(out.shape) != want:
        raise SystemExit(f"tiny_models.py: {name}: output {list(out.shape)} at {side}, not {want}")
    mean, std = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]) if bench else ([0.0] * 3, [1.0] * 3)
    return {"task": "detect", "layout": DETECTORS[name], "num_classes": classes,
            "labels": ([f"class {i}" for i in range(classes)] if bench
                       else [f"tiny {c}" for c in "abc"]),
            "preprocess": {"resize": size, "crop": 0, "letterbox": True,
                           "interpolation": "bilinear", "antialias": True,
                           "mean": mean, "std": std}}


def tv_detector_meta(name, scripted):
    """The cnnviz.json fields of a torchvision detector's dense wrapper."""
    tv = TV_DETECTORS[name]()
    classes = int(output_of(scripted(torch.zeros(1, 3, TV_SIZE, TV_SIZE))).shape[-1] - 5)
    meta = torchvision_detectors.decoding_of(tv)
    return {**meta, "task": "detect", "num_classes": classes,
            "labels": ["__background__"] + [f"tiny {c}" for c in "abcdefgh"[:classes - 1]],
            "preprocess": torchvision_detectors.preprocess_of(tv)}


def export(name, outdir, seed=0, onnx=False):
    torch.manual_seed(seed)
    model = TINY[name]()
    export_models.reinit_zero_linears(model, seed)
    if name in POST_INIT:
        POST_INIT[name](model)
    model.eval()
    segmenter = name in SEGMENTERS
    side = (BENCH_SIZE if name in BENCH_ONLY else DET_SIZE) if name in DETECTORS else CROP
    if name in TV_DETECTORS:
        side = TV_SIZE
    example = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1234))
    stages = export_models.feature_stages(model, example)
    if name in TV_DETECTORS:  # as export_models.stages_of
        stages = torchvision_detectors.image_stages(stages)
    if GRADCAM_LAYER[name] not in stages:
        raise SystemExit(f"tiny_models.py: {name}: '{GRADCAM_LAYER[name]}' is not among the "
                         f"stages {stages}")
    scripted = torch.jit.script(model)
    with torch.no_grad():
        diff = (output_of(model(example)) - output_of(scripted(example))).abs().max().item()
    if not diff < 1e-4:
        raise SystemExit(f"tiny_models.py: {name}: scripted and eager differ by {diff:g}")
    meta = {
        "cnnviz_format": 1,
        "name": name,
        "arch": name,
        "weights": {"kind": "random", "source": f"seed {seed}"},
        "task": "segment" if segmenter else "classify",
        "num_classes": SEG_CLASSES if segmenter else CLASSES,
        "labels": (["__background__"] + [f"tiny class {i}" for i in range(1, SEG_CLASSES)]
                   if segmenter else [f"tiny class {i}" for i in range(CLASSES)]),
        "preprocess": {"resize": 40 if segmenter else 36, "crop": 0 if segmenter else CROP,
                       "interpolation": "bilinear", "antialias": True,
                       "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "feature_layers": stages,
        "default_layer": GRADCAM_LAYER[name],
    }
    if name in DETECTORS:
        meta.update(detector_meta(name, scripted))
    if name in TV_DETECTORS:
        meta.update(tv_detector_meta(name, scripted))
    path = os.path.join(outdir, f"{name}.onnx" if onnx else f"{name}.pt")
    if onnx:
        if name == "tiny_fasterrcnn":
            raise SystemExit(f"tiny_models.py: {name}: --onnx does not export Faster R-CNN "
                             f"(export_models.py says why)")
        export_models.save_onnx(model, example, path + ".tmp", meta)
    else:
        torch.jit.save(scripted, path + ".tmp", _extra_files={"cnnviz.json": json.dumps(meta)})
    os.replace(path + ".tmp", path)
    print(f"exported {path} (stages {', '.join(stages)})")


def main():
    parser = argparse.ArgumentParser(prog="tiny_models.py", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(TINY))
    parser.add_argument("-o", "--outdir", required=True)
    parser.add_argument("--onnx", action="store_true",
                        help="write NAME.onnx (all but tiny_fasterrcnn), as "
                        "export_models.py --onnx")
    args = parser.parse_args()
    for name in args.names:
        if name not in TINY:
            parser.error(f"unknown model '{name}' ({', '.join(TINY)})")
    os.makedirs(args.outdir, exist_ok=True)
    torch.set_num_threads(1)
    for name in args.names or [n for n in TINY if n not in BENCH_ONLY]:
        export(name, args.outdir, onnx=args.onnx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
