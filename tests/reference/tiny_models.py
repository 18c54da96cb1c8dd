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

They let the suite check cnnviz's reshape rule and stage discovery on the real module code of
those architectures against tests/reference/methods_ref.py, without the full models' size.

usage: tiny_models.py -o OUTDIR [NAME...]   (default: all)
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from cnnviz_python import ensure_torch  # noqa: E402

ensure_torch("tiny_models.py")

import argparse  # noqa: E402
import json  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.models._utils import IntermediateLayerGetter  # noqa: E402
from torchvision.models.segmentation.fcn import FCN, FCNHead  # noqa: E402
from torchvision.models.swin_transformer import SwinTransformer  # noqa: E402
from torchvision.models.vision_transformer import VisionTransformer  # noqa: E402

import export_models  # noqa: E402

CLASSES = 10
SEG_CLASSES = 5


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
        "tiny_fcn": tiny_fcn}
def zero_fcn_class_bias(model):
    """Zeroes the bias of the FCN's last convolution, so that the random classes vary across an
    image instead of one class winning everywhere."""
    with torch.no_grad():
        model.classifier[4].bias.zero_()


POST_INIT = {"tiny_vit_nobias": zero_vit_biases, "tiny_fcn": zero_fcn_class_bias}
GRADCAM_LAYER = {"tiny_vit": "encoder.layers.encoder_layer_1",
                 "tiny_vit_nobias": "encoder.layers.encoder_layer_1", "tiny_swin": "features.3",
                 "tiny_fcn": "backbone.1"}
SEGMENTERS = {"tiny_fcn"}
CROP = 32


def output_of(out):
    """The logits of a classifier, the "out" map of a segmenter."""
    return out["out"] if isinstance(out, dict) else out


def export(name, outdir, seed=0):
    torch.manual_seed(seed)
    model = TINY[name]()
    export_models.reinit_zero_linears(model, seed)
    if name in POST_INIT:
        POST_INIT[name](model)
    model.eval()
    segmenter = name in SEGMENTERS
    example = torch.randn(1, 3, CROP, CROP, generator=torch.Generator().manual_seed(1234))
    stages = export_models.feature_stages(model, example)
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
    path = os.path.join(outdir, f"{name}.pt")
    torch.jit.save(scripted, path + ".tmp", _extra_files={"cnnviz.json": json.dumps(meta)})
    os.replace(path + ".tmp", path)
    print(f"exported {path} (stages {', '.join(stages)})")


def main():
    parser = argparse.ArgumentParser(prog="tiny_models.py", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(TINY))
    parser.add_argument("-o", "--outdir", required=True)
    args = parser.parse_args()
    for name in args.names:
        if name not in TINY:
            parser.error(f"unknown model '{name}' ({', '.join(TINY)})")
    os.makedirs(args.outdir, exist_ok=True)
    torch.set_num_threads(1)
    for name in args.names or list(TINY):
        export(name, args.outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
