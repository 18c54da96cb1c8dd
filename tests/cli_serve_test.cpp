// `cnnviz serve`: the JSON API of a server the test starts on a free
// loopback port, against the CLI's own results, and its safety: traversal,
// uploads, tokens, the Host check, the bounded queue, cancellation, and a
// clean stop on SIGTERM.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <thread>

#include "cnnviz/io/label_map.h"
#include "cnnviz/io/npy.h"
#include "map_util.h"
#include "test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace cnnviz::test {
namespace {

// Two photos-like images unlike each other, one in a subdirectory, and a
// link out of the directory to an image beside it.
void make_images(const std::string& root, const std::string& dir) {
  fs::create_directories(dir + "/sub");
  cv::Mat a(180, 240, CV_8UC3), b(200, 200, CV_8UC3);
  for (int y = 0; y < a.rows; ++y) {
    for (int x = 0; x < a.cols; ++x) {
      a.at<cv::Vec3b>(y, x) = cv::Vec3b(x, y, (x * y) % 256);
    }
  }
  b.setTo(cv::Scalar(20, 90, 200));
  cv::circle(b, {100, 100}, 60, cv::Scalar(230, 90, 20), -1);
  cv::imwrite(dir + "/gradient.png", a);
  cv::imwrite(dir + "/sub/disc.png", b);
  cv::imwrite(root + "/outside.png", b);
  fs::create_symlink(root + "/outside.png", dir + "/link.png");
}

// A server process on a free loopback port; stopped with SIGTERM.
class ServerProcess {
 public:
  ServerProcess(const TempDir& work, const std::string& name, std::vector<std::string> args,
                std::map<std::string, std::string> env = {}) {
    dir_ = work.file(name);
    fs::create_directories(dir_);
    std::vector<std::string> argv = {cnnviz_bin(), "serve", "--port", "0", "--threads", "1"};
    argv.insert(argv.end(), args.begin(), args.end());
    env.emplace("CNNVIZ_MODEL", "");
    env.emplace("CNNVIZ_MODELS", "");
    env.emplace("XDG_CONFIG_HOME", "/nonexistent/cnnviz-test-config");
    env.emplace("XDG_DATA_HOME", "/nonexistent/cnnviz-test-data");
    pid_ = start(argv, dir_, env);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      const std::string out = read_text(dir_ + "/stdout");
      if (out.find('\n') != std::string::npos) {
        url_ = out.substr(0, out.find('\n'));
        break;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        ADD_FAILURE() << "server exited: " << read_text(dir_ + "/stderr");
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const size_t colon = url_.rfind(':');
    port_ = std::stoi(url_.substr(colon + 1));
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // SIGTERM, then the exit status and output.
  RunResult stop() {
    kill(pid_, SIGTERM);
    RunResult r = finish(pid_, dir_);
    pid_ = -1;
    return r;
  }
  const std::string& url() const { return url_; }
  int port() const { return port_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(120, 0);
    return c;
  }

 private:
  std::string dir_, url_;
  int pid_ = -1;
  int port_ = 0;
};

json body_json(const httplib::Result& r) {
  if (!r) return json();
  return json::parse(r->body, nullptr, false);
}

// A raw request line, for paths a client library would clean up.
std::string raw_get(int port, const std::string& target) {
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get(target.c_str());
  return r ? std::to_string(r->status) : "no response";
}

// The u8 bytes /api/map serves for `query` (format=u8 added) equal the
// command line's _gray.png `gray_png` of the same map, up to float
// summation order (the CLI and the server may use other thread counts): at
// most one level apart, on few pixels.
void expect_served_gray(const ServerProcess& server, const std::string& query,
                        const std::string& gray_png) {
  auto u8 = server.client().Get(("/api/map?" + query + "&format=u8").c_str());
  ASSERT_TRUE(u8);
  ASSERT_EQ(u8->status, 200) << u8->body;
  const cv::Mat gray = cv::imread(gray_png, cv::IMREAD_GRAYSCALE);
  ASSERT_FALSE(gray.empty()) << gray_png;
  ASSERT_EQ(u8->get_header_value("X-Map-Width"), std::to_string(gray.cols));
  ASSERT_EQ(u8->body.size(), gray.total());
  const cv::Mat served_u8(gray.rows, gray.cols, CV_8UC1, u8->body.data());
  EXPECT_LE(cv::norm(served_u8, gray, cv::NORM_INF), 1) << query;
  cv::Mat differ;
  cv::compare(served_u8, gray, differ, cv::CMP_NE);
  EXPECT_LT(cv::countNonZero(differ), static_cast<int>(gray.total() / 100)) << query;
}

class CliServeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work_ = new TempDir();
    make_images(work_->path(), work_->file("images"));
    server_ = new ServerProcess(
        *work_, "main",
        {"-m", squeezenet_path(), "--models-dir", test_models_dir(), "--max-upload-mb", "1",
         "--max-pixels", "1000000", work_->file("images")});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete work_;
  }
  static json get(const std::string& path, int expect = 200) {
    auto r = server_->client().Get(path.c_str());
    EXPECT_TRUE(r) << path;
    if (!r) return json();
    EXPECT_EQ(r->status, expect) << path << ": " << r->body;
    if (r->status == 200) {
      EXPECT_TRUE(r->has_header("Server-Timing")) << path;
    }
    return body_json(r);
  }
  static TempDir* work_;
  static ServerProcess* server_;
};
TempDir* CliServeTest::work_ = nullptr;
ServerProcess* CliServeTest::server_ = nullptr;

TEST_F(CliServeTest, ListsImagesModelsAndMethods) {
  ASSERT_EQ(server_->url(), "http://127.0.0.1:" + std::to_string(server_->port()) + "/");
  const json images = get("/api/images");
  std::vector<std::string> ids;
  for (const json& i : images["images"]) ids.push_back(i["id"]);
  // The link out of the directory is not served.
  EXPECT_EQ(ids, (std::vector<std::string>{"gradient.png", "sub/disc.png"}));
  const json models = get("/api/models");
  EXPECT_EQ(models["default"], "squeezenet1_1");
  std::map<std::string, json> listed;
  for (const json& m : models["models"]) listed[m["name"]] = m;
  // Classifiers, detectors and segmenters alike, each with its task.
  for (const auto& [name, task] : std::map<std::string, std::string>{
           {"mobilenet_v2", "classify"}, {"tiny_yolov8", "detect"}, {"tiny_fcn", "segment"}}) {
    ASSERT_TRUE(listed.count(name)) << models.dump();
    EXPECT_EQ(listed[name]["task"], task) << name;
    EXPECT_EQ(listed[name]["problem"], "") << name;
  }
  const json methods = get("/api/methods");
  std::map<std::string, json> by_name;
  for (const json& m : methods["methods"]) by_name[m["name"]] = m;
  EXPECT_EQ(by_name["gradcam"]["layers"], "all");
  EXPECT_EQ(by_name["d-rise"]["tasks"], json({"detect"}));
  EXPECT_EQ(by_name["gradcam"]["tasks"], json({"classify", "detect", "segment"}));
  EXPECT_EQ(by_name["gradcam"]["kind"], "layer-map");
  EXPECT_EQ(by_name["guided-backprop"]["kind"], "input-gradient");
  // The page opens on the registry's default method, not on a name it knows.
  ASSERT_TRUE(by_name.count(methods["default"].get<std::string>())) << methods.dump();
  EXPECT_EQ(by_name["guided-backprop"]["layers"], "none");
  EXPECT_EQ(by_name["guided-backprop"]["views"], json({"all", "pos", "neg", "signed"}));
  const json cmaps = get("/api/colormaps");
  ASSERT_TRUE(cmaps.contains("jet"));
  EXPECT_EQ(cmaps["jet"].size(), 256u);
  auto page = server_->client().Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("serve.js"), std::string::npos);
  EXPECT_FALSE(page->has_header("Access-Control-Allow-Origin"));
}

TEST_F(CliServeTest, ClassifyEqualsTheCli) {
  const json c = get("/api/classify?image=sub/disc.png&top=5");
  RunResult cli = run_cnnviz({"classify", "--json", "--threads", "1", "-k", "5", "-m",
                              squeezenet_path(), work_->file("images/sub/disc.png")});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  const json expected = json::parse(cli.out)["results"][0]["predictions"];
  ASSERT_EQ(c["predictions"].size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(c["predictions"][i]["index"], expected[i]["index"]);
    EXPECT_NEAR(c["predictions"][i]["probability"].get<double>(),
                expected[i]["probability"].get<double>(), 1e-6);
  }
  EXPECT_EQ(c["width"], 200);
  EXPECT_EQ(c["crop"]["width"], 200);  // a square image: all of it
}

TEST_F(CliServeTest, EveryLayerFromOnePassEqualsTheCli) {
  const json layers = get("/api/layers");
  const json c = get("/api/classify?image=gradient.png");
  const int64_t second = c["predictions"][1]["index"];
  const std::string q = "image=gradient.png&method=gradcam&class=" + std::to_string(second);
  const json before = get("/api/info")["stats"];
  const json maps = get("/api/maps?" + q);
  EXPECT_FALSE(maps["cached"]);
  EXPECT_EQ(maps["class"], second);
  EXPECT_EQ(maps["input_width"], 224);
  EXPECT_EQ(maps["input_height"], 224);
  ASSERT_EQ(maps["layers"].size(), layers["layers"].size());
  for (size_t i = 0; i < layers["layers"].size(); ++i) {
    EXPECT_EQ(maps["layers"][i]["layer"], layers["layers"][i]);
  }
  EXPECT_EQ(get("/api/info")["stats"]["jobs_done"].get<int>(),
            before["jobs_done"].get<int>() + 1);  // one pass for every layer
  EXPECT_TRUE(get("/api/maps?" + q)["cached"]);

  TempDir out;
  RunResult cli =
      run_cnnviz({"gradcam", "--threads", "1", "--all-layers", "--class", std::to_string(second),
                  "-m", squeezenet_path(), "-o", out.path(), work_->file("images/gradient.png")});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  for (const std::string& layer :
       {layers["layers"][1].get<std::string>(), layers["layers"].back().get<std::string>()}) {
    const std::string stem =
        out.path() + "/gradient/gradcam_" + layer + "_c" + std::to_string(second);
    expect_served_gray(*server_, q + "&layer=" + layer, stem + "_gray.png");

    auto npy = server_->client().Get(("/api/map?" + q + "&layer=" + layer + "&format=npy").c_str());
    ASSERT_TRUE(npy);
    write_text(out.file("served.npy"), npy->body);
    const NpyArray served = read_npy(out.file("served.npy"));
    const NpyArray cli_raw = read_npy(stem + ".npy");
    ASSERT_EQ(served.shape, cli_raw.shape);
    for (size_t k = 0; k < served.data.size(); ++k) {
      ASSERT_NEAR(served.data[k], cli_raw.data[k], 1e-5 + 1e-4 * std::abs(cli_raw.data[k]));
    }
  }
}

TEST_F(CliServeTest, InputSpaceViewsEqualTheCli) {
  const std::string q = "image=sub/disc.png&method=guided-backprop&class=3";
  TempDir out;
  RunResult cli =
      run_cnnviz({"guided-backprop", "--threads", "1", "--class", "3", "-m", squeezenet_path(),
                  "-o", out.path(), work_->file("images/sub/disc.png")});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  for (const std::string view : {"pos", "neg"}) {
    auto png = server_->client().Get(("/api/map?" + q + "&format=png&gray=1&view=" + view).c_str());
    ASSERT_TRUE(png);
    ASSERT_EQ(png->status, 200) << png->body;
    const cv::Mat served =
        cv::imdecode(cv::Mat(1, static_cast<int>(png->body.size()), CV_8UC1, png->body.data()),
                     cv::IMREAD_UNCHANGED);
    const cv::Mat expected = cv::imread(
        out.path() + "/disc/guided-backprop_c3_" + view + "_gray.png", cv::IMREAD_UNCHANGED);
    ASSERT_FALSE(expected.empty());
    ASSERT_EQ(served.size(), expected.size());
    EXPECT_LE(cv::norm(served, expected, cv::NORM_INF), 1) << view;
  }
  const json u8 = get("/api/map?" + q + "&format=u8", 400);
  EXPECT_NE(u8["error"].get<std::string>().find("format u8"), std::string::npos);
}

TEST_F(CliServeTest, SwitchesModels) {
  const json c = get("/api/classify?image=gradient.png&model=mobilenet_v2");
  EXPECT_EQ(c["model"], "mobilenet_v2");
  EXPECT_EQ(c["predictions"].size(), 5u);
  const json m = get("/api/maps?image=gradient.png&model=mobilenet_v2&method=gradcam");
  EXPECT_GT(m["layers"].size(), 3u);
  get("/api/classify?image=gradient.png&model=nosuchmodel", 404);
}

TEST_F(CliServeTest, BadRequestsGetOneLineJsonErrors) {
  struct Case {
    std::string path;
    int status;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"/api/classify?image=nosuch.png", 404, "image 'nosuch.png': no such image"},
      {"/api/classify", 400, "image: missing"},
      {"/api/classify?image=gradient.png&top=0", 400, "top '0'"},
      {"/api/maps?image=gradient.png&method=nosuch", 400, "nosuch"},
      // In the API's words (parameters, no option dashes), with the
      // model's range.
      {"/api/maps?image=gradient.png&method=gradcam&class=5000", 400,
       "class 5000: out of range (the model has 1000 classes, 0 to 999)"},
      {"/api/maps?image=gradient.png&method=gradcam&class=x", 400, "class 'x': no such class"},
      {"/api/maps?image=gradient.png&method=gradcam&score=bogus", 400, "score 'bogus': unknown"},
      {"/api/maps?image=gradient.png&method=eigencam&counterfactual=1", 400, "eigencam"},
      {"/api/map?image=gradient.png&method=gradcam&layer=nosuch&format=u8", 404, "layer 'nosuch'"},
      {"/api/map?image=gradient.png&method=gradcam&format=gif", 400, "format 'gif'"},
      {"/api/nosuch", 404, "not found"},
  };
  for (const Case& c : cases) {
    const json e = get(c.path, c.status);
    ASSERT_TRUE(e.is_object()) << c.path;
    const std::string message = e.value("error", "");
    EXPECT_NE(message.find(c.says), std::string::npos) << c.path << ": " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << c.path;
    EXPECT_EQ(message.find("--"), std::string::npos) << c.path << ": " << message;
  }
}

TEST_F(CliServeTest, ClassesByLabelAsOnTheCommandLine) {
  const json by_label = get("/api/maps?image=gradient.png&method=gradcam&class=Tabby");
  const json by_index = get("/api/maps?image=gradient.png&method=gradcam&class=281");
  EXPECT_EQ(by_label["class"], 281) << by_label.dump();
  EXPECT_EQ(by_label["class"], by_index["class"]);
}

TEST_F(CliServeTest, ServesNothingOutsideWhatItWasGiven) {
  const int port = server_->port();
  for (const std::string& target : std::vector<std::string>{
           "/../../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd",
           "/serve.js/../../etc/passwd", "/api/image?image=../outside.png",
           "/api/image?image=link.png", "/api/image?image=%2Fetc%2Fpasswd",
           "/api/image?image=sub/../../outside.png", "/api/image?image=sub%2F..%2F..%2Foutside.png",
           "/api/image?image=" + work_->file("outside.png")}) {
    EXPECT_EQ(raw_get(port, target), "404") << target;
  }
  auto ok = server_->client().Get("/api/image?image=sub/disc.png");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->get_header_value("Content-Type"), "image/jpeg");
}

TEST_F(CliServeTest, UploadsAreCheckedBeforeDecoding) {
  std::vector<uint8_t> png;
  cv::Mat img(64, 96, CV_8UC3, cv::Scalar(10, 200, 30));
  cv::imencode(".png", img, png);
  auto c = server_->client();
  auto up = c.Post("/api/images?name=green.png", std::string(png.begin(), png.end()),
                   "application/octet-stream");
  ASSERT_TRUE(up);
  ASSERT_EQ(up->status, 200) << up->body;
  const json ref = body_json(up);
  EXPECT_EQ(ref["id"].get<std::string>().rfind("upload-", 0), 0u);
  const json cls = get("/api/classify?image=" + ref["id"].get<std::string>());
  EXPECT_EQ(cls["width"], 96);

  // Whatever the Content-Type: curl --data-binary sends a form-encoded one.
  for (const char* type : {"application/x-www-form-urlencoded", "text/plain", ""}) {
    auto any = c.Post("/api/images?name=typed.png", std::string(png.begin(), png.end()), type);
    ASSERT_TRUE(any);
    EXPECT_EQ(any->status, 200) << type << ": " << any->body;
  }
  // A multipart form is answered with what to send instead.
  httplib::MultipartFormDataItems form = {
      {"file", std::string(png.begin(), png.end()), "green.png", "image/png"}};
  auto multipart = c.Post("/api/images?name=form.png", form);
  ASSERT_TRUE(multipart);
  EXPECT_EQ(multipart->status, 415);
  EXPECT_NE(body_json(multipart)["error"].get<std::string>().find("--data-binary"),
            std::string::npos);

  auto garbage = c.Post("/api/images?name=junk.jpg", "this is not an image", "image/jpeg");
  ASSERT_TRUE(garbage);
  EXPECT_EQ(garbage->status, 400);
  EXPECT_NE(body_json(garbage)["error"].get<std::string>().find("junk.jpg"), std::string::npos);

  // Over --max-upload-mb 1: refused from its length.
  auto big = c.Post("/api/images?name=big.png", std::string(size_t{2} << 20, 'x'),
                    "application/octet-stream");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  EXPECT_TRUE(body_json(big).contains("error"));

  // A PNG header declaring 4000 x 4000 pixels, over --max-pixels 1000000:
  // refused from the header, nothing decoded.
  cv::Mat wide(4000, 4000, CV_8UC1, cv::Scalar(0));
  std::vector<uint8_t> bomb;
  cv::imencode(".png", wide, bomb, {cv::IMWRITE_PNG_COMPRESSION, 9});
  ASSERT_LT(bomb.size(), size_t{1} << 20);
  auto b = c.Post("/api/images?name=bomb.png", std::string(bomb.begin(), bomb.end()), "image/png");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->status, 400);
  EXPECT_NE(body_json(b)["error"].get<std::string>().find("pixels"), std::string::npos) << b->body;
}

TEST_F(CliServeTest, ASecondServerOnTheSamePortFails) {
  RunResult r = run_cnnviz({"serve", "-m", squeezenet_path(), "--port", std::to_string(server_->port()),
                     work_->file("images")});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find(":" + std::to_string(server_->port()) + ": cannot listen there"),
            std::string::npos)
      << r.err;
}

TEST_F(CliServeTest, MissingImagesAreNamedAndLeftOut) {
  const std::string missing = work_->file("nodir") + "/";
  ServerProcess server(*work_, "missing",
                       {"-m", squeezenet_path(), missing, work_->file("images/gradient.png")});
  auto r = server.client().Get("/api/images");
  ASSERT_TRUE(r);
  const json images = body_json(r)["images"];
  ASSERT_EQ(images.size(), 1u) << r->body;
  EXPECT_EQ(images[0]["name"], "gradient.png");
  const RunResult stopped = server.stop();
  EXPECT_NE(stopped.err.find("warning: image '" + missing + "': not found: not served"),
            std::string::npos)
      << stopped.err;
  // Nothing left to serve: an error, not an empty page.
  const RunResult none = run_cnnviz({"serve", "-m", squeezenet_path(), "--port", "0", missing});
  EXPECT_EQ(none.exit_code, 3) << none.err;
  EXPECT_NE(none.err.find("serve: none of the images given can be served"), std::string::npos);
}

TEST_F(CliServeTest, AnswersOnlyLoopbackHostNames) {
  httplib::Client c("127.0.0.1", server_->port());
  auto r = c.Get("/api/info", {{"Host", "attacker.example:" + std::to_string(server_->port())}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  auto ok = c.Get("/api/info", {{"Host", "localhost:" + std::to_string(server_->port())}});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

// Sends `bytes` on a fresh connection and returns what came back (at most
// 64 KiB, 2 s).
std::string raw_exchange(int port, const std::string& bytes) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string got;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    (void)!write(fd, bytes.data(), bytes.size());
    shutdown(fd, SHUT_WR);
    char buf[4096];
    ssize_t n;
    while (got.size() < 65536 && (n = read(fd, buf, sizeof(buf))) > 0) got.append(buf, n);
  }
  close(fd);
  return got;
}

// Mutated requests (bytes flipped, cut, repeated; odd parameters, encodings
// and numbers) never stop the server, and each gets an HTTP answer or a
// closed connection.
TEST_F(CliServeTest, SurvivesMalformedRequests) {
  const std::vector<std::string> seeds = {
      "GET /api/maps?image=gradient.png&method=gradcam&class=1&layer=features.3&format=u8 "
      "HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      "GET /api/classify?image=sub%2Fdisc.png&top=5 HTTP/1.1\r\nHost: localhost\r\n\r\n",
      "POST /api/images?name=a.png HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 8\r\n\r\n"
      "\x89PNG\r\n\x1a\n",
      "GET /api/map?image=gradient.png&method=guided-backprop&format=png&view=pos&gray=1 "
      "HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
  };
  const std::vector<std::string> junk = {"%",
                                         "%zz",
                                         "%00",
                                         "\xff\xfe",
                                         "99999999999999999999",
                                         "-1",
                                         "1e9",
                                         "&&&",
                                         "=",
                                         "..%2f..%2f",
                                         "\r\n",
                                         std::string(1, '\0'),
                                         " ",
                                         "#",
                                         std::string(5000, 'a')};
  std::mt19937 rng(7);
  for (int i = 0; i < 300; ++i) {
    std::string r = seeds[i % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % r.size();
      switch (rng() % 4) {
        case 0:
          r[at] = static_cast<char>(rng() % 256);
          break;
        case 1:
          r.insert(at, junk[rng() % junk.size()]);
          break;
        case 2:
          r.resize(at);
          break;
        default:
          r.insert(at, r.substr(at, rng() % 64));
      }
      if (r.empty()) r = "G";
    }
    const std::string answer = raw_exchange(server_->port(), r);
    if (!answer.empty()) {
      ASSERT_EQ(answer.rfind("HTTP/1.1 ", 0), 0u)
          << "request " << i << ": " << answer.substr(0, 80);
    }
  }
  const json info = get("/api/info");
  EXPECT_EQ(info["model"], "squeezenet1_1");
}

TEST(CliServeTokenTest, EveryApiCallNeedsTheToken) {
  TempDir work;
  ServerProcess server(work, "token", {"-m", squeezenet_path(), "--token", "s3cret"});
  EXPECT_EQ(server.url(), "http://127.0.0.1:" + std::to_string(server.port()) + "/?token=s3cret");
  auto c = server.client();
  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  for (const char* path : {"/api/info", "/api/models", "/api/image?image=x", "/api/methods"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 403) << path;
  }
  auto wrong = c.Get("/api/info?token=s3creT");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 403);
  auto header = c.Get("/api/info", {{"X-Cnnviz-Token", "s3cret"}});
  ASSERT_TRUE(header);
  EXPECT_EQ(header->status, 200);
  auto query = c.Get("/api/info?token=s3cret");
  ASSERT_TRUE(query);
  EXPECT_EQ(query->status, 200);
  const RunResult r = server.stop();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("stopped"), std::string::npos) << r.err;
}

TEST(CliServeTokenTest, ElsewhereThanLoopbackMakesUpAToken) {
  TempDir work;
  ServerProcess server(work, "any", {"-m", squeezenet_path(), "--host", "0.0.0.0"});
  const std::string url = server.url();
  const size_t at = url.find("?token=");
  ASSERT_NE(at, std::string::npos) << url;
  EXPECT_EQ(url.size() - at - 7, 32u) << url;
  auto c = server.client();
  auto none = c.Get("/api/info");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 403);
  auto with = c.Get(("/api/info?token=" + url.substr(at + 7)).c_str());
  ASSERT_TRUE(with);
  EXPECT_EQ(with->status, 200);
}

// A detector and a segmenter through the API: the detections and classes
// `cnnviz detect` and `cnnviz segment` find, each pixel's class, and the
// maps of a box (by rank and by its corners) and of a class, which equal the
// command line's --box and --class maps.
class CliServeTasksTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work_ = new TempDir();
    fs::create_directories(work_->file("images"));
    cv::Mat photo(180, 240, CV_8UC3);
    cv::RNG rng(7);
    rng.fill(photo, cv::RNG::UNIFORM, 0, 255);
    cv::imwrite(work_->file("images/photo.png"), photo);
    // Plain grey, in which the tiny RetinaNet finds nothing above 0.25.
    cv::imwrite(work_->file("images/grey.png"), cv::Mat(90, 120, CV_8UC3, cv::Scalar::all(128)));
    fs::copy_file(structured_image(*work_, 150, 90), work_->file("images/wide.png"));
    server_ = new ServerProcess(*work_, "tasks",
                                {"-m", test_models_dir() + "/tiny_yolov5.pt", "--models-dir",
                                 test_models_dir(), work_->file("images")});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete work_;
  }
  static json get(const std::string& path, int expect = 200) {
    auto r = server_->client().Get(path.c_str());
    EXPECT_TRUE(r) << path;
    if (!r) return json();
    EXPECT_EQ(r->status, expect) << path << ": " << r->body;
    return body_json(r);
  }
  // `cnnviz ARGS... IMAGE` with an output folder; its manifest's image entry.
  static json cli_entry(std::vector<std::string> args, const std::string& out) {
    args.insert(args.end(), {"-q", "--threads", "1", "-o", out, work_->file("images/photo.png")});
    const RunResult r = run_cnnviz(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? json::parse(read_text(out + "/manifest.json"))["images"][0] : json();
  }
  static TempDir* work_;
  static ServerProcess* server_;
};
TempDir* CliServeTasksTest::work_ = nullptr;
ServerProcess* CliServeTasksTest::server_ = nullptr;

TEST_F(CliServeTasksTest, DetectionsAndBoxMapsEqualTheCli) {
  const std::string model = test_models_dir() + "/tiny_yolov5.pt";
  // The -m model, given by its path, is listed as the detector it is.
  const json models = get("/api/models");
  ASSERT_EQ(models["default"], "tiny_yolov5");
  EXPECT_EQ(models["models"][0]["name"], "tiny_yolov5");
  EXPECT_EQ(models["models"][0]["task"], "detect");
  const json c = get("/api/classify?image=photo.png");
  EXPECT_EQ(c["task"], "detect");
  EXPECT_EQ(c["predictions"].size(), 0u);
  // The letterbox's square over the 240 x 180 photo, its bars outside it:
  // where the page draws the maps.
  EXPECT_EQ(c["input"], json({{"x", 0.0}, {"y", -30.0}, {"width", 240.0}, {"height", 240.0}}));
  EXPECT_EQ(c["crop"], json({{"x", 0}, {"y", 0}, {"width", 240}, {"height", 180}}));
  const RunResult cli = run_cnnviz(
      {"detect", "-q", "--json", "--threads", "1", "-m", model, work_->file("images/photo.png")});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  const json want = json::parse(cli.out)["results"][0]["detections"];
  const json& got = c["detections"];
  ASSERT_GE(want.size(), 2u) << "the tiny detector should find boxes in noise";
  ASSERT_EQ(got.size(), want.size()) << c.dump();
  for (size_t k = 0; k < got.size(); ++k) {
    EXPECT_EQ(got[k]["index"], k);
    EXPECT_EQ(got[k]["class"], want[k]["class"]);
    EXPECT_EQ(got[k]["label"], want[k]["label"]);
    EXPECT_NEAR(got[k]["score"].get<double>(), want[k]["score"].get<double>(), 1e-6);
    const char* corner[] = {"x1", "y1", "x2", "y2"};
    for (size_t i = 0; i < 4; ++i) {
      EXPECT_NEAR(got[k][corner[i]].get<double>(), want[k]["box"][i].get<double>(), 1e-6);
    }
  }
  // Box 1, every stage from one request, as `gradcam --all-layers --box 1`.
  const std::string q = "image=photo.png&method=gradcam&box=1";
  const json maps = get("/api/maps?" + q);
  EXPECT_EQ(maps["task"], "detect");
  EXPECT_EQ(maps["box"], "1");
  EXPECT_EQ(maps["matched"], json({1}));
  EXPECT_EQ(maps["class"], want[1]["class"]);
  EXPECT_NEAR(maps["target"]["score"].get<double>(), want[1]["score"].get<double>(), 1e-5);
  EXPECT_NEAR(maps["target"]["x1"].get<double>(), want[1]["box"][0].get<double>(), 1e-3);
  TempDir out;
  const json entry = cli_entry({"gradcam", "--all-layers", "--box", "1", "-m", model}, out.path());
  const std::string cls = std::to_string(want[1]["class"].get<int>());
  ASSERT_EQ(maps["layers"].size(), 4u);
  for (const json& l : maps["layers"]) {
    const std::string layer = l["layer"];
    expect_served_gray(*server_, q + "&layer=" + layer,
                       out.path() + "/" + entry["dir"].get<std::string>() + "/gradcam_" + layer +
                           "_d1-c" + cls + "_gray.png");
  }
  EXPECT_TRUE(get("/api/maps?" + q)["cached"]);
  // A box by its corners: the detections overlapping it, as --box x1,y1,x2,y2.
  char corners[128];
  std::snprintf(corners, sizeof(corners), "%.3f,%.3f,%.3f,%.3f", want[0]["box"][0].get<double>(),
                want[0]["box"][1].get<double>(), want[0]["box"][2].get<double>(),
                want[0]["box"][3].get<double>());
  const json query = get(std::string("/api/maps?image=photo.png&method=gradcam&box=") + corners);
  EXPECT_EQ(query["box"], corners);
  ASSERT_GE(query["matched"].size(), 1u);
  EXPECT_EQ(query["matched"][0], 0);
  EXPECT_EQ(query["class"], want[0]["class"]);
}

TEST_F(CliServeTasksTest, SegmentsAndClassMapsEqualTheCli) {
  const std::string model = test_models_dir() + "/tiny_fcn.pt";
  const json c = get("/api/classify?image=photo.png&model=tiny_fcn");
  EXPECT_EQ(c["task"], "segment");
  const RunResult cli = run_cnnviz(
      {"segment", "-q", "--json", "--threads", "1", "-m", model, work_->file("images/photo.png")});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  const json want = json::parse(cli.out)["results"][0]["classes"];
  ASSERT_GE(want.size(), 2u);
  ASSERT_EQ(c["segments"].size(), want.size());
  for (size_t k = 0; k < want.size(); ++k) {
    EXPECT_EQ(c["segments"][k]["class"], want[k]["index"]);
    EXPECT_EQ(c["segments"][k]["pixels"], want[k]["pixels"]);
  }
  // Each pixel's class: the grid, resized to the photo as segment does,
  // gives segment's areas.
  auto grid = server_->client().Get("/api/segments?image=photo.png&model=tiny_fcn");
  ASSERT_TRUE(grid);
  ASSERT_EQ(grid->status, 200) << grid->body;
  const int w = c["grid"]["width"], h = c["grid"]["height"];
  ASSERT_EQ(grid->body.size(), static_cast<size_t>(2 * w * h));
  cv::Mat labels(h, w, CV_32SC1);
  for (int i = 0; i < w * h; ++i) {
    const auto lo = static_cast<uint8_t>(grid->body[2 * i]),
               hi = static_cast<uint8_t>(grid->body[2 * i + 1]);
    labels.at<int32_t>(i / w, i % w) = lo | (hi << 8);
  }
  const cv::Mat source = resize_labels(labels, c["width"], c["height"]);
  for (const json& a : want) {
    cv::Mat mask;
    cv::compare(source, cv::Scalar(a["index"].get<int>()), mask, cv::CMP_EQ);
    EXPECT_EQ(cv::countNonZero(mask), a["pixels"].get<int>()) << "class " << a["index"];
  }
  get("/api/segments?image=photo.png", 400);  // the default model is a detector
  // The default class (the largest but the background), then a given one,
  // as the command line's.
  TempDir out;
  const json entry = cli_entry({"gradcam", "--all-layers", "-m", model}, out.path());
  const int64_t top = entry["targets"][0]["class"];
  const json maps = get("/api/maps?image=photo.png&model=tiny_fcn&method=gradcam");
  EXPECT_EQ(maps["class"], top);
  const int64_t other = want.back()["index"];
  const std::string q =
      "image=photo.png&model=tiny_fcn&method=gradcam&class=" + std::to_string(other);
  const json given = get("/api/maps?" + q);
  EXPECT_EQ(given["class"], other);
  // Its probability: the class's share of the segmenter's pixels.
  cv::Mat of_other;
  cv::compare(labels, cv::Scalar(static_cast<int>(other)), of_other, cv::CMP_EQ);
  EXPECT_NEAR(given["probability"].get<double>(),
              static_cast<double>(cv::countNonZero(of_other)) / (w * h), 1e-6);
  TempDir out2;
  const json entry2 = cli_entry(
      {"gradcam", "--all-layers", "--class", std::to_string(other), "-m", model}, out2.path());
  for (const json& l : given["layers"]) {
    const std::string layer = l["layer"];
    expect_served_gray(*server_, q + "&layer=" + layer,
                       out2.path() + "/" + entry2["dir"].get<std::string>() + "/gradcam_" + layer +
                           "_c" + std::to_string(other) + "_gray.png");
  }
}

TEST_F(CliServeTasksTest, TargetsOfTheWrongKindGetOneLine) {
  struct Case {
    std::string path;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"/api/maps?image=photo.png&method=gradcam&box=99",
       "box '99': the image has detections 0 to"},
      {"/api/maps?image=photo.png&method=gradcam&class=1",
       "class 1: a detector's targets are its detections"},
      {"/api/maps?image=photo.png&method=gradcam&box=1&score=probability",
       "score probability: a detection's target"},
      {"/api/maps?image=photo.png&method=gradcam&box=5,5,2,9", "box '5,5,2,9'"},
      {"/api/maps?image=photo.png&method=gradcam&box=1,1,3,3",
       "box '1,1,3,3': matches no detection"},
      {"/api/maps?image=photo.png&method=gradcam&box=10,10,250,20",
       "box '10,10,250,20': lies outside the image (240 x 180 pixels)"},
      // No detection at all: the default box and a target-free method alike.
      {"/api/maps?image=grey.png&model=tiny_retinanet&method=gradcam",
       "box '0': the image has no detection (none scores above 0.25)"},
      {"/api/maps?image=grey.png&model=tiny_retinanet&method=eigencam&box=2",
       "box '2': the image has no detection"},
      {"/api/maps?image=photo.png&model=tiny_fcn&method=gradcam&box=0",
       "box '0': applies to detectors; model 'tiny_fcn' is a segmenter"},
      {"/api/maps?image=photo.png&model=tiny_fcn&method=gradcam&score=probability",
       "score probability: a segmenter's target"},
      {"/api/maps?image=photo.png&model=tiny_fcn&method=d-rise",
       "d-rise: explains a detector's detections"},
      {"/api/maps?image=photo.png&model=squeezenet1_1&method=gradcam&box=0",
       "box '0': applies to detectors"},
  };
  for (const Case& c : cases) {
    const json e = get(c.path, 400);
    const std::string message = e.value("error", "");
    EXPECT_NE(message.find(c.says), std::string::npos) << c.path << ": " << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << c.path;
  }
}

// A queue of one, and every job 400 ms longer (the test hook): the third of
// three requests at once is refused with Retry-After; a request whose client
// hangs up while it waits is dropped before it runs.
// serve --layer offers an ONNX model's values as layers: listed after the
// stages, with maps from the same pass as the CLI's at that value. A name
// that is not a value stops the server before it listens (exit 5).
TEST(ModelOnnxServeTest, OffersValuesAsLayers) {
  TempDir work;
  make_images(work.path(), work.file("images"));
  const std::string model = test_models_dir() + "/onnx/squeezenet1_1.onnx";
  const std::string value = "/features/features.3/Concat_output_0";
  const std::string path = "features.3.value__features_features_3_Concat_output_0";
  ServerProcess server(work, "server", {"-m", model, "--layer", value, work.file("images")});
  auto r = server.client().Get("/api/layers");
  ASSERT_TRUE(r);
  const json layers = body_json(r)["layers"];
  ASSERT_GT(layers.size(), 2u);
  EXPECT_EQ(layers.back(), path);
  const std::string q = "image=gradient.png&method=gradcam&class=3&layer=" + path;
  auto npy = server.client().Get(("/api/map?" + q + "&format=npy").c_str());
  ASSERT_TRUE(npy);
  ASSERT_EQ(npy->status, 200) << npy->body;
  write_text(work.file("served.npy"), npy->body);
  const RunResult cli =
      run_cnnviz({"gradcam", "-q", "--threads", "1", "--layer", value, "--class", "3", "-m", model,
                  "--write", "npy", "-o", work.file("cli"), work.file("images/gradient.png")});
  ASSERT_EQ(cli.exit_code, 0) << cli.err;
  const NpyArray served = read_npy(work.file("served.npy"));
  const NpyArray want = read_npy(work.file("cli/gradient/gradcam_" + path + "_c3.npy"));
  ASSERT_EQ(served.shape, want.shape);
  for (size_t k = 0; k < want.data.size(); ++k) {
    ASSERT_NEAR(served.data[k], want.data[k], 1e-5 + 1e-4 * std::abs(want.data[k]));
  }
  const RunResult bad = run_cnnviz({"serve", "-m", model, "--layer", "/no/such", "--port", "0"});
  EXPECT_EQ(bad.exit_code, 5) << bad.err;
  EXPECT_NE(bad.err.find("--layer '/no/such': not a value of model 'squeezenet1_1'"),
            std::string::npos)
      << bad.err;
}

TEST(CliServeQueueTest, FullQueueAnswers503AndGoneClientsCancel) {
  TempDir work;
  make_images(work.path(), work.file("images"));
  ServerProcess server(work, "queue",
                       {"-m", squeezenet_path(), "--queue", "1", work.file("images")},
                       {{"CNNVIZ_TEST_JOB_DELAY_MS", "400"}});
  auto maps = [&](int cls) {
    auto c = server.client();
    auto r =
        c.Get(("/api/maps?image=gradient.png&method=gradcam&class=" + std::to_string(cls)).c_str());
    return r ? std::make_pair(r->status, r->get_header_value("Retry-After"))
             : std::make_pair(0, std::string());
  };
  std::vector<std::future<std::pair<int, std::string>>> calls;
  for (int k = 0; k < 3; ++k) {
    calls.push_back(std::async(std::launch::async, maps, k));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  int ok = 0, busy = 0;
  for (auto& f : calls) {
    const auto [status, retry] = f.get();
    if (status == 200) ++ok;
    if (status == 503) {
      ++busy;
      EXPECT_GE(std::atoi(retry.c_str()), 1);
    }
  }
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(busy, 1);

  auto stats = [&] {
    auto r = server.client().Get("/api/info");
    return r ? json::parse(r->body)["stats"] : json();
  };
  const int done_before = stats()["jobs_done"];
  // One job runs, one waits; the waiting one's client hangs up.
  auto running = std::async(std::launch::async, maps, 10);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  {
    httplib::Client quitter("127.0.0.1", server.port());
    quitter.set_read_timeout(0, 150000);
    auto r = quitter.Get("/api/maps?image=gradient.png&method=gradcam&class=11");
    EXPECT_FALSE(r);  // timed out: the client closes its connection
  }
  EXPECT_EQ(running.get().first, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  const json after = stats();
  EXPECT_EQ(after["jobs_cancelled"], 1) << after.dump();
  EXPECT_EQ(after["jobs_done"].get<int>(), done_before + 1) << after.dump();
  const RunResult r = server.stop();
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace
}  // namespace cnnviz::test
