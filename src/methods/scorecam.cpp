// Score-CAM (Wang et al. 2020, "Score-CAM: Score-Weighted Visual Explanations
// for Convolutional Neural Networks"): no gradient. Each channel A_k of the
// layer output, upsampled to the input (bilinear) and min-max normalized to
// [0, 1] (a constant channel becomes all zeros), masks the normalized input:
// s_k = softmax(f(x * H_k))_c. map = relu(sum_k s_k A_k). As in the
// authors' code, the score is the masked image's probability itself (the
// paper's baseline term f(x_b) is left out); --score picks another score of
// the masked image (the registry makes probability its default).
//
// K masked images per image (512 at VGG16's last layers), run through the
// network without autograd in batches of --sample-batch.
#include <ATen/ATen.h>

#include "cnnviz/methods/methods.h"

namespace cnnviz::methods {

std::vector<MethodMap> scorecam(Capture& capture) {
  const at::Tensor x = capture.input();
  const int64_t height = x.size(2), width = x.size(3);
  const int64_t chunk = std::max(1, capture.params().sample_batch);
  std::vector<MethodMap> maps;
  for (size_t i = 0; i < capture.layers().size(); ++i) {
    const at::Tensor a = method_util::feature_map(capture, i);
    const int64_t k = a.size(1);
    std::vector<at::Tensor> per_image;
    for (int64_t j = 0; j < a.size(0); ++j) {
      std::vector<at::Tensor> scores;
      for (int64_t start = 0; start < k; start += chunk) {
        const int64_t end = std::min(k, start + chunk);
        at::Tensor h =
            normalize_per_image(upsample(a[j].slice(0, start, end), height, width));  // [c,H,W]
        // No autograd needed: the model's frozen inference module (about twice
        // as fast on CPU as the instrumented graph); logits come back on the CPU.
        const Score score = capture.params().score.value_or(Score{ScoreKind::kProbability, false});
        scores.push_back(capture
                             .variant_scores(j, x[j].unsqueeze(0) * h.unsqueeze(1),
                                             capture.classes()[j], score)
                             .to(a.device()));
      }
      at::Tensor s = at::cat(scores).view({k, 1, 1});
      per_image.push_back(at::relu((s * a[j]).sum(0)));
    }
    maps.push_back({capture.layers()[i], at::stack(per_image)});
  }
  return maps;
}

}  // namespace cnnviz::methods
