// Feature visualization: images optimized to excite what a network computes
// (a channel, a neuron, a class), deep dream, representation inversion, and
// the dataset images that excite each channel most. See docs/guide.md, "Feature
// visualization", for the definitions, defaults and measured quality.
#ifndef CNNVIZ_CORE_SYNTHESIS_H_
#define CNNVIZ_CORE_SYNTHESIS_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cnnviz/core/engine.h"
#include "cnnviz/core/model.h"

namespace cnnviz {

// How the optimized images are parameterized (Olah et al., "Feature
// Visualization", 2017; Mordvintsev et al., "Differentiable Image
// Parameterizations", 2018):
//   kPixel  p [N,3,S,S], lin = p
//   kFft    p [N,3,S,S/2+1,2] (real, imaginary), lin = irfft2(p * scale,
//           ortho) / 4 with scale = 1 / max(f, 1/S) at frequency f: every
//           frequency starts with the same energy, as in natural images
// then, with `decorrelate`, colours are mixed by the square root of
// ImageNet's colour covariance (Lucid's matrix, each column scaled by the
// largest column norm), and the image is sigmoid(lin) in [0,1].
enum class ParamKind { kPixel, kFft };

struct ParamOptions {
  ParamKind kind = ParamKind::kFft;
  bool decorrelate = true;
  int size = 128;         // the square image's side, in pixels
  double init_sd = 0.01;  // the standard deviation of p's random start
};

// "pixel", "fft". parse_param_kind throws Error(kUsage) for anything else.
const char* param_kind_name(ParamKind kind);
ParamKind parse_param_kind(const std::string& text);

// p's shape for n images, and a random start (normal, init_sd) drawn from
// `seed` with LibTorch's CPU generator.
std::vector<int64_t> param_shape(const ParamOptions& options, int64_t n);
at::Tensor init_param(const ParamOptions& options, int64_t n, uint64_t seed);
// The images [N,3,S,S] in [0,1], differentiable in p.
at::Tensor param_images(const at::Tensor& p, const ParamOptions& options);

// Robustness transforms, drawn anew at each step and applied to every image
// of the batch alike (Lucid's standard set): pad by 12 with grey 0.5, jitter
// (a random crop 8 smaller), scale by 1 + (i - 5) / 50 (i = 0..10; bilinear,
// to ceil(S * s)), rotate by -10..10 degrees (bilinear, zeros outside), and
// jitter by 4.
struct TransformSet {
  bool jitter = true, scale = true, rotate = true;
  bool any() const { return jitter || scale || rotate; }
};
// Parses "jitter,scale,rotate" (any subset, any order) or "none"; throws
// Error(kUsage) naming the unknown entry.
TransformSet parse_transforms(const std::string& text);
std::string transforms_text(const TransformSet& set);

// The random choices of one step.
struct TransformDraw {
  int pad = 0;
  int jitter1 = 0, oy1 = 0, ox1 = 0;  // crop `jitter1` smaller at (oy1, ox1)
  double scale = 1.0;
  double angle = 0.0;  // degrees
  int jitter2 = 0, oy2 = 0, ox2 = 0;
};
TransformDraw draw_transforms(const TransformSet& set, std::mt19937_64& rng);
at::Tensor apply_transforms(const at::Tensor& images, const TransformDraw& draw);

// Images in [0,1] as the model's input: normalized with its mean and std; a
// 1-channel model gets the luma (0.299 R + 0.587 G + 0.114 B).
at::Tensor model_input(const at::Tensor& images, const Preprocessing& pre);
// The inverse, for inputs [N,C,H,W] of the model: images in [0,1] (grey
// inputs repeated to 3 channels), clamped.
at::Tensor input_images(const at::Tensor& input, const Preprocessing& pre);

// Priors on the untransformed images x in [0,1], per image (all means over
// the image's values):
//   l2    mean((x - 0.5)^2)
//   tv    mean of squared differences of vertical neighbours + the same of
//         horizontal ones
//   blur  mean((x - B x)^2), B the separable [1/4, 1/2, 1/4] blur with
//         replicated edges
// each weighed and added to the loss.
struct Priors {
  double l2 = 0, tv = 0, blur = 0;
};
at::Tensor prior_terms(const at::Tensor& images, const Priors& priors);  // [N]

// What row n of the batch maximizes, obj_n:
//   kChannel  the mean of channel units[n] of `layer`'s output read as a map
//   kNeuron   that channel at the map's centre (h / 2, w / 2)
//   kClass    logit units[n]
//   kInvert   -|A_n - T_n|^2 / |T_n|^2, A_n the layer's map, T_n target[n]
//             (layers[n] per row when given: --all-layers)
// The loss is sum_n (-obj_n + priors_n).
enum class ObjectiveKind { kChannel, kNeuron, kClass, kInvert };

struct Objective {
  ObjectiveKind kind = ObjectiveKind::kChannel;
  std::vector<std::string> layers;  // one, or one per row
  std::vector<int64_t> units;       // per row: channel or class
  std::vector<at::Tensor> targets;  // kInvert: per row, [C,h,w]
};

// The engine an objective needs: its layers kept attached, stopping after
// the last one unless the objective needs the logits.
Engine objective_engine(const Model& model, const Objective& objective);

// obj [N] from a pass of that engine, attached to the autograd graph.
at::Tensor objective_values(const Pass& pass, const Engine& engine, const Objective& objective);

// One optimization step's loss and its gradient in p (draw: the transforms,
// none when nullopt). With `redirect`, ReLUs whose gradient is zero for an
// image pass the gradient that would open them (Lucid's redirected ReLU;
// see SynthesisOptions::redirect_relu); without, the gradient is the true
// one, as the eager-PyTorch reference computes it.
struct StepResult {
  double loss = 0;
  at::Tensor objective;  // [N]
  at::Tensor gradient;   // like p
};
StepResult objective_step(const Engine& engine, const Objective& objective, const at::Tensor& p,
                          const ParamOptions& param, const std::optional<TransformDraw>& draw,
                          const Priors& priors, bool redirect = false);

struct SynthesisOptions {
  ParamOptions param;
  TransformSet transforms;
  Priors priors;
  int steps = 256;
  double lr = 0.05;  // Adam's step size
  uint64_t seed = 0;
  int log_every = 16;  // objective history: every this many steps, and the last
  // Redirect dead ReLUs (objective_step) during the first 32 steps: a
  // channel that is zero on the starting image would otherwise never move.
  bool redirect_relu = true;
};

struct SynthesisResult {
  at::Tensor images;                         // [N,3,S,S] in [0,1], CPU
  std::vector<double> final;                 // obj_n of the final images, untransformed
  std::vector<int> log_steps;                // the steps the history logs
  std::vector<std::vector<double>> history;  // per logged step: obj_n (transformed)
  bool interrupted = false;
  double ms = 0;         // the whole optimization, with the final evaluation
  double steady_ms = 0;  // the steps after the first (what a warm loop costs)
};

// Maximizes the objective with Adam for options.steps steps, starting from
// init_param(seed); deterministic on the CPU for a given seed. `on_step`
// (optional) sees each finished step; returning false stops early (an
// interrupted run keeps its images so far).
SynthesisResult synthesize(const Engine& engine, const Objective& objective, int64_t rows,
                           const SynthesisOptions& options,
                           const std::function<bool(int step)>& on_step = {});

// Deep dream (Mordvintsev et al., 2015): gradient ascent on the image itself
// for the mean of the squares of `layer`'s output, octave by octave from
// the smallest (side / octave_scale^(octaves-1)) to the image's own size,
// each octave starting from the image at that size plus the detail the
// smaller ones added; every step shifts the image by a random roll of up to
// `jitter` pixels and moves it by lr times the gradient over its mean
// absolute value, staying within the image range.
struct DreamOptions {
  int octaves = 4;
  double octave_scale = 1.4;
  int steps = 20;  // per octave
  double lr = 0.02;
  int jitter = 16;
  uint64_t seed = 0;
};

struct DreamResult {
  at::Tensor image;                        // [3,H,W] in [0,1], CPU
  double norm_before = 0, norm_after = 0;  // sqrt(mean(A^2)) at the full size
  bool interrupted = false;
};

// image: [3,H,W] in [0,1]. The engine: objective_engine of a kChannel
// objective on the layer (only its layer matters).
DreamResult dream(const Engine& engine, const at::Tensor& image, const DreamOptions& options,
                  const std::function<bool()>& keep_going = {});

// The gradient of the dream objective sum_n mean(A_n^2) in the input [N,C,H,W]
// (model input, normalized) after rolling it by (dy, dx). For tests.
at::Tensor dream_gradient(const Engine& engine, const at::Tensor& input, int64_t dy, int64_t dx,
                          double* objective = nullptr);

// The strongest activations of chosen channels over a dataset: per channel,
// the k largest values of the channel's map maximum over positions, with the
// image and the position. Ties go to the earlier image, then the earlier
// position (row-major). Memory: k entries per channel.
struct TopEntry {
  float value = 0;
  int64_t image = 0;  // index in the run's input list
  int64_t y = 0, x = 0;
};

class TopActivations {
 public:
  TopActivations(std::vector<int64_t> channels, int k);
  // maps: [N,C,h,w] (all channels of the layer), CPU or not; images: the
  // input-list index of each row.
  void add(const at::Tensor& maps, const std::vector<int64_t>& images);
  void add_entry(size_t channel_index, const TopEntry& entry);
  const std::vector<int64_t>& channels() const { return channels_; }
  int k() const { return k_; }
  // Per channel, best first.
  std::vector<std::vector<TopEntry>> sorted() const;

 private:
  std::vector<int64_t> channels_;
  int k_;
  std::vector<std::vector<TopEntry>> heaps_;  // min-heaps by rank
};

// True when a ranks above b (larger value; ties: earlier image, position).
bool ranks_above(const TopEntry& a, const TopEntry& b);

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_SYNTHESIS_H_
