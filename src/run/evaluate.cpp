#include "cnnviz/run/evaluate.h"

#include <ATen/ATen.h>

#include <map>
#include <memory>

#include "cnnviz/core/engine.h"
#include "cnnviz/core/error.h"
#include "cnnviz/core/formats.h"
#include "cnnviz/core/json_util.h"
#include "cnnviz/core/targets.h"
#include "cnnviz/core/version.h"
#include "cnnviz/io/files.h"
#include "cnnviz/io/image.h"
#include "cnnviz/io/png.h"
#include "cnnviz/io/preprocess.h"
#include "cnnviz/io/render.h"
#include "cnnviz/methods/compute.h"
#include "cnnviz/methods/layers.h"
#include "cnnviz/run/manifest.h"
#include "cnnviz/run/progress.h"

namespace cnnviz {

namespace {

using json = nlohmann::ordered_json;

// A method under evaluation: its settings (its own score: the logit,
// mostly), its layers and the engine that computes its maps.
struct EvalMethod {
  const MethodDef* def;
  MethodParams params;
  std::vector<std::string> layers;
  std::unique_ptr<Engine> engine;
};

// An image evaluated under the trained model, for the randomization phase.
struct Done {
  at::Tensor x;
  int64_t cls;
  std::vector<at::Tensor> maps;  // per method
};

// The method's summary map for the one image of x, as an [H,W] importance map.
at::Tensor importance(const Engine& engine, const EvalMethod& m, const at::Tensor& x, int64_t cls) {
  BatchMaps maps = compute_maps(engine, *m.def, x, fixed_class(cls), m.params);
  const std::vector<MethodMap>& all = maps.maps.at(0);
  return importance_map(all.at(m.def->summary_map(all.size())).value[0], x.size(2), x.size(3))
      .contiguous();
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

std::vector<EvalMethod> eval_methods(const Model& model, const EvaluateOptions& options) {
  if (options.methods.empty()) throw Error(ErrorCode::kUsage, "evaluate: no --method given");
  std::vector<EvalMethod> methods;
  for (const std::string& name : options.methods) {
    const MethodDef& def = find_method(name);
    methods.push_back(
        {&def,
         run_params(def, options.params, model.info(), method_score(def, std::nullopt, false)),
         {},
         nullptr});
  }
  // One engine per method (their layers differ).
  for (EvalMethod& m : methods) {
    LayerRequest request;
    if (!options.layer.empty()) request.layers = {options.layer};
    m.layers = method_layers(model, *m.def, request);
    m.engine = std::make_unique<Engine>(model, m.layers, std::nullopt, m.def->lrp,
                                        !m.def->forward_only());
  }
  return methods;
}

json evaluate_header(const Model& model, const std::vector<EvalMethod>& methods,
                     const EvaluateOptions& options) {
  json doc;
  doc["format"] = format_name(Format::kEvaluate);
  doc["format_version"] = format_version(Format::kEvaluate);
  doc["cnnviz_version"] = kVersion;
  doc["model"] = model_json(model.info());
  doc["device"] = model.device().str();
  doc["methods"] = json::object();
  for (const EvalMethod& m : methods) doc["methods"][m.def->name] = {{"layers", m.layers}};
  doc["options"] = {{"class", options.target_class ? json(*options.target_class) : json(nullptr)},
                    {"steps", options.curves.steps},
                    {"blur_sigma", options.curves.blur_sigma},
                    {"randomization", options.randomization},
                    {"seed", options.seed}};
  doc["images"] = json::array();
  return doc;
}

// One method's faithfulness on one image, with its curves' plot.
json measure_one(const Model& model, const EvalMethod& m, const Done& d, const at::Tensor& map,
                 const EvaluateOptions& options, const std::string& stem) {
  const LogitsFn logits = [&](const at::Tensor& batch) { return model.logits(batch); };
  const Faithfulness f = measure_faithfulness(logits, d.x, map, d.cls, options.curves);
  json r = {{"deletion_auc", f.deletion_auc},
            {"insertion_auc", f.insertion_auc},
            {"confidence", f.confidence},
            {"masked_confidence", f.masked_confidence},
            {"drop", f.drop},
            {"increase", f.increase},
            {"deletion", f.deletion},
            {"insertion", f.insertion}};
  if (options.plots) {
    const std::string name = std::string("curves_") + m.def->name + ".png";
    write_png(options.outdir + "/" + stem + "/" + name,
              plot_curves(m.def->name + " - " + model.info().label(d.cls), f.deletion,
                          f.deletion_auc, f.insertion, f.insertion_auc),
              PixelOrder::kRgb);
    r["plot"] = stem + "/" + name;
  }
  return r;
}

// Image `path` under the trained model: its class, every method's map and
// faithfulness into `entry`. Throws Error(kInput) for an unreadable image.
Done evaluate_image(const Model& model, const std::vector<EvalMethod>& methods,
                    const std::string& path, const std::string& stem,
                    const EvaluateOptions& options, json& entry) {
  const ModelInfo& info = model.info();
  const cv::Mat rgb = read_image_rgb(path, options.max_pixels);
  Done d;
  d.x = preprocess(rgb, info.preprocess).unsqueeze(0);
  at::Tensor top = model.logits(d.x);
  d.cls = options.target_class ? parse_class(*options.target_class, info, top.size(1))
                               : top.argmax(1).item<int64_t>();
  entry["class"] = d.cls;
  entry["label"] = info.label(d.cls);
  entry["methods"] = json::object();
  check_image_dir(options.outdir, stem);
  make_output_dir(options.outdir + "/" + stem);
  for (const EvalMethod& m : methods) {
    at::Tensor map = importance(*m.engine, m, d.x, d.cls);
    entry["methods"][m.def->name] = measure_one(model, m, d, map, options, stem);
    d.maps.push_back(map);
  }
  return d;
}

// The same maps under cascading randomizations of the top layers: each
// image's Spearman correlation with its trained map, level by level.
json randomization_phase(const Model& model, const std::vector<EvalMethod>& methods,
                         const std::vector<std::optional<Done>>& done,
                         const EvaluateOptions& options, json& images) {
  const std::vector<std::string> all = parametrized_layers(model);
  json level_doc = json::array();
  for (size_t top : levels(all.size())) {
    std::vector<std::string> randomized;
    Model copy = randomized_copy(model, top, options.seed, &randomized);
    level_doc.push_back({{"top", top}, {"layers", randomized}});
    for (size_t m = 0; m < methods.size(); ++m) {
      Engine engine(copy, methods[m].layers, std::nullopt, methods[m].def->lrp,
                    !methods[m].def->forward_only());
      for (size_t i = 0; i < done.size() && i < images.size(); ++i) {
        if (!done[i]) continue;
        at::Tensor map = importance(engine, methods[m], done[i]->x, done[i]->cls);
        images[i]["methods"][methods[m].def->name]["randomization"].push_back(
            spearman(done[i]->maps[m], map));
      }
    }
  }
  return level_doc;
}

// Each method's means over the images that worked.
json summarize(const json& images, const std::vector<EvalMethod>& methods) {
  json summary = json::object();
  for (const EvalMethod& em : methods) {
    const std::string& name = em.def->name;
    std::vector<double> del, ins, drop, inc;
    std::vector<std::vector<double>> rho;
    for (const json& e : images) {
      if (!e.contains("methods")) continue;
      const json& r = e["methods"][name];
      del.push_back(r["deletion_auc"]);
      ins.push_back(r["insertion_auc"]);
      drop.push_back(r["drop"]);
      inc.push_back(r["increase"].get<bool>() ? 1.0 : 0.0);
      if (!r.contains("randomization")) continue;
      const auto& v = r["randomization"];
      if (rho.size() < v.size()) rho.resize(v.size());
      for (size_t k = 0; k < v.size(); ++k) rho[k].push_back(v[k].get<double>());
    }
    json s = {{"images", del.size()},
              {"deletion_auc", mean(del)},
              {"insertion_auc", mean(ins)},
              {"average_drop_pct", 100 * mean(drop)},
              {"increase_pct", 100 * mean(inc)}};
    s["randomization_spearman"] = json::array();
    for (const auto& r : rho) s["randomization_spearman"].push_back(mean(r));
    summary[name] = std::move(s);
  }
  return summary;
}

}  // namespace

json evaluate(const Model& model, const std::vector<std::string>& images,
              const EvaluateOptions& options, Progress& progress, size_t& failed) {
  const std::vector<EvalMethod> methods = eval_methods(model, options);
  make_output_dir(options.outdir);
  json doc = evaluate_header(model, methods, options);
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
      done[i] = evaluate_image(model, methods, images[i], stems[i], options, entry);
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
  if (options.randomization && !interrupted()) {
    doc["randomization_levels"] = randomization_phase(model, methods, done, options, doc["images"]);
  }
  doc["summary"] = summarize(doc["images"], methods);
  doc["failed"] = failed;
  const std::string text = dump_json(doc, 2) + "\n";
  write_file_atomic(options.outdir + "/" + options.report_name, text.data(), text.size());
  return doc;
}

}  // namespace cnnviz
