#include "cnnviz/serve/server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string_view>
#include <thread>

#include "cnnviz/core/json_util.h"
#include "cnnviz/core/model.h"
#include "cnnviz/core/stopwatch.h"
#include "cnnviz/core/targets.h"
#include "cnnviz/core/version.h"
#include "cnnviz/io/files.h"
#include "cnnviz/io/npy.h"
#include "cnnviz/io/png.h"
#include "cnnviz/io/render.h"

namespace cnnviz {

namespace assets {
std::string_view common_css();  // assets/common/base.css
std::string_view common_js();   // assets/common/dom.js
std::string_view serve_html();  // assets/serve/index.html
std::string_view serve_css();   // assets/serve/serve.css
std::string_view serve_js();    // assets/serve/serve.js
}  // namespace assets

namespace {

using json = nlohmann::ordered_json;

// When the request being handled on this thread started (Server-Timing).
thread_local Clock::time_point request_start;

// A request's parameter that must be one of a few words or a number: an
// Error(kUsage) naming it otherwise.
class Params {
 public:
  explicit Params(const httplib::Request& req) : req_(req) {}
  bool has(const char* name) const { return req_.has_param(name); }
  std::string get(const char* name, const std::string& fallback = "") const {
    return req_.has_param(name) ? req_.get_param_value(name) : fallback;
  }
  std::string required(const char* name) const {
    if (!req_.has_param(name) || req_.get_param_value(name).empty()) {
      throw Error(ErrorCode::kUsage, std::string(name) + ": missing");
    }
    return req_.get_param_value(name);
  }
  int64_t integer(const char* name, int64_t lo, int64_t hi, int64_t fallback) const {
    if (!has(name)) return fallback;
    const std::string v = get(name);
    char* end = nullptr;
    errno = 0;
    const long long n = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno != 0 || n < lo || n > hi) {
      throw Error(ErrorCode::kUsage, std::string(name) + " '" + v + "': not an integer in " +
                                         std::to_string(lo) + "-" + std::to_string(hi));
    }
    return n;
  }
  bool flag(const char* name) const {
    const std::string v = get(name, "0");
    if (v == "1" || v == "true") return true;
    if (v == "0" || v == "false" || v.empty()) return false;
    throw Error(ErrorCode::kUsage, std::string(name) + " '" + v + "': not 0 or 1");
  }

 private:
  const httplib::Request& req_;
};

// A message of the shared code in the API's words: the request parameters
// are the command line's options without their dashes ("--score 'x'"
// becomes "score 'x'", "--counterfactual: ..." "counterfactual: ...").
std::string api_words(const std::string& message) {
  return message.rfind("--", 0) == 0 ? message.substr(2) : message;
}

void send_json(httplib::Response& res, const json& doc, int status = 200) {
  res.status = status;
  res.set_content(dump_json(doc), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, json{{"error", message}, {"status", status}}, status);
}

std::vector<std::string> kind_views(MapKind kind) {
  switch (kind) {
    case MapKind::kInputGradient:
      return {"all", "pos", "neg", "signed"};
    case MapKind::kInputProduct:
      return {"color"};
    case MapKind::kLayerMap:
      return {"map"};
  }
  return {"map"};
}

// Whether the client of `req` has closed its connection: its socket is found
// among the process's descriptors by the two ends' addresses, then polled for
// a hang-up. False when it cannot be found (nothing is cancelled then).
class PeerWatch {
 public:
  explicit PeerWatch(const httplib::Request& req) {
    DIR* dir = opendir("/proc/self/fd");
    if (!dir) return;
    while (dirent* e = readdir(dir)) {
      char* end = nullptr;
      const long fd = std::strtol(e->d_name, &end, 10);
      if (*end != '\0' || fd < 0) continue;
      struct stat st;
      if (fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
      if (port_of(static_cast<int>(fd), false) == req.remote_port &&
          port_of(static_cast<int>(fd), true) == req.local_port &&
          address_of(static_cast<int>(fd)) == req.remote_addr) {
        fd_ = static_cast<int>(fd);
        break;
      }
    }
    closedir(dir);
  }
  bool gone() const {
    if (fd_ < 0) return false;
    pollfd p{fd_, POLLRDHUP, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }

 private:
  static int port_of(int fd, bool local) {
    sockaddr_storage a{};
    socklen_t n = sizeof(a);
    const int rc = local ? getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n)
                         : getpeername(fd, reinterpret_cast<sockaddr*>(&a), &n);
    if (rc != 0) return -2;
    if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port);
    if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port);
    return -2;
  }
  static std::string address_of(int fd) {
    sockaddr_storage a{};
    socklen_t n = sizeof(a);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&a), &n) != 0) return "";
    char buf[INET6_ADDRSTRLEN] = {0};
    if (a.ss_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&a)->sin_addr, buf, sizeof(buf));
    } else if (a.ss_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&a)->sin6_addr, buf, sizeof(buf));
    }
    return buf;
  }
  int fd_ = -1;
};

// Compares in time independent of where the strings differ.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned diff = a.size() ^ b.size();
  for (size_t i = 0; i < a.size(); ++i) diff |= a[i] ^ b[i % (b.empty() ? 1 : b.size())];
  return diff == 0 && !b.empty();
}

// The host part of a Host header: "[::1]:8080" -> "::1", "a:1" -> "a".
std::string host_of(const std::string& header) {
  if (!header.empty() && header[0] == '[') {
    const size_t close = header.find(']');
    return close == std::string::npos ? header : header.substr(1, close - 1);
  }
  return header.substr(0, header.find(':'));
}

// A detection (or a box asked about) in the source's pixels.
json box_json(const Detection& d, const std::string& label) {
  return json{{"x1", d.x1},       {"y1", d.y1},     {"x2", d.x2},      {"y2", d.y2},
              {"class", d.label}, {"label", label}, {"score", d.score}};
}

// `text` with anything but letters, digits, '.' and '-' as '-' (a file name's part).
std::string file_word(std::string text) {
  for (char& c : text) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') c = '-';
  }
  return text;
}

json crop_json(const CropBox& box) {
  const cv::Rect r = source_rect(box);
  return json{{"x", r.x}, {"y", r.y}, {"width", r.width}, {"height", r.height}};
}

// The network's whole input in the source's pixels: the crop, or a
// letterbox's square with its bars (then partly outside the image).
json input_json(const CropBox& box) {
  const double sx = static_cast<double>(box.src_w) / box.resized_w;
  const double sy = static_cast<double>(box.src_h) / box.resized_h;
  return json{{"x", box.left * sx},
              {"y", box.top * sy},
              {"width", box.width * sx},
              {"height", box.height * sy}};
}

MapRequest map_request(const Params& p, const std::string& default_model) {
  MapRequest r;
  r.image = p.required("image");
  r.model = p.get("model", default_model);
  if (r.model.empty()) r.model = default_model;
  r.method = p.required("method");
  if (p.has("score") && !p.get("score").empty()) r.score = parse_score(p.get("score"));
  r.counterfactual = p.flag("counterfactual");
  r.box = p.get("box");
  if (r.box.size() > 200) throw Error(ErrorCode::kUsage, "box: longer than 200 characters");
  return r;
}

// A head index of /api/map: 0 to 4095.
int parse_head(const std::string& text) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < 0 || v > 4095) {
    throw Error(ErrorCode::kUsage, "head '" + text + "': not a head index (0 to 4095)");
  }
  return static_cast<int>(v);
}

const ExplorerMap& find_map(const MapSet& set, const Params& p) {
  const std::string layer = p.get("layer");
  if (!p.has("layer") && set.maps.size() == 1) return set.maps[0];
  const int head = p.has("head") ? parse_head(p.get("head")) : -1;
  for (const ExplorerMap& m : set.maps) {
    if (m.layer == layer && m.head == head) return m;
  }
  if (head >= 0) {
    throw NotFound("head " + std::to_string(head) + " of layer '" + layer + "': " +
                   set.method->name + " gave no such map");
  }
  std::string known;
  for (const ExplorerMap& m : set.maps) known += (known.empty() ? "" : ", ") + m.layer;
  throw NotFound("layer '" + layer + "': " + set.method->name + " gave maps at " +
                 (known.empty() ? "the input only" : known));
}

// The picture (MapPictures' variant) of the view a request asks for: a
// layer map's "map" is its heatmap in the request's colormap; gray=1 asks for
// the grey picture of any view.
std::string view_variant(MapKind kind, const Params& p) {
  const std::vector<std::string> views = kind_views(kind);
  const std::string view = p.get("view", views[0]);
  if (std::find(views.begin(), views.end(), view) == views.end()) {
    std::string known;
    for (const std::string& v : views) known += (known.empty() ? "" : ", ") + v;
    throw Error(ErrorCode::kUsage, "view '" + view + "': not one of " + known);
  }
  const bool gray = p.flag("gray");
  switch (kind) {
    case MapKind::kLayerMap:
      return gray ? "gray" : "heatmap";
    case MapKind::kInputProduct:
      return gray ? "gray" : "color";
    case MapKind::kInputGradient:
      return gray && view != "signed" ? view + "_gray" : view;
  }
  return view;
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  in_addr a{};
  return inet_pton(AF_INET, host.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

std::string make_token() {
  std::ifstream in("/dev/urandom", std::ios::binary);
  unsigned char bytes[16];
  if (!in.read(reinterpret_cast<char*>(bytes), sizeof(bytes))) {
    throw Error(ErrorCode::kRuntime, "/dev/urandom: cannot read random bytes for the token");
  }
  std::string out;
  char hex[3];
  for (unsigned char b : bytes) {
    std::snprintf(hex, sizeof(hex), "%02x", b);
    out += hex;
  }
  return out;
}

struct Server::Impl {
  Explorer& explorer;
  ServerOptions opts;
  httplib::Server http;
  int port = 0;
  std::atomic<bool> stop_requested{false};
  std::atomic<bool> finished{false};  // run() has returned

  Impl(Explorer& e, ServerOptions o) : explorer(e), opts(std::move(o)) {}

  std::string default_model() const { return explorer.options().default_model; }

  // The page's files: embedded, or read from opts.assets_dir.
  void asset(httplib::Response& res, const char* file, std::string_view embedded,
             const char* type) {
    if (opts.assets_dir.empty()) {
      res.set_content(std::string(embedded), type);
    } else {
      const std::vector<uint8_t> bytes =
          read_file(opts.assets_dir + "/" + file, "asset", size_t{16} << 20);
      res.set_content(std::string(bytes.begin(), bytes.end()), type);
    }
    res.set_header("Cache-Control", "no-cache");
  }

  // Runs `body`, mapping what it throws to a JSON error.
  void guard(httplib::Response& res, const std::function<void()>& body) {
    try {
      body();
    } catch (const NotFound& e) {
      send_error(res, 404, e.what());
    } catch (const Busy& e) {
      res.set_header("Retry-After", std::to_string(e.retry_seconds));
      send_error(res, 503, e.what());
    } catch (const Cancelled& e) {
      send_error(res, 503, e.what());
    } catch (const Error& e) {
      send_error(res, e.code() == ErrorCode::kRuntime ? 500 : 400, api_words(first_line(e.what())));
    } catch (const std::exception& e) {
      send_error(res, 500, first_line(e.what()));
    }
  }

  // Why `req` may not use the API, or "" when it may.
  std::string refused(const httplib::Request& req) const {
    if (!opts.token.empty()) {
      const std::string given = req.has_header("X-Cnnviz-Token")
                                    ? req.get_header_value("X-Cnnviz-Token")
                                    : req.get_param_value("token");
      return same_secret(given, opts.token) ? "" : "missing or wrong token";
    }
    // Without a token only loopback names may reach the server, so that a
    // page elsewhere cannot rebind a name of its own to 127.0.0.1.
    const std::string host = host_of(req.get_header_value("Host"));
    return is_loopback_host(host) ? "" : "Host '" + host + "' is not a loopback name";
  }

  using Handler = void (Impl::*)(const httplib::Request&, httplib::Response&);

  // Every route: the page's files, then one handler per API endpoint, each
  // run inside guard().
  void routes() {
    hooks();
    http.Get("/", [this](const httplib::Request&, httplib::Response& res) {
      asset(res, "index.html", assets::serve_html(), "text/html; charset=utf-8");
    });
    http.Get("/base.css", [this](const httplib::Request&, httplib::Response& res) {
      asset(res, "../common/base.css", assets::common_css(), "text/css; charset=utf-8");
    });
    http.Get("/dom.js", [this](const httplib::Request&, httplib::Response& res) {
      asset(res, "../common/dom.js", assets::common_js(), "text/javascript; charset=utf-8");
    });
    http.Get("/serve.css", [this](const httplib::Request&, httplib::Response& res) {
      asset(res, "serve.css", assets::serve_css(), "text/css; charset=utf-8");
    });
    http.Get("/serve.js", [this](const httplib::Request&, httplib::Response& res) {
      asset(res, "serve.js", assets::serve_js(), "text/javascript; charset=utf-8");
    });
    api_get("/api/info", &Impl::get_info);
    api_get("/api/colormaps", &Impl::get_colormaps);
    api_get("/api/models", &Impl::get_models);
    api_get("/api/methods", &Impl::get_methods);
    api_get("/api/images", &Impl::get_images);
    // A content reader takes the body whatever its Content-Type: httplib
    // would parse a form-encoded one (curl --data-binary's default type)
    // under a small limit of its own.
    http.Post("/api/images", [this](const httplib::Request& req, httplib::Response& res,
                                     const httplib::ContentReader& read) {
      guard(res, [&] { post_image(req, res, read); });
    });
    api_get("/api/image", &Impl::get_image);
    api_get("/api/layers", &Impl::get_layers);
    api_get("/api/labels", &Impl::get_labels);
    api_get("/api/classify", &Impl::get_classify);
    api_get("/api/segments", &Impl::get_segments);
    api_get("/api/maps", &Impl::get_maps);
    api_get("/api/map", &Impl::get_map);
  }

  void api_get(const char* path, Handler handler) {
    http.Get(path, [this, handler](const httplib::Request& req, httplib::Response& res) {
      guard(res, [&] { (this->*handler)(req, res); });
    });
  }

  // Access control before routing, timing and headers after it, and JSON
  // bodies for the errors httplib answers itself.
  void hooks() {
    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      request_start = Clock::now();
      const bool api = req.path.rfind("/api/", 0) == 0;
      const std::string why = (api || opts.token.empty()) ? refused(req) : "";
      if (!why.empty()) {
        send_error(res, 403, "forbidden: " + why);
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });
    http.set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
      char timing[64];
      std::snprintf(timing, sizeof(timing), "total;dur=%.3f", ms_since(request_start));
      res.set_header("Server-Timing", timing);
      res.set_header("X-Content-Type-Options", "nosniff");
    });
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      if (res.status == 413) {
        send_error(res, 413, "upload: larger than the server's limit");
      } else if (res.status == 404) {
        send_error(res, 404, "'" + req.path + "': not found");
      } else {
        send_error(res, res.status, "request refused (HTTP " + std::to_string(res.status) + ")");
      }
    });
  }

  void get_info(const httplib::Request&, httplib::Response& res) {
    const ExplorerOptions& o = explorer.options();
    const ExplorerStats st = explorer.stats();
    send_json(res, json{{"version", kVersion},
                        {"model", default_model()},
                        {"images", explorer.images().size()},
                        {"token", !opts.token.empty()},
                        {"max_upload_bytes", o.max_upload_bytes},
                        {"max_pixels", o.max_pixels},
                        {"queue", o.queue},
                        {"stats",
                         {{"jobs_done", st.jobs_done},
                          {"jobs_cancelled", st.jobs_cancelled},
                          {"jobs_rejected", st.jobs_rejected},
                          {"cache_hits", st.cache_hits},
                          {"cache_misses", st.cache_misses},
                          {"cached_sets", st.cached_sets},
                          {"cache_bytes", st.cache_bytes},
                          {"queued", st.queued}}}});
  }

  void get_colormaps(const httplib::Request&, httplib::Response& res) {
    json doc = json::object();
    for (const std::string& name : colormap_names()) {
      json table = json::array();
      const Colormap colormap(name);  // table() refers into it
      for (const cv::Vec3b& c : colormap.table()) {
        table.push_back(
            json{static_cast<int>(c[0]), static_cast<int>(c[1]), static_cast<int>(c[2])});
      }
      doc[name] = std::move(table);
    }
    send_json(res, doc);
    res.set_header("Cache-Control", "max-age=3600");
  }

  void get_models(const httplib::Request&, httplib::Response& res) {
    json models = json::array();
    for (const ModelEntry& m : explorer.models()) {
      models.push_back(json{{"name", m.name},
                            {"arch", m.arch},
                            {"classes", m.classes},
                            {"weights", m.weights},
                            {"task", m.task},
                            {"problem", m.problem}});
    }
    send_json(res, json{{"default", default_model()}, {"models", models}});
  }

  void get_methods(const httplib::Request&, httplib::Response& res) {
    json methods = json::array();
    for (const MethodDef& m : method_table()) {
      json scores = json::array();
      for (ScoreKind k : m.scores) scores.push_back(score_name(k));
      methods.push_back(
          json{{"name", m.name},
               {"summary", m.summary},
               {"kind", map_kind_name(m.output)},
               {"layers", explorer_layer_use(m)},
               {"scores", scores},
               {"counterfactual", m.counterfactual},
               {"views", kind_views(m.output)},
               {"tasks", m.detectors_only
                             ? json::array({task_name(Task::kDetect)})
                             : json::array({task_name(Task::kClassify), task_name(Task::kDetect),
                                            task_name(Task::kSegment)})}});
    }
    send_json(res, json{{"default", default_method().name}, {"methods", methods}});
  }

  void get_images(const httplib::Request&, httplib::Response& res) {
    auto list = [](const std::vector<ImageRef>& refs) {
      json out = json::array();
      for (const ImageRef& r : refs) out.push_back(json{{"id", r.id}, {"name", r.name}});
      return out;
    };
    send_json(res,
              json{{"images", list(explorer.images())}, {"uploads", list(explorer.uploads())}});
  }

  void post_image(const httplib::Request& req, httplib::Response& res,
                  const httplib::ContentReader& read) {
    const Params p(req);
    const std::string name = p.get("name", "upload");
    if (name.size() > kMaxMetadataString) throw Error(ErrorCode::kUsage, "name: too long");
    if (req.is_multipart_form_data()) {
      send_error(res, 415,
                 "upload '" + name + "': send the image's bytes as the body (curl "
                 "--data-binary @photo.jpg), not a multipart form");
      return;
    }
    const size_t limit = explorer.options().max_upload_bytes;
    std::string body;
    bool too_large = false;
    const bool complete = read([&](const char* data, size_t size) {
      too_large = body.size() + size > limit;
      if (!too_large) body.append(data, size);
      return !too_large;
    });
    // httplib refuses a Content-Length over the limit before reading.
    const uint64_t declared = req.get_header_value<uint64_t>("Content-Length");
    if (too_large || (!complete && declared > limit)) {
      send_error(res, 413,
                 "upload '" + name + "': larger than the limit of " + std::to_string(limit) +
                     " bytes");
      return;
    }
    if (!complete) throw Error(ErrorCode::kInput, "upload '" + name + "': the body was cut short");
    const ImageRef ref = explorer.add_upload(body, name);
    send_json(res, json{{"id", ref.id}, {"name", ref.name}});
  }

  void get_image(const httplib::Request& req, httplib::Response& res) {
    const std::vector<uint8_t> jpeg = explorer.image_jpeg(Params(req).required("image"));
    res.set_content(std::string(jpeg.begin(), jpeg.end()), "image/jpeg");
    res.set_header("Cache-Control", "max-age=3600");
  }

  void get_layers(const httplib::Request& req, httplib::Response& res) {
    const std::string model = Params(req).get("model", default_model());
    const PeerWatch peer(req);
    const auto layers = explorer.layers(model, [&] { return peer.gone(); });
    send_json(res, json{{"model", model}, {"layers", layers.first}, {"default", layers.second}});
  }

  void get_labels(const httplib::Request& req, httplib::Response& res) {
    const std::string model = Params(req).get("model", default_model());
    const PeerWatch peer(req);
    send_json(res, json{{"model", model},
                        {"labels", explorer.labels(model, [&] { return peer.gone(); })}});
  }

  void get_classify(const httplib::Request& req, httplib::Response& res) {
    const Params p(req);
    const std::string image = p.required("image");
    const std::string model = p.get("model", default_model());
    const int top = static_cast<int>(p.integer("top", 1, kMaxClasses, 5));
    const PeerWatch peer(req);
    const Classification c = explorer.classify(image, model.empty() ? default_model() : model, top,
                                               [&] { return peer.gone(); });
    json preds = json::array();
    for (size_t i = 0; i < c.predictions.size(); ++i) {
      preds.push_back(json{{"index", c.predictions[i].index},
                           {"label", c.labels[i]},
                           {"probability", c.predictions[i].probability},
                           {"logit", c.logits[i]}});
    }
    json doc{{"image", c.image},           {"model", c.model},     {"task", task_name(c.task)},
             {"width", c.width},           {"height", c.height},   {"crop", crop_json(c.box)},
             {"input", input_json(c.box)}, {"predictions", preds}, {"ms", c.ms}};
    if (c.task == Task::kDetect) {
      json found = json::array();
      for (size_t i = 0; i < c.detections.size(); ++i) {
        json d = box_json(c.detections[i], c.labels[i]);
        d["index"] = i;
        found.push_back(std::move(d));
      }
      doc["detections"] = std::move(found);
      doc["min_score"] = c.settings.min_score;
      doc["iou"] = c.settings.iou;
    }
    if (c.task == Task::kSegment) {
      json areas = json::array();
      for (size_t i = 0; i < c.areas.size(); ++i) {
        areas.push_back(json{{"class", c.areas[i].index},
                             {"label", c.labels[i]},
                             {"pixels", c.areas[i].pixels},
                             {"share", c.areas[i].share}});
      }
      doc["segments"] = std::move(areas);
      doc["grid"] = json{{"width", c.grid_width}, {"height", c.grid_height}};
    }
    send_json(res, doc);
  }

  // A segmenter's class of each pixel of its output grid, as little-endian
  // uint16, row by row.
  void get_segments(const httplib::Request& req, httplib::Response& res) {
    const Params p(req);
    const std::string model = p.get("model", default_model());
    const PeerWatch peer(req);
    const SegmentGrid g = explorer.segments(
        p.required("image"), model.empty() ? default_model() : model, [&] { return peer.gone(); });
    std::string bytes(g.labels.size() * 2, '\0');
    for (size_t i = 0; i < g.labels.size(); ++i) {
      bytes[2 * i] = static_cast<char>(g.labels[i] & 0xff);
      bytes[2 * i + 1] = static_cast<char>(g.labels[i] >> 8);
    }
    res.set_content(bytes, "application/octet-stream");
    res.set_header("X-Grid-Width", std::to_string(g.width));
    res.set_header("X-Grid-Height", std::to_string(g.height));
  }

  // A map request whose class= is an index or a label, as --class takes
  // them. An index is checked against the model's classes with the map's
  // computation; a label needs the model's labels first.
  MapRequest request_with_class(const Params& p, const PeerWatch& peer) {
    MapRequest r = map_request(p, default_model());
    const std::string text = p.get("class");
    if (text.empty()) return r;
    if (std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); })) {
      r.cls = p.integer("class", 0, kMaxClasses - 1, 0);
      return r;
    }
    ModelInfo classes;
    classes.labels = explorer.labels(r.model, [&] { return peer.gone(); });
    r.cls = parse_class(text, classes, static_cast<int64_t>(classes.labels.size()), "class");
    return r;
  }

  void get_maps(const httplib::Request& req, httplib::Response& res) {
    const PeerWatch peer(req);
    const MapSetResult r = explorer.maps(request_with_class(Params(req), peer), [&] { return peer.gone(); });
    const MapSet& s = *r.set;
    json layers = json::array();
    for (const ExplorerMap& m : s.maps) {
      const MapRange range = map_range(m.raw);
      layers.push_back(json{{"layer", m.layer},
                            {"head", m.head < 0 ? json(nullptr) : json(m.head)},
                            {"kind", map_kind_name(m.kind)},
                            {"shape", m.raw.shape},
                            {"min", range.min},
                            {"max", range.max}});
    }
    json doc{{"image", s.request.image},
             {"model", s.request.model},
             {"task", task_name(s.task)},
             {"method", s.method->name},
             {"class", *s.request.cls},
             {"label", s.label},
             {"probability", s.probability},
             {"score", s.method->scores.empty() ? json(nullptr) : json(score_name(s.score.kind))},
             {"counterfactual", s.score.counterfactual},
             {"kind", map_kind_name(s.method->output)},
             {"input_width", s.input_width},
             {"input_height", s.input_height},
             {"width", s.width},
             {"height", s.height},
             {"crop", crop_json(s.box)},
             {"input", input_json(s.box)},
             {"layers", layers},
             {"cached", r.cached},
             {"compute_ms", s.compute_ms},
             {"queue_ms", r.queue_ms}};
    if (s.target) {
      doc["box"] = s.request.box;
      doc["target"] = box_json(*s.target, s.label);
      doc["matched"] = s.matched;
    }
    send_json(res, doc);
  }

  // One map as .npy (raw), u8 (a layer map's grey bytes) or PNG (a view).
  void get_map(const httplib::Request& req, httplib::Response& res) {
    const Params p(req);
    const std::string format = p.get("format", "png");
    if (format != "u8" && format != "png" && format != "npy") {
      throw Error(ErrorCode::kUsage, "format '" + format + "': not u8, png or npy");
    }
    const PeerWatch peer(req);
    const MapSetResult r = explorer.maps(request_with_class(p, peer), [&] { return peer.gone(); });
    const MapSet& s = *r.set;
    const ExplorerMap& m = find_map(s, p);
    if (format == "npy") {
      res.set_content(encode_npy(m.raw), "application/octet-stream");
      const std::string file = s.method->name + (m.layer.empty() ? "" : "_" + m.layer) +
                               (m.head < 0 ? "" : "_head" + std::to_string(m.head)) +
                               (s.target ? "_d" + file_word(s.request.box) + "-c" : "_c") +
                               std::to_string(*s.request.cls) + ".npy";
      res.set_header("Content-Disposition", "attachment; filename=\"" + file + "\"");
      return;
    }
    const Colormap colormap(m.kind == MapKind::kLayerMap ? p.get("colormap", "jet") : "jet");
    MapPictures pictures(m.raw, m.kind, s.input_width, s.input_height, colormap);
    if (format == "u8") {
      if (m.kind != MapKind::kLayerMap) {
        throw Error(ErrorCode::kUsage, "format u8: only for layer maps (" + s.method->name +
                                           "'s are in input space: format png)");
      }
      const cv::Mat& g = pictures.get("gray");
      res.set_content(std::string(reinterpret_cast<const char*>(g.data), g.total()),
                      "application/octet-stream");
      res.set_header("X-Map-Width", std::to_string(g.cols));
      res.set_header("X-Map-Height", std::to_string(g.rows));
      return;
    }
    const std::vector<uint8_t> png =
        encode_png(pictures.get(view_variant(m.kind, p)), PixelOrder::kRgb);
    res.set_content(std::string(png.begin(), png.end()), "image/png");
  }
};

Server::Server(Explorer& explorer, ServerOptions options)
    : impl_(std::make_unique<Impl>(explorer, std::move(options))) {
  Impl& s = *impl_;
  const int threads = std::max(2, s.opts.threads);
  s.http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // Uploads past the limit are refused from their Content-Length, unread.
  s.http.set_payload_max_length(explorer.options().max_upload_bytes);
  s.http.set_read_timeout(10, 0);
  s.http.set_write_timeout(10, 0);
  s.http.set_keep_alive_timeout(5);
  s.http.set_keep_alive_max_count(1000);
  s.http.set_tcp_nodelay(true);
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a
  // second server binds the same port and takes half of the requests.
  s.http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  s.routes();
}

Server::~Server() {
  if (impl_->http.is_running()) impl_->http.stop();
}

int Server::bind() {
  Impl& s = *impl_;
  const std::string where = s.opts.host + ":" + std::to_string(s.opts.port);
  if (s.opts.port == 0) {
    s.port = s.http.bind_to_any_port(s.opts.host);
    if (s.port <= 0) throw Error(ErrorCode::kUsage, "--host " + s.opts.host + ": cannot bind");
  } else {
    if (!s.http.bind_to_port(s.opts.host, s.opts.port)) {
      throw Error(ErrorCode::kUsage,
                  where + ": cannot listen there (in use, or not an address of this machine)");
    }
    s.port = s.opts.port;
  }
  return s.port;
}

void Server::run() {
  if (!impl_->stop_requested) impl_->http.listen_after_bind();
  impl_->finished = true;
}

void Server::stop() {
  // A stop that comes between bind() and the listening loop's start (a
  // SIGTERM right after the URL is printed) must not be lost: httplib's
  // stop() does nothing until the loop runs, so wait for it, a while.
  impl_->stop_requested = true;
  for (int i = 0; i < 500 && !impl_->http.is_running() && !impl_->finished; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (impl_->http.is_running()) impl_->http.stop();
}

}  // namespace cnnviz
