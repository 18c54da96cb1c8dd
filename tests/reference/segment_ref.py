#!/usr/bin/env python3
"""Reference segmentation: each pixel's class by a segmenter, in eager PyTorch.

usage: segment_ref.py MODEL.pt IMAGE OUT.json

The image is preprocessed as the model's cnnviz.json says (torchvision's Resize, CenterCrop
unless crop is 0, ToTensor, Normalize); the model's "out" scores [1, K, H, W] give each input
pixel its highest class (torch.argmax: the first of equal scores), and each source pixel (x, y)
the class of input pixel (floor((2x + 1) W / 2 w), floor((2y + 1) H / 2 h)), computed here with
numpy. OUT.json: {"size": [w, h], "input_size": [W, H], "pixels": {class: count}} and
OUT.json's stem + ".npy", the source-size label map (float32 class indices).
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from cnnviz_python import ensure_torch  # noqa: E402

ensure_torch("segment_ref.py")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import common  # noqa: E402


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    model_path, image_path, out_path = sys.argv[1:]
    model, meta = common.load_model(model_path)
    img = common.load_rgb(image_path)
    x = common.preprocess(img, **common.preprocess_params(meta)).unsqueeze(0)
    with torch.no_grad():
        out = model(x)
    scores = out["out"] if isinstance(out, dict) else out
    labels = scores[0].argmax(0).numpy().astype(np.int32)
    in_h, in_w = labels.shape
    w, h = img.size
    xs = ((2 * np.arange(w, dtype=np.int64) + 1) * in_w) // (2 * w)
    ys = ((2 * np.arange(h, dtype=np.int64) + 1) * in_h) // (2 * h)
    source = labels[ys[:, None], xs[None, :]]
    classes, counts = np.unique(source, return_counts=True)
    doc = {"size": [w, h], "input_size": [in_w, in_h],
           "pixels": {str(int(k)): int(n) for k, n in zip(classes, counts)}}
    with open(out_path, "w") as f:
        json.dump(doc, f)
    # float32, which the C++ tests read (exact for any class index below 2^24).
    np.save(os.path.splitext(out_path)[0] + ".npy", source.astype("<f4"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
