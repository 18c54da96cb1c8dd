#!/usr/bin/env python3
"""Reference classification with PyTorch: top-k classes of images under a TorchScript model.

usage: classify_ref.py MODEL.pt IMAGE... [-k 5]
Prints one JSON document:
  {"results": [{"image": "<path as given>",
                "predictions": [{"index": 56, "probability": 0.93}, ...]}]}
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from cnnviz_python import ensure_torch  # noqa: E402

ensure_torch("classify_ref.py")

import argparse  # noqa: E402
import json  # noqa: E402

import torch  # noqa: E402

import common  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description="Reference top-k classification (JSON on stdout)")
    parser.add_argument("model", metavar="MODEL.pt")
    parser.add_argument("images", metavar="IMAGE", nargs="+")
    parser.add_argument("-k", type=int, default=5, help="number of classes per image (default 5)")
    args = parser.parse_args()

    model, meta = common.load_model(args.model)
    params = common.preprocess_params(meta)
    batch = torch.stack([common.preprocess(common.load_rgb(p), **params) for p in args.images])

    with torch.inference_mode():
        probabilities = torch.softmax(model(batch), dim=1)
    top = torch.topk(probabilities, k=min(args.k, probabilities.shape[1]), dim=1)

    results = []
    for i, path in enumerate(args.images):
        predictions = [{"index": int(index), "probability": float(prob)}
                       for prob, index in zip(top.values[i], top.indices[i])]
        results.append({"image": path, "predictions": predictions})
    json.dump({"results": results}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
