// Decoding a detector's raw predictions (core/detections.h) on hand-made
// outputs: the layouts, the strict score threshold, non-maximum suppression
// per class, the cap, the refusals; and the letterbox geometry back to the
// source image.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "cnnviz/core/detections.h"
#include "cnnviz/core/error.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/run/detect.h"

namespace cnnviz {
namespace {

// YOLOv5 rows [cx, cy, w, h, objectness, class 0, class 1] of one image.
at::Tensor v5(std::vector<std::vector<float>> rows) {
  std::vector<float> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  return at::tensor(flat).view({1, static_cast<int64_t>(rows.size()), 7});
}

TEST(DetectionsTest, BoxIouOfOverlappingDisjointAndEmptyBoxes) {
  EXPECT_DOUBLE_EQ(box_iou({0, 0, 2, 2}, {1, 1, 3, 3}), 1.0 / 7);
  EXPECT_DOUBLE_EQ(box_iou({0, 0, 1, 1}, {2, 2, 3, 3}), 0.0);
  EXPECT_DOUBLE_EQ(box_iou({0, 0, 0, 0}, {0, 0, 0, 0}), 0.0);
  EXPECT_DOUBLE_EQ(box_iou({0, 0, 4, 4}, {0, 0, 4, 4}), 1.0);
}

TEST(DetectionsTest, SuppressesOverlapsOfTheSameClassOnly) {
  const at::Tensor raw = v5({{10, 10, 4, 4, 1.0f, 0.9f, 0.1f},    // best of class 0
                             {10.5f, 10, 4, 4, 1.0f, 0.8f, 0.1f},  // overlaps it: dropped
                             {10, 10, 4, 4, 1.0f, 0.1f, 0.7f},     // same place, class 1: kept
                             {30, 30, 4, 4, 0.5f, 0.6f, 0.0f},     // 0.3 > 0.25: kept
                             {50, 50, 4, 4, 0.5f, 0.5f, 0.0f}});   // 0.25, not above: dropped
  const auto found = decode_detections(raw, DetectLayout::kYolov5, 2, DetectSettings{}, "m.pt");
  ASSERT_EQ(found.size(), 1u);
  ASSERT_EQ(found[0].size(), 3u);
  EXPECT_EQ(found[0][0].anchor, 0);
  EXPECT_EQ(found[0][1].anchor, 2);
  EXPECT_EQ(found[0][1].label, 1);
  EXPECT_EQ(found[0][2].anchor, 3);
  EXPECT_NEAR(found[0][2].score, 0.3, 1e-7);
  EXPECT_DOUBLE_EQ(found[0][0].x1, 8);
  EXPECT_DOUBLE_EQ(found[0][0].y2, 12);
  DetectSettings one;
  one.max_detections = 1;
  EXPECT_EQ(decode_detections(raw, DetectLayout::kYolov5, 2, one, "m.pt")[0].size(), 1u);
}

TEST(DetectionsTest, ReadsYolov8AsClassRowsOverAnchorColumns) {
  // [1, 4+2, 2]: anchor 0 scores class 1 at 0.6, anchor 1 nothing above 0.25.
  const at::Tensor raw =
      at::tensor(std::vector<float>{20, 40, 30, 40, 4, 4, 8, 8, 0.1f, 0.2f, 0.6f, 0.2f})
          .view({1, 6, 2});
  const auto found = decode_detections(raw, DetectLayout::kYolov8, 2, DetectSettings{}, "m.pt");
  ASSERT_EQ(found[0].size(), 1u);
  EXPECT_EQ(found[0][0].label, 1);
  EXPECT_NEAR(found[0][0].score, 0.6, 1e-7);
  EXPECT_DOUBLE_EQ(found[0][0].x1, 18);
  EXPECT_DOUBLE_EQ(found[0][0].y2, 34);
}

TEST(DetectionsTest, AnOutputThatDoesNotFitTheLayoutIsNamed) {
  const at::Tensor raw = at::zeros({1, 84, 8400});
  try {
    decode_detections(raw, DetectLayout::kYolov5, 80, DetectSettings{}, "yolo.pt");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kModel);
    EXPECT_STREQ(e.what(), "model 'yolo.pt': its output [1, 84, 8400] does not fit layout yolov5 "
                           "([N, A, 5+C] with C = 80 classes)");
  }
  EXPECT_NO_THROW(decode_detections(raw, DetectLayout::kYolov8, 80, DetectSettings{}, "yolo.pt"));
  EXPECT_THROW(decode_detections(at::zeros({1, 4, 10}), DetectLayout::kYolov8, INT64_MAX,
                                 DetectSettings{}, "yolo.pt"),
               Error);
}

TEST(DetectionsTest, LetterboxGeometryMapsBoxesBackToTheSource) {
  Preprocessing p;
  p.resize = 64;
  p.crop = 0;
  p.letterbox = true;
  const CropBox box = crop_box(200, 100, p);  // 64 x 32, 16 rows of grey above
  EXPECT_EQ(box.resized_w, 64);
  EXPECT_EQ(box.resized_h, 32);
  EXPECT_EQ(box.left, 0);
  EXPECT_EQ(box.top, -16);
  EXPECT_EQ(box.width, 64);
  EXPECT_EQ(box.height, 64);
  EXPECT_EQ(crop_box(101, 200, p).resized_w, 32);  // 101 * 64 / 200 = 32.32
  const Detection d = to_source(Detection{16, 16, 48, 56, 0.5, 0, 0}, box);
  EXPECT_DOUBLE_EQ(d.x1, 50);
  EXPECT_DOUBLE_EQ(d.y1, 0);
  EXPECT_DOUBLE_EQ(d.x2, 150);
  EXPECT_DOUBLE_EQ(d.y2, 100);  // 40 / 32 * 100 = 125, clipped
  cv::Mat grey(100, 200, CV_8UC3, cv::Scalar(0, 0, 0));
  const at::Tensor x = preprocess(grey, Preprocessing{64, 0, 3, {0, 0, 0}, {1, 1, 1}, true});
  EXPECT_EQ(x.sizes(), (at::IntArrayRef{3, 64, 64}));
  EXPECT_NEAR(x[0][0][0].item<float>(), 114.0f / 255, 1e-7);
  EXPECT_EQ(x[0][32][32].item<float>(), 0.0f);
}

// A box query's target: the detections of its label (any without one)
// overlapping it by IoU >= the threshold (inclusive); an image without
// queries has one target per detection.
TEST(DetectionsTest, BoxQueriesMatchByIouAndLabel) {
  const std::vector<Detection> found = {
      {0, 0, 10, 10, 0.9, 0, 0},   // the query's own box
      {0, 0, 10, 20, 0.8, 1, 1},   // IoU 0.5, another label
      {20, 20, 30, 30, 0.7, 0, 2}  // disjoint
  };
  const BoxQuery any{0, 0, 10, 10, -1};
  EXPECT_EQ(matching_detections(found, any, 0.5), (std::vector<size_t>{0, 1}));
  EXPECT_EQ(matching_detections(found, any, 0.51), (std::vector<size_t>{0}));
  EXPECT_EQ(matching_detections(found, BoxQuery{0, 0, 10, 10, 1}, 0.5), (std::vector<size_t>{1}));
  EXPECT_TRUE(matching_detections(found, BoxQuery{40, 40, 50, 50, -1}, 0.1).empty());
  // A detection reaching into a letterbox's bar matches by its part inside
  // the image: the clipped box `detect` reports matches it. Detection 1
  // clipped to y >= 8 is (0, 8, 10, 20).
  BoxQuery clipped{0, 8, 10, 20, -1};
  EXPECT_EQ(matching_detections(found, clipped, 0.9), (std::vector<size_t>{}));
  clipped.area_y1 = 8;
  clipped.area_x2 = 10;
  EXPECT_EQ(matching_detections(found, clipped, 0.9), (std::vector<size_t>{1}));
  DetectSettings settings;
  settings.queries = {{}, {any, BoxQuery{40, 40, 50, 50, -1}}};
  const DetectionGroups groups = detection_groups({found, found}, settings);
  EXPECT_EQ(groups[0], (std::vector<std::vector<size_t>>{{0}, {1}, {2}}));
  EXPECT_EQ(groups[1], (std::vector<std::vector<size_t>>{{0, 1}, {}}));
  // Scores: the group's sum; an empty group and the padding are `fill`.
  at::Tensor rows = at::zeros({2, 3, 7}, at::kDouble);
  for (int64_t n = 0; n < 2; ++n) {
    for (int64_t a = 0; a < 3; ++a) {
      rows[n][a][4] = 1.0;
      rows[n][a][5 + found[static_cast<size_t>(a)].label] = found[static_cast<size_t>(a)].score;
    }
  }
  const at::Tensor s = detection_scores(rows, {found, found}, groups, -1.0);
  EXPECT_EQ(s.sizes(), (at::IntArrayRef{2, 3}));
  EXPECT_NEAR(s[0][2].item<double>(), 0.7, 1e-12);
  EXPECT_NEAR(s[1][0].item<double>(), 1.7, 1e-12);
  EXPECT_EQ(s[1][1].item<double>(), -1.0);
  EXPECT_EQ(s[1][2].item<double>(), -1.0);
}

}  // namespace
}  // namespace cnnviz
