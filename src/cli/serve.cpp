#include "serve.h"

#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <ostream>
#include <thread>

#include "cnnviz/core/error.h"
#include "cnnviz/run/explorer.h"
#include "cnnviz/run/inputs.h"
#include "cnnviz/run/progress.h"
#include "cnnviz/serve/server.h"

extern char** environ;

namespace fs = std::filesystem;

namespace cnnviz::cli {

namespace {

// Opens `url` in the desktop's browser (xdg-open), without waiting for it.
void open_browser(const std::string& url, std::ostream& err) {
  const char* argv[] = {"xdg-open", url.c_str(), nullptr};
  pid_t pid = 0;
  if (posix_spawnp(&pid, "xdg-open", nullptr, nullptr, const_cast<char* const*>(argv), environ) !=
      0) {
    err << kPrefix << "warning: --open: xdg-open is not available; open " << url << " yourself\n";
  }
}

// The images to offer (notes about them on `err` unless quiet), the
// directories to search, and the limits.
ExplorerOptions explorer_options(const ServeOptions& opts, std::ostream& err) {
  ExplorerOptions eo;
  if (!opts.images.empty()) {
    ExpandedInputs in = expand_inputs(opts.images, "", std::cin);
    eo.images = std::move(in.images);
    if (!opts.quiet) {
      for (const std::string& note : in.notes) err << kPrefix << note << "\n";
    }
    for (const std::string& arg : opts.images) {
      std::error_code ec;
      if (fs::is_directory(arg, ec)) eo.roots.push_back(arg);
    }
  }
  eo.max_pixels = opts.max_pixels;
  eo.test_job_delay_ms = test_seams().job_delay_ms;
  eo.queue = static_cast<size_t>(opts.queue);
  eo.cache_bytes = static_cast<size_t>(opts.cache_mb) << 20;
  eo.max_upload_bytes = static_cast<size_t>(opts.max_upload_mb) << 20;
  return eo;
}

// The -m model as the page's list of models shows it.
ModelEntry first_entry(const Model& model) {
  ModelEntry first;
  first.name = fs::path(model.info().path).stem().string();
  first.path = model.info().path;
  first.dir_source = "-m";
  first.arch = model.info().arch;
  first.task = task_name(model.info().task);
  first.weights = weights_kind_name(model.info().weights_kind);
  first.classes = !model.info().labels.empty() ? static_cast<int64_t>(model.info().labels.size())
                                               : model.info().num_classes;
  return first;
}

// The -m model, then the others of the search path a name reaches.
ModelLister model_lister(const ModelEntry& first, const std::vector<ModelDir>& search) {
  return [first, search] {
    std::vector<ModelEntry> all{first};
    for (ModelEntry& e : find_models(search)) {
      if (!e.shadowed && e.name != first.name) all.push_back(std::move(e));
    }
    return all;
  };
}

// The -m model itself for its name; any other the lister names, loaded on
// the same device.
ModelLoader model_loader(const Model& model, const ModelEntry& first, const ModelLister& lister) {
  return [model, first, lister](const std::string& name) {
    if (name == first.name) return model;
    for (const ModelEntry& e : lister()) {
      if (e.name == name) return Model::load(e.path, model.device());
    }
    throw NotFound("model '" + name + "': not among the server's models");
  };
}

// The -m model, with the ONNX values of --layer loaded as layers; a name
// that is not one is refused.
Model open_served_model(const ServeOptions& opts, std::ostream& err) {
  ModelOptions mo = opts.model;
  mo.onnx_values = opts.layers;
  Model model = open_model(mo, err);
  for (const std::string& l : opts.layers) {
    if (model.info().layer_aliases.count(l) == 0) {
      throw Error(ErrorCode::kUnsupported, "--layer '" + l + "': not a value of model '" +
                                               model.info().name +
                                               "' (serve --layer takes an ONNX model's values)");
    }
  }
  return model;
}

// Off loopback, a request without the token is refused: one is made up when
// none is given.
ServerOptions server_options(const ServeOptions& opts) {
  ServerOptions so;
  so.host = opts.host;
  so.port = opts.port;
  so.token = opts.token;
  if (so.token.empty() && !is_loopback_host(so.host)) so.token = make_token();
  if (const char* dir = std::getenv("CNNVIZ_SERVE_ASSETS")) so.assets_dir = dir;
  return so;
}

std::string page_url(const ServerOptions& so, int port) {
  const bool v6 = so.host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + so.host + "]" : so.host) + ":" + std::to_string(port) + "/" +
         (so.token.empty() ? "" : "?token=" + so.token);
}

// Runs the server on a thread of its own until Ctrl-C, or until it ends.
void serve_until_interrupted(Server& server) {
  std::atomic<bool> ended{false};
  std::thread http([&server, &ended] {
    server.run();
    ended = true;
  });
  while (!interrupted() && !ended) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  server.stop();
  http.join();
}

}  // namespace

CLI::App* setup_serve(CLI::App& app, ServeOptions& opts) {
  CLI::App* sub = app.add_subcommand(
      "serve",
      "Explore images in the browser: classes, every layer's map from one pass, methods side "
      "by side (a local web server)");
  sub->add_option("images", opts.images,
                  "Images, or directories of images, to offer on the page (more can be "
                  "uploaded)");
  add_model_options(*sub, opts.model);
  sub->add_option("--layer", opts.layers,
                  "Also offer this value of an ONNX model as a layer, beside its stages "
                  "(repeatable)")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sub->add_option("--host", opts.host,
                  "Address to listen on; anything but a loopback address requires a token")
      ->capture_default_str();
  sub->add_option("--port", opts.port, "Port to listen on (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  sub->add_option("--token", opts.token,
                  "Secret every API request must carry (X-Cnnviz-Token header or token= in the "
                  "URL); made up and printed when --host is not a loopback address")
      ->envname("CNNVIZ_TOKEN");
  sub->add_option("--queue", opts.queue,
                  "Requests that may wait for the model at once; more get 503 and Retry-After")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  sub->add_option("--cache-mb", opts.cache_mb, "Memory for computed maps (MiB, LRU)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  sub->add_option("--max-upload-mb", opts.max_upload_mb, "Largest image upload (MiB)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  sub->add_option("--max-pixels", opts.max_pixels,
                  "Images (and uploads) whose header declares more pixels fail before decoding")
      ->check(CLI::Range(int64_t{1}, kMaxMaxPixels));
  sub->add_flag("--open", opts.open, "Open the page in the desktop's browser (xdg-open)");
  sub->add_flag("-q,--quiet", opts.quiet, "Print only the URL");
  return sub;
}

int run_serve(const ServeOptions& opts, std::ostream& out, std::ostream& err) {
  ExplorerOptions eo = explorer_options(opts, err);
  const Model model = open_served_model(opts, opts.quiet ? std::cerr : err);
  const ModelEntry first = first_entry(model);
  eo.default_model = first.name;
  const ModelLister lister =
      model_lister(first, models_search_path(opts.model.models_dir, opts.model.models_dir_option));
  const ServerOptions so = server_options(opts);

  Explorer explorer(eo, model_loader(model, first, lister), lister);
  for (const std::string& warning : explorer.warnings()) {
    err << kPrefix << "warning: " << warning << "\n";
  }
  if (!eo.images.empty() && explorer.images().empty()) {
    throw Error(ErrorCode::kInput, "serve: none of the images given can be served");
  }
  if (!opts.quiet) {
    for (const std::string& note : explorer.notes()) err << kPrefix << "note: " << note << "\n";
  }
  Server server(explorer, so);
  const std::string url = page_url(so, server.bind());
  out << url << std::endl;
  if (!opts.quiet) {
    err << kPrefix << "serving " << explorer.images().size() << " images with model '" << first.name
        << "' at " << url << " (Ctrl-C stops)\n";
  }
  if (opts.open) open_browser(url, err);
  serve_until_interrupted(server);
  if (!opts.quiet) err << kPrefix << "stopped\n";
  return 0;
}

}  // namespace cnnviz::cli
