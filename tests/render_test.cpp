// Rendering without LibTorch (render.h) against the LibTorch formulas the
// maps were drawn with before: the same normalization, bilinear upsampling
// and 8-bit rounding; and the properties of overlays and sheets.
#include "cnnviz/io/render.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <set>
#include <tuple>

#include "cnnviz/methods/methods.h"
#include "test_util.h"

namespace cnnviz {
namespace {

FloatArray random_map(std::vector<int64_t> shape, int seed) {
  at::manual_seed(seed);
  at::Tensor t = at::randn(shape);
  return {shape, std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + t.numel())};
}

at::Tensor tensor_of(const FloatArray& a) {
  return at::from_blob(const_cast<float*>(a.data.data()), a.shape, at::kFloat).clone();
}

TEST(RenderTest, NormalizedMapIsLibTorchsUpsampling) {
  for (auto [h, w, size] : {std::tuple{13, 13, 224}, std::tuple{7, 7, 224}, std::tuple{6, 9, 50},
                            std::tuple{224, 224, 224}, std::tuple{1, 1, 8}}) {
    const FloatArray m = random_map({h, w}, h * 31 + w);
    const cv::Mat got = normalize_map(m, map_range(m), size, size);
    const at::Tensor norm = normalize_per_image(tensor_of(m).unsqueeze(0));
    const at::Tensor want = upsample(norm, size, size)[0].clamp(0.0, 1.0);
    ASSERT_EQ(got.rows, size);
    const at::Tensor ours = at::from_blob(got.data, {size, size}, at::kFloat);
    EXPECT_LE((ours - want).abs().max().item<float>(), 1e-6f) << h << "x" << w << " -> " << size;
  }
  // A constant map carries no location: zeros.
  FloatArray flat{{3, 3}, std::vector<float>(9, 2.5f)};
  EXPECT_EQ(cv::countNonZero(normalize_map(flat, map_range(flat), 16, 16)), 0);
}

TEST(RenderTest, EightBitsRoundHalfToEvenAsLibTorch) {
  cv::Mat v(1, 512, CV_32FC1);
  for (int i = 0; i < 512; ++i)
    v.at<float>(0, i) = (static_cast<float>(i) - 128.0f) / 255.0f / 1.5f;
  v.at<float>(0, 0) = 0.5f / 255.0f;  // exactly half: 0 (even)
  v.at<float>(0, 1) = 1.5f / 255.0f;  // 2
  const cv::Mat got = to_gray8(v);
  const at::Tensor t = at::from_blob(v.data, {512}, at::kFloat);
  const at::Tensor want = (t.clamp(0.0, 1.0) * 255.0).round().to(at::kByte);
  for (int i = 0; i < 512; ++i) {
    EXPECT_EQ(got.at<uint8_t>(0, i), want[i].item<uint8_t>()) << i << ": " << v.at<float>(0, i);
  }
}

// Captum's cumulative-sum threshold, from sorted tensors.
float threshold_of(const at::Tensor& values) {
  const at::Tensor sorted = std::get<0>(values.flatten().to(at::kDouble).sort());
  const at::Tensor cumulative = sorted.cumsum(0);
  const double total = cumulative[-1].item<double>();
  const int64_t at = (cumulative >= total * (100.0 - kOutlierPercent) / 100.0)
                         .nonzero()[0][0]
                         .item<int64_t>();
  return static_cast<float>(sorted[at].item<double>());
}

TEST(RenderTest, OutlierThresholdKeepsAllButTheTopTwoPercentOfTheMass) {
  // A value holding most of the mass sets the scale itself.
  std::vector<float> values(98, 1.0f);
  values.push_back(1000.0f);
  EXPECT_EQ(outlier_threshold(values), 1000.0f);
  // 9,900 ones and 10 values of 10 (1% of the mass): the ones set the scale,
  // and the 10s saturate.
  std::vector<float> spiky(9900, 1.0f);
  for (int i = 0; i < 10; ++i) spiky.push_back(10.0f);
  EXPECT_EQ(outlier_threshold(spiky), 1.0f);
  std::vector<float> even(1000, 1.0f);
  EXPECT_EQ(outlier_threshold(even), 1.0f);
  std::vector<float> ramp;
  for (int i = 1; i <= 100; ++i) ramp.push_back(static_cast<float>(i));
  // sum 5050; 98% is 4949; 1 + ... + 99 = 4950 reaches it at 99.
  EXPECT_EQ(outlier_threshold(ramp), 99.0f);
  EXPECT_EQ(outlier_threshold({}), 0.0f);
  EXPECT_EQ(outlier_threshold({0.0f, 0.0f}), 0.0f);
}

TEST(RenderTest, RescaleClipsTheOutliers) {
  const FloatArray g = random_map({3, 20, 30}, 3);
  const at::Tensor m = tensor_of(g);
  auto to8 = [](const at::Tensor& x) { return (x.clamp(0.0, 1.0) * 255.0).round().to(at::kByte); };
  const at::Tensor w = at::tensor({0.299f, 0.587f, 0.114f}).view({3, 1, 1});
  const float p = threshold_of(m.masked_select(m > 0));
  const float n = threshold_of(-m.masked_select(m < 0));
  for (Rescale mode : {Rescale::kAll, Rescale::kPos, Rescale::kNeg}) {
    at::Tensor want;
    switch (mode) {
      case Rescale::kAll:
        want = (m + n) / (p + n);
        break;
      case Rescale::kPos:
        want = m.clamp_min(0) / p;
        break;
      case Rescale::kNeg:
        want = (-m).clamp_min(0) / n;
        break;
    }
    want = want.clamp(0.0, 1.0);
    const RescaledMap got = rescale_gradient(g, mode);
    EXPECT_FALSE(got.degenerate);
    const at::Tensor rgb = at::from_blob(got.rgb.data, {20, 30, 3}, at::kByte).permute({2, 0, 1});
    const at::Tensor gray = at::from_blob(got.gray.data, {20, 30}, at::kByte);
    EXPECT_LE((rgb.to(at::kInt) - to8(want).to(at::kInt)).abs().max().item<int>(), 1)
        << rescale_name(mode);
    EXPECT_LE((gray.to(at::kInt) - to8((want * w).sum(0)).to(at::kInt)).abs().max().item<int>(), 1)
        << rescale_name(mode);
  }
  // No negative values: the neg rescaling has nothing to show.
  FloatArray pos{{3, 2, 2}, std::vector<float>(12, 1.0f)};
  pos.data[3] = 2.0f;
  const RescaledMap neg = rescale_gradient(pos, Rescale::kNeg);
  EXPECT_TRUE(neg.degenerate);
  EXPECT_EQ(cv::countNonZero(neg.gray), 0);
}

TEST(RenderTest, ContactSheetsBalanceTheirRowsUnderATitle) {
  std::vector<std::pair<std::string, cv::Mat>> tiles;
  for (int i = 0; i < 13; ++i) {
    tiles.emplace_back("layer" + std::to_string(i), cv::Mat(40, 50, CV_8UC3, cv::Scalar(i, 0, 0)));
  }
  // 13 at most 6 wide: 5, 5 and 3 rather than 6, 6 and a lone tile.
  const cv::Mat plain = contact_sheet(tiles, 6);
  EXPECT_EQ(plain.cols, 5 * 50);
  EXPECT_EQ(plain.rows, 3 * (40 + 22));
  const cv::Mat titled = contact_sheet(tiles, 6, "cat.jpg  gradcam  281 tabby 40.0%");
  EXPECT_EQ(titled.rows, plain.rows + 30);
  EXPECT_GT(cv::countNonZero(255 - titled.rowRange(0, 30).reshape(1)), 0) << "no title drawn";
  EXPECT_EQ(contact_sheet({tiles.begin(), tiles.begin() + 12}, 6).cols, 6 * 50);
}

TEST(RenderTest, FullOverlayChangesOnlyTheCrop) {
  cv::Mat source(120, 300, CV_8UC3);
  cv::randu(source, 0, 255);
  Preprocessing p;
  p.resize = p.crop = 40;
  const CropBox box = crop_box(source.cols, source.rows, p);  // 100x40, crop at x 30..70
  const SourceView view = make_source_view(source, box);
  EXPECT_EQ(view.network_rgb.size(), cv::Size(40, 40));
  EXPECT_EQ(view.crop_in_source, cv::Rect(90, 0, 120, 120));
  const cv::Mat map(40, 40, CV_8UC1, cv::Scalar(255));
  const cv::Mat out = overlay_on_source(view, map, Colormap("jet"), 0.5);
  ASSERT_EQ(out.size(), source.size());
  cv::Mat diff;
  cv::absdiff(out, source, diff);
  cv::Mat changed;
  cv::cvtColor(diff, changed, cv::COLOR_RGB2GRAY);
  EXPECT_EQ(cv::countNonZero(changed(cv::Rect(0, 0, 90, 120))), 0);
  EXPECT_EQ(cv::countNonZero(changed(cv::Rect(210, 0, 90, 120))), 0);
  EXPECT_GT(cv::countNonZero(changed(view.crop_in_source)), 120 * 120 / 2);
  // Fully transparent heat leaves the image as it was.
  EXPECT_EQ(cv::norm(overlay_on_source(view, map, Colormap("jet"), 0.0), source, cv::NORM_INF), 0);
}

TEST(RenderTest, ColormapsAreOpenCVsInRgb) {
  cv::Mat ramp(1, 256, CV_8UC1);
  for (int i = 0; i < 256; ++i) ramp.at<uint8_t>(0, i) = static_cast<uint8_t>(i);
  for (const std::string& name : colormap_names()) {
    const cv::Mat rgb = Colormap(name).apply(ramp);
    EXPECT_EQ(rgb.size(), ramp.size()) << name;
    std::set<std::tuple<int, int, int>> colours;
    for (int i = 0; i < 256; ++i) {
      const cv::Vec3b c = rgb.at<cv::Vec3b>(0, i);
      colours.insert({c[0], c[1], c[2]});
    }
    EXPECT_GT(colours.size(), 32u) << name;
  }
  cv::Mat bgr;
  cv::applyColorMap(ramp, bgr, cv::COLORMAP_TURBO);
  cv::Mat rgb = Colormap("turbo").apply(ramp), back;
  cv::cvtColor(rgb, back, cv::COLOR_RGB2BGR);
  EXPECT_EQ(cv::norm(back, bgr, cv::NORM_INF), 0);
  test::expect_error([] { Colormap("nope"); }, ErrorCode::kUsage, "viridis");
}

}  // namespace
}  // namespace cnnviz
