#!/usr/bin/env python3
"""Reference detection: a YOLO-style detector's boxes on one image, in eager PyTorch.

usage: detect_ref.py MODEL.pt IMAGE OUT.json [--min-score 0.25] [--iou 0.45]
                     [--max-detections 300]

Rules:
  letterbox  S = preprocess.resize of the model's cnnviz.json (its interpolation must be
             antialiased bilinear), w x h the image size (common.load_rgb). The longer side
             becomes S, the shorter floor(short * S / long + 0.5), computed in integers as
             (2 short S + long) // (2 long), at least 1 (a square image: S x S). Resized with
             PIL Image.resize(..., Image.BILINEAR) (Pillow's antialiased bilinear), pasted onto
             an S x S RGB canvas of (114, 114, 114) at left = (S - new_w) // 2,
             top = (S - new_h) // 2; ToTensor (/255), then (x - mean) / std.
  model      the TorchScript model on [1, 3, S, S]; its output by cnnviz.json's "layout":
             yolov8  [1, 4+C, A]: rows cx, cy, w, h (input pixels), then C class scores;
                     score = the largest class score, label = its class
             yolov5  [1, A, 5+C]: cx, cy, w, h, objectness, C class probabilities;
                     score = objectness * the largest class probability (float32),
                     label = the class of that probability
             (label: torch.argmax, the first of equal values).
  decode     candidates: score > min_score (strictly); x1 = cx - w/2, y1 = cy - h/2,
             x2 = cx + w/2, y2 = cy + h/2 (float32).
  NMS        greedy and per class, over the candidates ordered by score descending, ties by
             lower anchor index: a candidate is kept unless its IoU (torchvision.ops.box_iou:
             intersection / (area1 + area2 - intersection), float32, no +1) with a kept box of
             its class is > iou. The first max_detections kept boxes, in that order, are the
             detections. torchvision.ops.batched_nms(boxes, scores, labels, iou) must keep the
             same set (its unstable sort leaves equal scores unordered, so on a difference with
             tied scores this only warns; equal scores are common: the cells that see only the
             letterbox padding give bit-identical outputs).
  source     x_src = (x - left) * w / new_w, y_src = (y - top) * h / new_h (float64), then
             clipped to [0, w] and [0, h].
OUT.json: {"size": [w, h], "input_size": [S, S], "layout": ..., "letterbox": {"left": ...,
"top": ..., "width": new_w, "height": new_h}, "detections": [{"box": [x1, y1, x2, y2],
"score": s, "label": k}, ...]} in that order. Errors: one line on stderr, exit status 1.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from cnnviz_python import ensure_torch  # noqa: E402

ensure_torch("detect_ref.py")

import argparse  # noqa: E402
import json  # noqa: E402

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402
from torchvision.ops import batched_nms, box_iou  # noqa: E402

import common  # noqa: E402

PROG = "detect_ref.py"
LAYOUTS = ("yolov8", "yolov5")
PAD = (114, 114, 114)


class RefError(Exception):
    pass


def letterbox_size(w, h, size):
    """(new_w, new_h): the longer side `size`, the shorter scaled and rounded half up."""
    long_side, short_side = max(w, h), min(w, h)
    short = max(1, (2 * short_side * size + long_side) // (2 * long_side))
    return (size, short) if w >= h else (short, size)


def letterbox(img, size, mean, std):
    """The [3, size, size] input tensor and the letterbox geometry dict."""
    new_w, new_h = letterbox_size(*img.size, size)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    canvas = Image.new("RGB", (size, size), PAD)
    canvas.paste(img.resize((new_w, new_h), Image.BILINEAR), (left, top))
    x = transforms.Normalize(mean=mean, std=std)(transforms.ToTensor()(canvas))
    return x, {"left": left, "top": top, "width": new_w, "height": new_h}


def decode(out, layout, num_classes):
    """(boxes [A,4] x1y1x2y2, scores [A], labels [A]) from the model's output for one image."""
    if layout == "yolov8":
        if out.dim() != 3 or out.shape[0] != 1 or out.shape[1] < 5:
            raise RefError(f"yolov8 output must be [1, 4+C, A], got {list(out.shape)}")
        rows = out[0].t()
        box, scores, labels = rows[:, :4], rows[:, 4:].max(1).values, rows[:, 4:].argmax(1)
    else:
        if out.dim() != 3 or out.shape[0] != 1 or out.shape[2] < 6:
            raise RefError(f"yolov5 output must be [1, A, 5+C], got {list(out.shape)}")
        rows = out[0]
        probs = rows[:, 5:]
        box, scores, labels = rows[:, :4], rows[:, 4] * probs.max(1).values, probs.argmax(1)
    classes = rows.shape[1] - (4 if layout == "yolov8" else 5)
    if num_classes is not None and classes != num_classes:
        raise RefError(f"output has {classes} classes, cnnviz.json says {num_classes}")
    cx, cy, w, h = box.unbind(1)
    boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    return boxes, scores, labels


def greedy_nms(boxes, scores, labels, order, iou):
    """The anchors of `order` (already in priority order) that survive class-aware NMS."""
    kept = []
    for a in order:
        same = [k for k in kept if labels[k] == labels[a]]
        if not same or box_iou(boxes[a:a + 1], boxes[same]).max().item() <= iou:
            kept.append(a)
    return kept


def select(boxes, scores, labels, min_score, iou, max_detections):
    """Anchor indices of the detections: threshold, class-aware NMS, order, truncation."""
    candidates = torch.nonzero(scores > min_score).flatten()
    order = sorted(candidates.tolist(), key=lambda a: (-scores[a].item(), a))
    kept = greedy_nms(boxes, scores, labels, order, iou)
    check = candidates[batched_nms(boxes[candidates], scores[candidates], labels[candidates], iou)]
    if set(kept) != set(check.tolist()):
        if len(set(scores[candidates].tolist())) == len(candidates):
            raise RefError("greedy NMS and torchvision's batched_nms keep different boxes")
        print(f"{PROG}: warning: batched_nms keeps other boxes among equal scores", file=sys.stderr)
    return kept[:max_detections]


def to_source(box, geometry, w, h):
    """An input-pixel box mapped through the letterbox back to the image, clipped."""
    sx, sy = w / geometry["width"], h / geometry["height"]
    x1, y1, x2, y2 = (float(v) for v in box)
    xs = [min(max((x - geometry["left"]) * sx, 0.0), float(w)) for x in (x1, x2)]
    ys = [min(max((y - geometry["top"]) * sy, 0.0), float(h)) for y in (y1, y2)]
    return [xs[0], ys[0], xs[1], ys[1]]


def detect(model_path, image_path, args):
    model, meta = common.load_model(model_path)
    layout = meta.get("layout")
    if meta.get("task") != "detect" or layout not in LAYOUTS:
        raise RefError(f"{model_path}: cnnviz.json has no detector layout ({', '.join(LAYOUTS)})")
    pre = common.preprocess_params(meta)
    img = common.load_rgb(image_path)
    x, geometry = letterbox(img, pre["resize"], pre["mean"], pre["std"])
    with torch.no_grad():
        out = model(x.unsqueeze(0))
    boxes, scores, labels = decode(out, layout, meta.get("num_classes"))
    anchors = select(boxes, scores, labels, args.min_score, args.iou, args.max_detections)
    w, h = img.size
    detections = [{"box": to_source(boxes[a], geometry, w, h), "score": scores[a].item(),
                   "label": int(labels[a])} for a in anchors]
    return {"size": [w, h], "input_size": [pre["resize"], pre["resize"]], "layout": layout,
            "letterbox": geometry, "detections": detections}


def main():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("model", metavar="MODEL.pt")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("out", metavar="OUT.json")
    parser.add_argument("--min-score", type=float, default=0.25)
    parser.add_argument("--iou", type=float, default=0.45)
    parser.add_argument("--max-detections", type=int, default=300)
    args = parser.parse_args()
    if args.max_detections < 0 or not 0 <= args.iou <= 1:
        parser.error("--max-detections must be >= 0 and --iou in [0, 1]")
    try:
        doc = detect(args.model, args.image, args)
        with open(args.out, "w") as f:
            json.dump(doc, f)
    except (RefError, OSError, RuntimeError, ValueError, KeyError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
