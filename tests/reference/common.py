"""Shared helpers of the Python references: image loading and torchvision preprocessing.

The references follow the seed tutorial with plain PIL, torchvision and PyTorch, so that the
C++ implementation is compared against the library behaviour users know. Import this module
only after ensure_torch() (see scripts/cnnviz_python.py).
"""

import contextlib
import json
import math

import numpy as np
import torch
from PIL import Image
import torch.nn.functional as F
from torchvision import transforms

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# Defaults of the seed tutorial, used when a model file carries no cnnviz.json.
DEFAULT_PREPROCESS = {"resize": 224, "crop": 224, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


def load_rgb(path):
    """Open an image as an 8-bit RGB PIL image.

    16-bit grey images are reduced to 8 bits by keeping the high byte (v >> 8), which is what
    PIL itself does when it opens a 16-bit RGB PNG; PIL's convert() would clip grey ones to
    255 instead. Everything else goes through convert("RGB"): an alpha channel is
    dropped, not composited, as the seed tutorial's Image.open(p).convert('RGB') does. The EXIF
    orientation is not applied (neither PIL nor torchvision applies it).
    """
    img = Image.open(path)
    if img.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(img).astype(np.float64)
        grey = (np.clip(values, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    return img.convert("RGB")


def detection_size(width, height, resize, max_size):
    """(h, w) as torchvision 0.14's GeneralizedRCNNTransform resizes: its own arithmetic, in
    float32 tensors, then interpolate's floor(side * scale)."""
    shape = torch.tensor([height, width])
    scale = torch.min(float(resize) / torch.min(shape).to(torch.float32),
                      float(max_size) / torch.max(shape).to(torch.float32)).item()
    return math.floor(float(height) * scale), math.floor(float(width) * scale)


def preprocess(img, resize=224, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, grey=False,
               max_size=0):
    """torchvision's Resize(resize) (shorter side; PIL bilinear, which antialiases),
    CenterCrop(crop) (none when crop is 0), ToTensor, Normalize(mean, std). Returns a
    [3, crop, crop] float32 tensor (without a crop, the resized image's size); with `grey`,
    Grayscale() first (PIL's convert("L")) and one channel. With max_size (a torchvision
    detector), the size is detection_size()'s, without a crop."""
    size = detection_size(*img.size, resize, max_size) if max_size else resize
    pipeline = transforms.Compose(([transforms.Grayscale(num_output_channels=1)] if grey else []) + [
        transforms.Resize(size, interpolation=transforms.InterpolationMode.BILINEAR),
    ] + ([transforms.CenterCrop(crop)] if crop else []) + [
        transforms.ToTensor(),
        transforms.Normalize(mean=mean, std=std),
    ])
    return pipeline(img)


def load_model(path):
    """Load a TorchScript model; returns (module, metadata dict from its cnnviz.json, or {})."""
    extra = {"cnnviz.json": ""}
    model = torch.jit.load(path, map_location="cpu", _extra_files=extra)
    meta = json.loads(extra["cnnviz.json"]) if extra["cnnviz.json"] else {}
    return model.eval(), meta


def preprocess_params(meta):
    """The keyword arguments of preprocess() described by a cnnviz.json dict."""
    if not meta:
        return dict(DEFAULT_PREPROCESS)
    pre = meta["preprocess"]
    if pre.get("interpolation", "bilinear") != "bilinear" or not pre.get("antialias", True):
        raise ValueError(f"unsupported preprocess in cnnviz.json: {pre} "
                         "(the reference does antialiased bilinear only)")
    params = {key: pre[key] for key in ("resize", "crop", "mean", "std")}
    if pre.get("max_size"):
        params["max_size"] = pre["max_size"]
    return params


def read_preprocess(model_path):
    """Preprocess parameters stored in a TorchScript file's cnnviz.json (defaults when none)."""
    return preprocess_params(load_model(model_path)[1])


def gaussian_blur(x, sigma):
    """Gaussian blur of each channel of x ([N,C,H,W] or [C,H,W], float32), as cnnviz blurs IG
    baselines and insertion starts: radius r = ceil(3 sigma); 1-D kernel k_i =
    exp(-i^2 / (2 sigma^2)) for i = -r..r, normalized to sum 1 (computed in float64, used in
    float32); x padded by r on each side with F.pad(mode="reflect"); then a depthwise conv2d
    (groups=C) with the kernel as a row (horizontal), then as a column (vertical). Same shape
    as x. Needs sigma > 0 and r < H, W (reflect padding)."""
    if not sigma > 0:
        raise ValueError(f"blur sigma must be > 0 (got {sigma})")
    batched = x.dim() == 4
    x = x if batched else x[None]
    channels, height, width = x.shape[1:]
    radius = math.ceil(3 * sigma)
    if radius >= min(height, width):
        raise ValueError(f"blur radius {radius} (sigma {sigma}) must be below the image size "
                         f"{height}x{width}")
    i = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-i * i / (2 * sigma * sigma))
    kernel = (kernel / kernel.sum()).to(torch.float32)
    padded = F.pad(x.to(torch.float32), (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    out = F.conv2d(rows, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)
    return out if batched else out[0]


@contextlib.contextmanager
def patched(targets):
    """Set each (owner, name, fn) of targets while the block runs, then restore the originals
    (an attribute the owner only inherited, such as a Tensor method, is deleted again)."""
    saved = [(owner, name, owner.__dict__.get(name)) for owner, name, _ in targets]
    try:
        for owner, name, fn in targets:
            setattr(owner, name, fn)
        yield
    finally:
        for owner, name, original in saved:
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
