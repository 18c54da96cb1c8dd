#include "cnnviz/evaluate.h"

#include <ATen/ATen.h>

#include <map>
#include <memory>

#include "cnnviz/compute.h"
#include "cnnviz/engine.h"
#include "cnnviz/error.h"
#include "cnnviz/files.h"
#include "cnnviz/formats.h"
#include "cnnviz/image.h"
#include "cnnviz/json_util.h"
#include "cnnviz/layers.h"
#include "cnnviz/manifest.h"
#include "cnnviz/png.h"
#include "cnnviz/preprocess.h"
#include "cnnviz/progress.h"
#include "cnnviz/render.h"
#include "cnnviz/targets.h"
#include "cnnviz/version.h"

namespace cnnviz {

namespace {

using json = nlohmann::ordered_json;

// The method's first map for the one image of x, as an [H,W] importance map.
at::Tensor importance(const Engine& engine, const MethodDef& method, const at::Tensor& x,
                      int64_t cls, const MethodParams& params) {
  MethodParams p = params;
  p.score = method_score(method, std::nullopt, false);  // the method's own (the logit, mostly)
  BatchMaps maps = compute_maps(engine, method, x, fixed_class(cls), p);
  return importance_map(maps.maps.at(0).at(0).value[0], x.size(2), x.size(3)).contiguous();
}

// Cascading levels: the top 1, 2, 4, ... parametrized layers, then all.
std::vector<size_t> levels(size_t layers) {
  std::vector<size_t> out;
  for (size_t k = 1; k < layers; k *= 2) out.push_back(k);
  if (layers > 0) out.push_back(layers);
  return out;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

}  // namespace

json evaluate(const Model& model, const std::vector<std::string>& images,
              const EvaluateOptions& options, Progress& progress, size_t& failed) {
  const ModelInfo& info = model.info();
  if (options.methods.empty()) throw Error(ErrorCode::kUsage, "evaluate: no --method given");
  std::vector<const MethodDef*> methods;
  for (const std::string& name : options.methods) methods.push_back(&find_method(name));
  MethodParams params = options.params;
  params.mean = info.preprocess.mean;
  params.std = info.preprocess.std;
  for (const MethodDef* m : methods) {
    if (m->check) m->check(params, info.preprocess.crop, info.preprocess.crop);
  }
  make_output_dir(options.outdir);

  // One engine per method (their layers differ).
  std::vector<std::vector<std::string>> layers;
  std::vector<std::unique_ptr<Engine>> engines;
  for (const MethodDef* m : methods) {
    LayerRequest request;
    if (!options.layer.empty()) request.layers = {options.layer};
    layers.push_back(method_layers(model, *m, request));
    engines.push_back(std::make_unique<Engine>(model, layers.back(), std::nullopt, m->lrp));
  }
  const LogitsFn logits = [&](const at::Tensor& batch) { return model.logits(batch); };

  json doc;
  doc["format"] = format_name(Format::kEvaluate);
  doc["format_version"] = format_version(Format::kEvaluate);
  doc["cnnviz_version"] = kVersion;
  doc["model"] = model_json(info);
  doc["device"] = model.device().str();
  doc["methods"] = json::object();
  for (size_t m = 0; m < methods.size(); ++m) {
    doc["methods"][methods[m]->name] = {{"layers", layers[m]}};
  }
  doc["options"] = {{"class", options.target_class ? json(*options.target_class) : json(nullptr)},
                    {"steps", options.curves.steps},
                    {"blur_sigma", options.curves.blur_sigma},
                    {"randomization", options.randomization},
                    {"seed", options.seed}};
  doc["images"] = json::array();

  // Phase 1: each image's maps and curves under the trained model.
  struct Done {
    at::Tensor x;
    int64_t cls;
    std::vector<at::Tensor> maps;  // per method
  };
  std::vector<std::optional<Done>> done(images.size());
  const std::vector<std::string> stems = unique_stems(images);
  // One evaluation (or shard of one) at a time in OUTDIR, and no image
  // directory that is a link out of it.
  const RunLock lock(options.outdir, options.report_name.substr(0, options.report_name.rfind('.')));
  for (const std::string& stem : stems) check_image_dir(options.outdir, stem);
  failed = 0;
  for (size_t i = 0; i < images.size(); ++i) {
    if (interrupted()) break;
    json entry;
    set_image_name(entry, images[i]);
    entry["dir"] = stems[i];
    try {
      const cv::Mat rgb = read_image_rgb(images[i], options.max_pixels);
      Done d;
      d.x = preprocess(rgb, info.preprocess).unsqueeze(0);
      at::Tensor top = model.logits(d.x);
      d.cls = options.target_class ? parse_class(*options.target_class, info, top.size(1))
                                   : top.argmax(1).item<int64_t>();
      entry["class"] = d.cls;
      entry["label"] = info.label(d.cls);
      entry["methods"] = json::object();
      check_image_dir(options.outdir, stems[i]);
      make_output_dir(options.outdir + "/" + stems[i]);
      for (size_t m = 0; m < methods.size(); ++m) {
        at::Tensor map = importance(*engines[m], *methods[m], d.x, d.cls, params);
        Faithfulness f = measure_faithfulness(logits, d.x, map, d.cls, options.curves);
        entry["methods"][methods[m]->name] = {{"deletion_auc", f.deletion_auc},
                                              {"insertion_auc", f.insertion_auc},
                                              {"confidence", f.confidence},
                                              {"masked_confidence", f.masked_confidence},
                                              {"drop", f.drop},
                                              {"increase", f.increase},
                                              {"deletion", f.deletion},
                                              {"insertion", f.insertion}};
        if (options.plots) {
          const std::string name = std::string("curves_") + methods[m]->name + ".png";
          write_png(options.outdir + "/" + stems[i] + "/" + name,
                    plot_curves(methods[m]->name + " - " + info.label(d.cls), f.deletion,
                                f.deletion_auc, f.insertion, f.insertion_auc),
                    PixelOrder::kRgb);
          entry["methods"][methods[m]->name]["plot"] = stems[i] + "/" + name;
        }
        d.maps.push_back(map);
      }
      done[i] = std::move(d);
      progress.done();
    } catch (const Error& raw) {
      if (raw.code() != ErrorCode::kInput) throw;
      const Error e = with_image_name(raw, images[i]);
      entry["error"] = e.what();
      ++failed;
      progress.failed(e.what());
    }
    doc["images"].push_back(std::move(entry));
  }

  // Phase 2: the same maps under cascading randomizations of the top layers.
  if (options.randomization && !interrupted()) {
    const std::vector<std::string> all = parametrized_layers(model);
    json level_doc = json::array();
    for (size_t top : levels(all.size())) {
      std::vector<std::string> randomized;
      Model copy = randomized_copy(model, top, options.seed, &randomized);
      level_doc.push_back({{"top", top}, {"layers", randomized}});
      for (size_t m = 0; m < methods.size(); ++m) {
        Engine engine(copy, layers[m], std::nullopt, methods[m]->lrp);
        for (size_t i = 0; i < images.size() && i < doc["images"].size(); ++i) {
          if (!done[i]) continue;
          at::Tensor map = importance(engine, *methods[m], done[i]->x, done[i]->cls, params);
          doc["images"][i]["methods"][methods[m]->name]["randomization"].push_back(
              spearman(done[i]->maps[m], map));
        }
      }
    }
    doc["randomization_levels"] = std::move(level_doc);
  }

  // Summary over the images that worked.
  json summary = json::object();
  for (const MethodDef* m : methods) {
    std::vector<double> del, ins, drop, inc;
    std::vector<std::vector<double>> rho;
    for (const json& e : doc["images"]) {
      if (!e.contains("methods")) continue;
      const json& r = e["methods"][m->name];
      del.push_back(r["deletion_auc"]);
      ins.push_back(r["insertion_auc"]);
      drop.push_back(r["drop"]);
      inc.push_back(r["increase"].get<bool>() ? 1.0 : 0.0);
      if (r.contains("randomization")) {
        const auto& v = r["randomization"];
        if (rho.size() < v.size()) rho.resize(v.size());
        for (size_t k = 0; k < v.size(); ++k) rho[k].push_back(v[k].get<double>());
      }
    }
    json s = {{"images", del.size()},
              {"deletion_auc", mean(del)},
              {"insertion_auc", mean(ins)},
              {"average_drop_pct", 100 * mean(drop)},
              {"increase_pct", 100 * mean(inc)}};
    s["randomization_spearman"] = json::array();
    for (const auto& r : rho) s["randomization_spearman"].push_back(mean(r));
    summary[m->name] = std::move(s);
  }
  doc["summary"] = std::move(summary);
  doc["failed"] = failed;
  const std::string text = dump_json(doc, 2) + "\n";
  write_file_atomic(options.outdir + "/" + options.report_name, text.data(), text.size());
  return doc;
}

}  // namespace cnnviz
