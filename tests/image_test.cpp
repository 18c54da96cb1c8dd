// Reading images (image.h, and files.h's bounded reads): colour layouts and
// depths, truncated and foreign files, limits checked before the expensive
// step (regular files only, sizes, the pixel budget), cnnviz's own decoders
// against OpenCV's, and OpenCV's messages kept off stderr.
#include "cnnviz/io/image.h"

#include "cnnviz/io/png.h"
#include "io/image_size.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>

#include "cnnviz/io/files.h"
#include "test_util.h"

namespace cnnviz {
namespace {

class ImageTest : public ::testing::Test {
 protected:
  test::TempDir dir_;
};

TEST_F(ImageTest, ConvertsBgrToRgb) {
  cv::Mat bgr(4, 6, CV_8UC3, cv::Scalar(10, 20, 30));  // B=10 G=20 R=30
  ASSERT_TRUE(cv::imwrite(dir_.file("c.png"), bgr));
  cv::Mat rgb = read_image_rgb(dir_.file("c.png"));
  ASSERT_EQ(rgb.type(), CV_8UC3);
  EXPECT_EQ(rgb.rows, 4);
  EXPECT_EQ(rgb.cols, 6);
  EXPECT_EQ(rgb.at<cv::Vec3b>(2, 3), cv::Vec3b(30, 20, 10));
}

TEST_F(ImageTest, ReplicatesGrayscale) {
  cv::Mat gray(3, 3, CV_8UC1, cv::Scalar(77));
  ASSERT_TRUE(cv::imwrite(dir_.file("g.png"), gray));
  cv::Mat rgb = read_image_rgb(dir_.file("g.png"));
  EXPECT_EQ(rgb.at<cv::Vec3b>(1, 1), cv::Vec3b(77, 77, 77));
}

TEST_F(ImageTest, DropsAlphaWithoutCompositing) {
  cv::Mat bgra(2, 2, CV_8UC4, cv::Scalar(1, 2, 3, 0));  // fully transparent
  ASSERT_TRUE(cv::imwrite(dir_.file("a.png"), bgra));
  cv::Mat rgb = read_image_rgb(dir_.file("a.png"));
  EXPECT_EQ(rgb.at<cv::Vec3b>(0, 0), cv::Vec3b(3, 2, 1));
}

TEST_F(ImageTest, ScalesSixteenBitSamples) {
  cv::Mat deep(2, 2, CV_16UC3, cv::Scalar(0, 257 * 100, 65535));
  ASSERT_TRUE(cv::imwrite(dir_.file("d.png"), deep));
  cv::Mat rgb = read_image_rgb(dir_.file("d.png"));
  EXPECT_EQ(rgb.at<cv::Vec3b>(0, 0), cv::Vec3b(255, 100, 0));
}

TEST_F(ImageTest, ReadsJpeg) {
  cv::Mat bgr(16, 16, CV_8UC3, cv::Scalar(200, 100, 50));
  ASSERT_TRUE(cv::imwrite(dir_.file("p.jpg"), bgr));
  cv::Mat rgb = read_image_rgb(dir_.file("p.jpg"));
  cv::Vec3b px = rgb.at<cv::Vec3b>(8, 8);
  EXPECT_NEAR(px[0], 50, 3);
  EXPECT_NEAR(px[2], 200, 3);
}

TEST_F(ImageTest, RejectsTruncatedJpeg) {
  cv::Mat noise(64, 64, CV_8UC3);
  cv::randu(noise, 0, 255);
  ASSERT_TRUE(cv::imwrite(dir_.file("full.jpg"), noise));
  std::string bytes = test::read_text(dir_.file("full.jpg"));
  test::write_text(dir_.file("cut.jpg"), bytes.substr(0, bytes.size() / 2));
  test::expect_error([&] { read_image_rgb(dir_.file("cut.jpg")); }, ErrorCode::kInput,
                     "image '" + dir_.file("cut.jpg") + "': truncated JPEG");
}

TEST_F(ImageTest, RejectsTruncatedPng) {
  cv::Mat noise(64, 64, CV_8UC3);
  cv::randu(noise, 0, 255);
  ASSERT_TRUE(cv::imwrite(dir_.file("full.png"), noise));
  std::string bytes = test::read_text(dir_.file("full.png"));
  test::write_text(dir_.file("cut.png"), bytes.substr(0, bytes.size() / 2));
  test::expect_error([&] { read_image_rgb(dir_.file("cut.png")); }, ErrorCode::kInput,
                     "corrupt or truncated");
}

TEST_F(ImageTest, RejectsFilesThatAreNoImages) {
  test::write_text(dir_.file("empty.png"), "");
  test::expect_error([&] { read_image_rgb(dir_.file("empty.png")); }, ErrorCode::kInput,
                     "empty file");
  test::write_text(dir_.file("text.png"), "hello, I am not a picture\n");
  test::expect_error([&] { read_image_rgb(dir_.file("text.png")); }, ErrorCode::kInput,
                     "not an image");
  test::expect_error([&] { read_image_rgb(dir_.file("missing.jpg")); }, ErrorCode::kInput,
                     "image '" + dir_.file("missing.jpg") + "': not found");
  test::expect_error([&] { read_image_rgb(dir_.path()); }, ErrorCode::kInput, "is a directory");
}

TEST_F(ImageTest, RejectsUnreadableFile) {
  if (geteuid() == 0) GTEST_SKIP() << "running as root: file permissions do not apply";
  cv::Mat px(2, 2, CV_8UC3, cv::Scalar(1, 2, 3));
  ASSERT_TRUE(cv::imwrite(dir_.file("locked.png"), px));
  std::filesystem::permissions(dir_.file("locked.png"), std::filesystem::perms::none);
  test::expect_error([&] { read_image_rgb(dir_.file("locked.png")); }, ErrorCode::kInput,
                     "Permission denied");
}

// Limits on what is read (sizes, file types, the pixel budget) and the
// decoders, each in a fresh directory as ImageTest.
class ImageLimitsTest : public ImageTest {};
class ImageDecodingTest : public ImageTest {};

TEST_F(ImageLimitsTest, OnlyRegularFilesOfBoundedSizeAreRead) {
  const std::string fifo = dir_.file("pipe.png");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0644), 0);
  const auto start = std::chrono::steady_clock::now();
  test::expect_error([&] { read_file(fifo, "image", 1000); }, ErrorCode::kInput,
                     "image '" + fifo + "': not a regular file");
  test::expect_error([&] { read_image_rgb(fifo); }, ErrorCode::kInput, "not a regular file");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2)) << "it blocked";
  // A 5 GiB sparse file is refused by its size, not read.
  const std::string sparse = dir_.file("sparse.jpg");
  const int fd = ::open(sparse.c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, int64_t{5} << 30), 0);
  ::close(fd);
  test::expect_error([&] { read_image_rgb(sparse); }, ErrorCode::kInput, "too large");
  test::write_text(dir_.file("small"), "12345");
  test::expect_error([&] { read_file(dir_.file("small"), "list file", 4); }, ErrorCode::kInput,
                     "list file '" + dir_.file("small") + "': too large");
  EXPECT_EQ(read_file(dir_.file("small"), "x", 5).size(), 5u);
}

// A PNG whose IHDR declares w x h (its data need not be complete: the size
// is refused before decoding).
std::string png_header(uint32_t w, uint32_t h) {
  std::vector<uint8_t> d = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n',
                            0,    0,   0,   13,  'I',  'H',  'D',  'R'};
  for (uint32_t v : {w, h}) {
    for (int s = 24; s >= 0; s -= 8) d.push_back(static_cast<uint8_t>(v >> s));
  }
  d.insert(d.end(), {1, 0, 0, 0, 0, 0, 0, 0, 0});
  return std::string(d.begin(), d.end());
}

TEST_F(ImageLimitsTest, PixelBudgetIsCheckedBeforeDecoding) {
  test::write_text(dir_.file("huge.png"), png_header(32000, 32000));
  test::expect_error([&] { read_image_rgb(dir_.file("huge.png")); }, ErrorCode::kInput,
                     "32000x32000 pixels, more than the budget of 200000000 (--max-pixels)");
  // A JPEG whose frame header claims 30000x30000.
  cv::Mat small(16, 16, CV_8UC3, cv::Scalar(10, 200, 30));
  std::vector<uint8_t> jpeg;
  ASSERT_TRUE(cv::imencode(".jpg", small, jpeg));
  for (size_t i = 0; i + 8 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xC0) {
      jpeg[i + 5] = jpeg[i + 7] = 30000 >> 8;
      jpeg[i + 6] = jpeg[i + 8] = 30000 & 0xFF;
      break;
    }
  }
  test::expect_error([&] { decode_image_rgb(jpeg, "big.jpg"); }, ErrorCode::kInput,
                     "image 'big.jpg': 30000x30000 pixels");
  // The budget is the caller's.
  cv::Mat photo(300, 400, CV_8UC3, cv::Scalar(1, 2, 3));
  ASSERT_TRUE(cv::imwrite(dir_.file("photo.png"), photo));
  EXPECT_NO_THROW(read_image_rgb(dir_.file("photo.png"), 120000));
  test::expect_error([&] { read_image_rgb(dir_.file("photo.png"), 119999); }, ErrorCode::kInput,
                     "400x300 pixels, more than the budget of 119999");
}

TEST_F(ImageDecodingTest, CorruptJpegDataIsRefusedNotGreyFilled) {
  cv::Mat noise(240, 320, CV_8UC3);
  cv::randu(noise, 0, 255);
  std::vector<uint8_t> jpeg;
  ASSERT_TRUE(cv::imencode(".jpg", noise, jpeg));
  // Cut in half, with an end-of-image marker added to look complete.
  std::vector<uint8_t> fake(jpeg.begin(), jpeg.begin() + static_cast<long>(jpeg.size() / 2));
  fake.insert(fake.end(), {0xFF, 0xD9});
  test::expect_error([&] { decode_image_rgb(fake, "fake.jpg"); }, ErrorCode::kInput,
                     "image 'fake.jpg': corrupt or truncated JPEG data (Corrupt JPEG data");
  // Cut in half, as a download that stopped.
  const std::vector<uint8_t> cut(jpeg.begin(), jpeg.begin() + static_cast<long>(jpeg.size() / 2));
  test::expect_error([&] { decode_image_rgb(cut, "cut.jpg"); }, ErrorCode::kInput,
                     "image 'cut.jpg': truncated JPEG (the data ends before the end-of-image "
                     "marker)");
  // A motion photo: a video after the end-of-image marker is not the JPEG's.
  std::vector<uint8_t> motion = jpeg;
  for (int i = 0; i < 100000; ++i) motion.push_back(static_cast<uint8_t>(i * 7));
  EXPECT_EQ(cv::norm(decode_image_rgb(jpeg, "a.jpg"), decode_image_rgb(motion, "motion.jpg"),
                     cv::NORM_INF),
            0);
  // Extraneous bytes before a marker change no pixel: accepted, as PIL does.
  std::vector<uint8_t> padded(jpeg.begin(), jpeg.end() - 2);
  padded.insert(padded.end(), {0x00, 0x00, 0x00, 0xFF, 0xD9});
  cv::Mat a = decode_image_rgb(jpeg, "a.jpg"), b = decode_image_rgb(padded, "b.jpg");
  EXPECT_EQ(cv::norm(a, b, cv::NORM_INF), 0);
}

// The formats OpenCV decodes have their size read by cnnviz from the header,
// so the pixel budget holds before OpenCV allocates (its own limit is fixed
// when the library loads).
TEST_F(ImageDecodingTest, EveryFormatsSizeIsCheckedFromItsHeader) {
  cv::Mat colour(37, 53, CV_8UC3), grey(37, 53, CV_8UC1);
  cv::randu(colour, 0, 255);
  cv::randu(grey, 0, 255);
  std::vector<std::pair<std::string, std::vector<uint8_t>>> files;
  for (const char* ext : {".bmp", ".tif", ".webp", ".ppm", ".jp2"}) {
    std::vector<uint8_t> bytes;
    ASSERT_TRUE(cv::imencode(ext, colour, bytes)) << ext;
    files.emplace_back(ext, bytes);
  }
  std::vector<uint8_t> lossy, pgm;
  ASSERT_TRUE(cv::imencode(".webp", colour, lossy, {cv::IMWRITE_WEBP_QUALITY, 80}));
  files.emplace_back("lossy.webp", lossy);
  ASSERT_TRUE(cv::imencode(".pgm", grey, pgm));
  const std::string comment = "P5\n# a comment 99 99\n53 37\n255\n";
  pgm.erase(pgm.begin(), pgm.end() - 53 * 37);
  pgm.insert(pgm.begin(), comment.begin(), comment.end());
  files.emplace_back("commented.pgm", pgm);
  for (const auto& [name, bytes] : files) {
    SCOPED_TRACE(name);
    const std::optional<DeclaredSize> size = declared_size(bytes);
    ASSERT_TRUE(size.has_value());
    EXPECT_EQ(size->width, 53);
    EXPECT_EQ(size->height, 37);
    EXPECT_EQ(decode_image_rgb(bytes, name, 53 * 37).size(), cv::Size(53, 37));
    test::expect_error([&] { decode_image_rgb(bytes, name, 53 * 37 - 1); }, ErrorCode::kInput,
                       "53x37 pixels, more than the budget of 1960 (--max-pixels)");
  }
  // A BMP header declaring 20000x20000 pixels in a 1 KB file.
  std::vector<uint8_t> bmp = files[0].second;
  bmp.resize(1024);
  for (int i = 0; i < 4; ++i) bmp[18 + i] = bmp[22 + i] = static_cast<uint8_t>((20000 >> (8 * i)) & 0xFF);
  test::expect_error([&] { decode_image_rgb(bmp, "big.bmp"); }, ErrorCode::kInput,
                     "20000x20000 pixels, more than the budget of 200000000");
}

// Strips and panoramas: libpng's default limit of a million rows or columns
// is not cnnviz's; the pixel budget is.
TEST_F(ImageDecodingTest, PngsOfMoreThanAMillionRowsDecode) {
  cv::Mat strip(2'000'000, 1, CV_8UC3, cv::Scalar(1, 2, 3));
  const cv::Mat rgb = decode_image_rgb(encode_png(strip, PixelOrder::kRgb), "strip.png");
  EXPECT_EQ(rgb.rows, 2'000'000);
  EXPECT_EQ(rgb.at<cv::Vec3b>(1'999'999, 0), cv::Vec3b(1, 2, 3));
}

// cnnviz's own JPEG and PNG decoders give OpenCV's pixels (as RGB), for
// every layout a file can have.
TEST_F(ImageDecodingTest, OwnDecodersMatchOpenCV) {
  cv::RNG rng(5);
  std::vector<std::pair<std::string, std::vector<int>>> cases = {
      {"rgb.jpg", {}},  {"grey.jpg", {}}, {"progressive.jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1}},
      {"rgb.png", {}},  {"grey.png", {}}, {"rgba.png", {}},
      {"deep.png", {}},
  };
  for (const auto& [name, params] : cases) {
    SCOPED_TRACE(name);
    cv::Mat img;
    if (name.rfind("grey", 0) == 0) {
      img.create(37, 53, CV_8UC1);
    } else if (name == "rgba.png") {
      img.create(37, 53, CV_8UC4);
    } else if (name == "deep.png") {
      img.create(37, 53, CV_16UC3);
    } else {
      img.create(37, 53, CV_8UC3);
    }
    rng.fill(img, cv::RNG::UNIFORM, 0, name == "deep.png" ? 65536 : 256);
    const std::string path = dir_.file(name);
    ASSERT_TRUE(cv::imwrite(path, img, params));
    cv::Mat opencv = cv::imread(path, cv::IMREAD_UNCHANGED), want;
    if (opencv.depth() == CV_16U) opencv.convertTo(opencv, CV_8U, 1.0 / 256.0);
    switch (opencv.channels()) {
      case 1:
        cv::cvtColor(opencv, want, cv::COLOR_GRAY2RGB);
        break;
      case 4:
        cv::cvtColor(opencv, want, cv::COLOR_BGRA2RGB);
        break;
      default:
        cv::cvtColor(opencv, want, cv::COLOR_BGR2RGB);
    }
    const cv::Mat got = read_image_rgb(path);
    ASSERT_EQ(got.size(), want.size());
    // 16-bit: OpenCV's convertTo rounds, cnnviz keeps the high byte (Pillow).
    EXPECT_LE(cv::norm(got, want, cv::NORM_INF), name == "deep.png" ? 1 : 0);
  }
}

TEST(CodecMessagesTest, OpenCVsDecodingLinesAreFilteredOut) {
  std::ostringstream sink;
  std::ostream stream(sink.rdbuf());
  filter_codec_messages(stream);
  stream << "imdecode_('x'): can't read data: OpenCV(4.6.0) error\n" << std::endl;
  stream << "cnnviz: image 'x.bmp': not an image\n";
  stream << "\r[####      ] 3/10" << std::flush;
  EXPECT_EQ(sink.str(), "cnnviz: image 'x.bmp': not an image\n\r[####      ] 3/10");
  stream << " imdecode_ in the middle of a line stays\n";
  EXPECT_NE(sink.str().find("imdecode_ in the middle"), std::string::npos);
}

}  // namespace
}  // namespace cnnviz
