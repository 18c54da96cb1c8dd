#!/usr/bin/env python3
"""Reference preprocessing: IMAGE -> [3, crop, crop] float32 tensor saved as OUT.npy.

usage: preprocess_ref.py IMAGE OUT.npy [--resize 224] [--crop 224] [--grey --mean M --std S]
The tensor is torchvision's Resize, CenterCrop, ToTensor, Normalize(ImageNet mean and std)
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
    parser = argparse.ArgumentParser(description="Reference preprocessing of one image to .npy")
    parser.add_argument("image")
    parser.add_argument("out", metavar="OUT.npy")
    parser.add_argument("--resize", type=int, default=224)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--grey", action="store_true",
                        help="Grayscale() first; one channel, normalized by --mean and --std")
    parser.add_argument("--mean", type=float, default=0.0)
    parser.add_argument("--std", type=float, default=1.0)
    args = parser.parse_args()

    if args.grey:
        tensor = common.preprocess(common.load_rgb(args.image), resize=args.resize,
                                   crop=args.crop, mean=[args.mean], std=[args.std], grey=True)
    else:
        tensor = common.preprocess(common.load_rgb(args.image), resize=args.resize,
                                   crop=args.crop)
    array = np.ascontiguousarray(tensor.numpy(), dtype="<f4")
    np.save(args.out, array)


if __name__ == "__main__":
    main()
