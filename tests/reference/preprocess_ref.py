#!/usr/bin/env python3
"""Reference preprocessing: IMAGE -> [3, crop, crop] float32 tensor saved as OUT.npy
([3, H, W] of the resized image with --crop 0).

usage: preprocess_ref.py IMAGE OUT.npy [IMAGE OUT.npy ...] [--resize 224] [--crop 224]
                         [--grey --mean M --std S]
Several pairs in one call start Python and import torch once. Each tensor is torchvision's Resize, CenterCrop, ToTensor, Normalize(ImageNet mean and std)
of common.load_rgb(IMAGE), written with numpy.save (C order, little-endian '<f4').
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from cnnviz_python import ensure_torch  # noqa: E402

ensure_torch("preprocess_ref.py")

import argparse  # noqa: E402

import numpy as np  # noqa: E402

import common  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description="Reference preprocessing of images to .npy")
    parser.add_argument("pairs", nargs="+", metavar="IMAGE OUT.npy")
    parser.add_argument("--resize", type=int, default=224)
    parser.add_argument("--crop", type=int, default=224, help="0: no crop")
    parser.add_argument("--grey", action="store_true",
                        help="Grayscale() first; one channel, normalized by --mean and --std")
    parser.add_argument("--mean", type=float, default=0.0)
    parser.add_argument("--std", type=float, default=1.0)
    args = parser.parse_args()
    if len(args.pairs) % 2:
        parser.error("give IMAGE OUT.npy pairs")

    for image, out in zip(args.pairs[0::2], args.pairs[1::2]):
        if args.grey:
            tensor = common.preprocess(common.load_rgb(image), resize=args.resize,
                                       crop=args.crop, mean=[args.mean], std=[args.std], grey=True)
        else:
            tensor = common.preprocess(common.load_rgb(image), resize=args.resize, crop=args.crop)
        np.save(out, np.ascontiguousarray(tensor.numpy(), dtype="<f4"))


if __name__ == "__main__":
    main()
