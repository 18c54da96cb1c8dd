"""torchvision's one-stage detectors as cnnviz reads detectors: one TorchScript forward from an
image batch to raw dense predictions in YOLOv5's layout, [N, A, 5 + C] (cx, cy, w, h in input
pixels, an objectness, then C class scores), before any threshold or non-maximum suppression.

torchvision's own scripted forward takes a list of images, resizes them inside the model and
returns boxes after its threshold and NMS. cnnviz needs the dense form instead: a score it can
differentiate for a fixed anchor, the same anchor in every perturbed pass, and its own threshold
and NMS. The wrappers here run the detector's own modules (backbone, head, anchor generator, box
coder) and only replace the model's pre- and post-processing:

- the input arrives resized (the shorter side to the model's min_size, the longer at most its
  max_size, as torchvision's transform resizes) and normalized by cnnviz, as the metadata says;
- the wrapper pads it at the bottom and right to a multiple of 32 with zeros, as torchvision's
  batching does (SSDlite instead stretches it to its fixed 320 x 320 and maps the boxes back);
- boxes are decoded at every anchor and clipped to the unpadded input, as torchvision does;
- class scores are torchvision's: sigmoid (RetinaNet), sqrt(sigmoid(class) * sigmoid(centerness))
  split as objectness sqrt(sigmoid(centerness)) times class sqrt(sigmoid(class)) (FCOS), softmax
  (SSDlite, whose class 0, the softmax's background, is scored 0 as torchvision never detects
  it; RetinaNet and FCOS score it like any class, as torchvision does, and trained weights never
  detect it).

cnnviz then keeps every (anchor, class) pair above --min-score and suppresses per class, as
torchvision's postprocessing does, without its per-level top-k candidate cap.

export_models.py --onnx traces the one-stage wrappers instead (torch.onnx.export): there the
padding, the anchors, the clipping and SSDlite's scaling follow the input's shape as tensors, so
that the graph holds for any batch, height and width; the scripted forward is unchanged. Faster
R-CNN is not exported to ONNX: its region proposal network runs NMS inside the model.
"""

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import boxes as box_ops

ONE_STAGE = ("retinanet_resnet50_fpn", "fcos_resnet50_fpn", "ssdlite320_mobilenet_v3_large")
TWO_STAGE = ("fasterrcnn_resnet50_fpn", "fasterrcnn_mobilenet_v3_large_fpn")


def pad_to(x: Tensor, divisible: int) -> Tensor:
    """x padded with zeros at the bottom and right to a multiple of `divisible` (torchvision's
    batch_images). Integer arithmetic on x's size, which a trace (ONNX) keeps as values of the
    graph."""
    h, w = x.shape[-2], x.shape[-1]
    return F.pad(x, [0, (divisible - w % divisible) % divisible,
                     0, (divisible - h % divisible) % divisible])


def clip_to(boxes: Tensor, image: Tensor) -> Tensor:
    """x1y1x2y2 boxes clipped to the height and width of `image`, as torchvision clips; a trace
    takes them from the image's shape as a tensor (torchvision's clip_boxes_to_image would make
    them constants)."""
    if not torch.jit.is_tracing():
        return box_ops.clip_boxes_to_image(boxes, (image.shape[-2], image.shape[-1]))
    return torch.min(boxes.clamp(min=0), wh_wh(image, boxes.dtype))


def wh_wh(image: Tensor, dtype: torch.dtype) -> Tensor:
    """[width, height, width, height] of `image` as a tensor of `dtype`, from its shape."""
    shape = torch._shape_as_tensor(image).to(dtype)
    return torch.stack([shape[-1], shape[-2], shape[-1], shape[-2]])


def dense_rows(boxes: Tensor, objectness: Tensor, scores: Tensor) -> Tensor:
    """[N, A, 5 + C] from x1y1x2y2 boxes [N, A, 4], objectness [N, A] and scores [N, A, C]."""
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    size = boxes[..., 2:] - boxes[..., :2]
    return torch.cat([centre, size, objectness.unsqueeze(-1), scores], dim=-1)


class DenseBase(nn.Module):
    """The detector's own modules; forward() per architecture."""

    def __init__(self, model):
        super().__init__()
        self.backbone = model.backbone
        self.head = model.head
        self.anchor_generator = model.anchor_generator
        self.box_coder = model.box_coder

    def decoded(self, padded: Tensor, regression: Tensor, features: List[Tensor],
                image: Tensor) -> Tensor:
        """Every anchor's box [N, A, 4] (x1y1x2y2), clipped to the size of `image` as
        torchvision clips; the anchors are those of `padded`, the same for every image of the
        batch, so that the batch is decoded at once (a trace keeps its size dynamic)."""
        size: Tuple[int, int] = (image.shape[-2], image.shape[-1])
        anchors = self.anchor_generator(ImageList(padded, [size]), features)[0]
        every = anchors.expand_as(regression).reshape(-1, 4)
        boxes = self.decode(regression.reshape(-1, 4), every)
        return clip_to(boxes.reshape(regression.shape), image)

    def decode(self, regression: Tensor, anchors: Tensor) -> Tensor:
        return self.box_coder.decode_single(regression, anchors)

    def padded_head(self, x: Tensor) -> Tuple[Dict[str, Tensor], Tensor]:
        """The head's outputs on x padded to a multiple of 32, and every anchor's box."""
        padded = pad_to(x, 32)
        features = list(self.backbone(padded).values())
        out = self.head(features)
        return out, self.decoded(padded, out["bbox_regression"], features, x)


class RetinaNetDense(DenseBase):
    def forward(self, x: Tensor) -> Tensor:
        out, boxes = self.padded_head(x)
        scores = torch.sigmoid(out["cls_logits"])
        return dense_rows(boxes, torch.ones_like(scores[..., 0]), scores)


class FCOSDense(DenseBase):
    def decode(self, regression: Tensor, anchors: Tensor) -> Tensor:
        return self.box_coder.decode(regression, anchors)  # FCOS's linear coder

    def forward(self, x: Tensor) -> Tensor:
        out, boxes = self.padded_head(x)
        objectness = torch.sqrt(torch.sigmoid(out["bbox_ctrness"][..., 0]))
        return dense_rows(boxes, objectness, torch.sqrt(torch.sigmoid(out["cls_logits"])))


class SSDDense(DenseBase):
    def __init__(self, model):
        super().__init__(model)
        fixed = model.transform.fixed_size  # (width, height), as torchvision reads it
        self.fixed: Tuple[int, int] = (int(fixed[1]), int(fixed[0]))

    def forward(self, x: Tensor) -> Tensor:
        stretched = F.interpolate(x, size=self.fixed, mode="bilinear", align_corners=False)
        features = list(self.backbone(stretched).values())
        out = self.head(features)
        boxes = self.decoded(stretched, out["bbox_regression"], features, stretched)
        scale = self.scale(x, stretched)
        scores = F.softmax(out["cls_logits"], dim=-1)
        background = torch.ones_like(scores[0, 0])
        background[0] = 0.0  # torchvision's SSD never detects class 0, its softmax's background
        return dense_rows(boxes * scale, torch.ones_like(scores[..., 0]), scores * background)

    def scale(self, x: Tensor, stretched: Tensor) -> Tensor:
        """[w / W, h / H] * 2, from the stretched W x H to x's w x h; a trace divides the
        shapes as tensors (a Python float would be a constant)."""
        if torch.jit.is_tracing():
            return wh_wh(x, x.dtype) / wh_wh(stretched, x.dtype)
        h, w = x.shape[-2], x.shape[-1]
        return torch.tensor([w / self.fixed[1], h / self.fixed[0]] * 2, dtype=x.dtype,
                            device=x.device)


class FasterRCNNDense(nn.Module):
    """Faster R-CNN's second stage, dense over (proposal, class): forward(x, proposals) returns
    (rows [N, P * (C - 1), 5 + C], proposals [P, 4]). Row p * (C - 1) + (c - 1) is class c's box
    of proposal p (decoded and clipped as torchvision does), its softmax probability as the
    objectness, and a one-hot class vector of c, so that its score is torchvision's and D-RISE
    weighs it by IoU times that probability; the background (class 0) has no rows.

    The proposals are an input so that every pass scores the same ones: without them, the
    region proposal network picks them (its own NMS) from the batch's first image, and every
    image of the batch is scored at those (cnnviz passes one image per pass, with its perturbed
    copies, then gives the first pass's proposals back)."""

    def __init__(self, model):
        super().__init__()
        self.backbone = model.backbone
        self.rpn = model.rpn
        self.roi_heads = model.roi_heads

    def forward(self, x: Tensor, proposals: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        n = x.shape[0]
        size: Tuple[int, int] = (x.shape[-2], x.shape[-1])
        padded = pad_to(x, 32)
        features = self.backbone(padded)
        if proposals is None:
            first: Dict[str, Tensor] = {}
            for k, v in features.items():
                first[k] = v[:1]
            found, _ = self.rpn(ImageList(padded[:1], [size]), first)
            proposals = found[0]
        assert proposals is not None
        heads = self.roi_heads
        pooled = heads.box_roi_pool(features, [proposals] * n, [size] * n)
        logits, regression = heads.box_predictor(heads.box_head(pooled))
        boxes = box_ops.clip_boxes_to_image(heads.box_coder.decode(regression, [proposals] * n),
                                            size)
        scores = F.softmax(logits, -1)
        count, classes = proposals.shape[0], scores.shape[-1]
        boxes = boxes.reshape(n, count, classes, 4)[:, :, 1:]
        scores = scores.reshape(n, count, classes)[:, :, 1:]
        onehot = torch.eye(classes, dtype=scores.dtype, device=scores.device)[1:]
        rows = torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2],
                          scores.unsqueeze(-1), onehot.expand(n, count, classes - 1, classes)],
                         dim=-1)
        return rows.reshape(n, count * (classes - 1), 5 + classes), proposals


def dense_detector(model):
    """The dense wrapper of a torchvision detector (RetinaNet, FCOS, SSD/SSDlite, Faster
    R-CNN)."""
    from torchvision.models.detection.faster_rcnn import FasterRCNN
    if isinstance(model, FasterRCNN):
        return FasterRCNNDense(model)
    from torchvision.models.detection.fcos import FCOS
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection.ssd import SSD
    if isinstance(model, RetinaNet):
        return RetinaNetDense(model)
    if isinstance(model, FCOS):
        return FCOSDense(model)
    if isinstance(model, SSD):
        return SSDDense(model)
    raise TypeError(f"{type(model).__name__} is not a torchvision detector cnnviz reads")


def preprocess_of(model):
    """cnnviz's preprocessing for a torchvision detector: its transform's resize (the shorter
    side to min_size, the longer at most max_size; SSD's shorter side to its fixed size, then the
    wrapper stretches) and its mean and std; no crop."""
    t = model.transform
    mean = [float(v) for v in t.image_mean]
    std = [float(v) for v in t.image_std]
    fixed = getattr(t, "fixed_size", None)
    if fixed:
        resize, most = int(min(fixed)), 0
    else:
        resize, most = int(t.min_size[-1]), int(t.max_size)
    return {"resize": resize, "max_size": most, "crop": 0, "interpolation": "bilinear",
            "antialias": True, "channels": 3, "mean": mean, "std": std}


def decoding_of(model):
    """The cnnviz.json fields that say how cnnviz decodes the wrapper's rows: the layout, the
    detector's own NMS IoU, every class of a row a candidate, and for Faster R-CNN, that its
    forward takes and returns the proposals."""
    from torchvision.models.detection.faster_rcnn import FasterRCNN
    two_stage = isinstance(model, FasterRCNN)
    nms = model.roi_heads.nms_thresh if two_stage else model.nms_thresh
    meta = {"layout": "yolov5", "nms_iou": float(nms), "multi_label": True}
    if two_stage:
        meta["proposals"] = True
    return meta


def image_stages(stages):
    """A detector's feature stages among the wrapper's discovered `stages`: its backbone's maps
    of the image (the body's stages, the FPN's levels), not the FPN's lateral 1x1 convolutions
    nor Faster R-CNN's pooled regions (roi_heads.box_roi_pool, one 7 x 7 map per proposal)."""
    return [s for s in stages if s.startswith("backbone.") and ".inner_blocks." not in s]
