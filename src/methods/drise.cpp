// D-RISE (Petsiuk, Cheng, Kinkade, ... and Saenko 2021, "Black-box
// Explanation of Object Detectors via Saliency Maps"): RISE for a
// detector's detections.
//
// The masks are RISE's (--masks, --grid, --p, --seed; rise.cpp). For each
// masked image the detector's proposals (every anchor's box, objectness and
// class scores, before the threshold and non-maximum suppression) are
// compared with the target, a box L_t of class c:
//   s_j = IoU(L_t, L_j) x O_j x cos(e_c, P_j) = IoU x O_j x P_j[c] / |P_j|
// (O_j is 1 for the yolov8 layout, which has no objectness), and the mask's
// weight is its best proposal's, w_i = max_j s_j. The saliency is
// 1 / (N p) sum_i w_i M_i, as RISE's. A box query's target is its box with
// its label (or its best match's label). The masked images run through the
// model's frozen inference module, --sample-batch at a time; memory does
// not grow with --masks.
#include <ATen/ATen.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cnnviz/core/error.h"
#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

namespace {

// max_j s_j of each masked image's proposals, rows [M,A,5+C] float64.
at::Tensor best_similarity(const at::Tensor& rows, const Detection& target) {
  const at::Tensor cx = rows.select(2, 0), cy = rows.select(2, 1);
  const at::Tensor half_w = rows.select(2, 2) / 2, half_h = rows.select(2, 3) / 2;
  const at::Tensor x1 = cx - half_w, x2 = cx + half_w, y1 = cy - half_h, y2 = cy + half_h;
  const at::Tensor iw = (at::clamp_max(x2, target.x2) - at::clamp_min(x1, target.x1)).clamp_min(0);
  const at::Tensor ih = (at::clamp_max(y2, target.y2) - at::clamp_min(y1, target.y1)).clamp_min(0);
  const at::Tensor inter = iw * ih;
  const at::Tensor area = (x2 - x1).clamp_min(0) * (y2 - y1).clamp_min(0);
  const double target_area =
      std::max(0.0, target.x2 - target.x1) * std::max(0.0, target.y2 - target.y1);
  const at::Tensor united = area + target_area - inter;
  const at::Tensor iou = at::where(united > 0, inter / united.clamp_min(1e-300), at::zeros_like(inter));
  const at::Tensor probs = rows.slice(2, 5);
  const at::Tensor norm = probs.norm(2, {2});
  const at::Tensor cosine =
      at::where(norm > 0, probs.select(2, target.label) / norm.clamp_min(1e-300), at::zeros_like(norm));
  return std::get<0>((iou * rows.select(2, 4) * cosine).max(1));
}

}  // namespace

std::vector<MethodMap> drise(Capture& capture) {
  return {{"", method_util::mask_saliency(capture, [&](int64_t j, const at::Tensor& masked) {
             const Detection target =
                 capture.target_box(j, capture.classes()[static_cast<size_t>(j)]);
             return best_similarity(capture.variant_rows(masked).to(at::kDouble), target);
           })}};
}

}  // namespace cnnviz::methods
