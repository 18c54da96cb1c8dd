#!/usr/bin/env python3
"""Python side of the classify benchmark: what `cnnviz classify` does, in PyTorch/torchvision.

usage: bench_classify.py MODEL.pt IMAGE... [--batch-size 16] [--threads N] [--repeat 3]
                         [--warmup 1]

Loads the TorchScript model once (not timed), runs one untimed warm-up batch, then times
`--repeat` runs of the whole job for all images: PIL open + convert("RGB") + Resize,
CenterCrop, ToTensor, Normalize, batched forward in inference mode, softmax and top-5.
Prints one JSON line:
  {"images": N, "threads": T, "batch_size": B, "run_ms": [...], "per_image_ms": best / N}
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cnnviz_python import ensure_torch  # noqa: E402

ensure_torch("bench_classify.py")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def make_pipeline(model_path):
    """The preprocessing described by the model's cnnviz.json (the seed's defaults without one)."""
    extra = {"cnnviz.json": ""}
    model = torch.jit.load(model_path, map_location="cpu", _extra_files=extra).eval()
    pre = {"resize": 224, "crop": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    if extra["cnnviz.json"]:
        pre = json.loads(extra["cnnviz.json"])["preprocess"]
    pipeline = transforms.Compose([
        transforms.Resize(pre["resize"], interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(pre["crop"]),
        transforms.ToTensor(),
        transforms.Normalize(mean=pre["mean"], std=pre["std"]),
    ])
    return model, pipeline


def classify(model, pipeline, paths, batch_size):
    """Top-5 (probabilities, indices) per batch for the images at `paths`."""
    results = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        batch = torch.stack([pipeline(Image.open(p).convert("RGB")) for p in chunk])
        with torch.inference_mode():
            probabilities = torch.softmax(model(batch), dim=1)
            results.append(torch.topk(probabilities, k=min(5, probabilities.shape[1]), dim=1))
    return results


def main():
    parser = argparse.ArgumentParser(description="Time PyTorch/torchvision classification "
                                     "(the Python equivalent of `cnnviz classify`)")
    parser.add_argument("model", metavar="MODEL.pt")
    parser.add_argument("images", metavar="IMAGE", nargs="+")
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--threads", type=positive_int, default=os.cpu_count() or 1,
                        help="intra-op threads (default: all cores)")
    parser.add_argument("--repeat", type=positive_int, default=3)
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed batches before timing (0: time a cold run, as a fresh "
                        "cnnviz process does)")
    args = parser.parse_args()

    # Set explicitly: the default depends on the build and on OMP_NUM_THREADS.
    torch.set_num_threads(args.threads)
    model, pipeline = make_pipeline(args.model)

    # Warm-up: the first calls of a TorchScript module profile and optimize the graph.
    for _ in range(args.warmup):
        classify(model, pipeline, args.images[:args.batch_size], args.batch_size)

    run_ms = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        classify(model, pipeline, args.images, args.batch_size)
        run_ms.append((time.perf_counter() - start) * 1000.0)

    report = {
        "images": len(args.images),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "run_ms": [round(ms, 3) for ms in run_ms],
        "per_image_ms": round(min(run_ms) / len(args.images), 3),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
