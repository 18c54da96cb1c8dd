#include "evaluate.h"

#include <cstdio>
#include <ostream>

#include "cnnviz/core/error.h"
#include "cnnviz/core/json_util.h"
#include "cnnviz/core/limits.h"
#include "cnnviz/methods/methods.h"
#include "cnnviz/run/inputs.h"
#include "cnnviz/run/progress.h"

namespace cnnviz::cli {

CLI::App* setup_evaluate(CLI::App& app, EvaluateCliOptions& opts) {
  CLI::App* sub = app.add_subcommand(
      "evaluate",
      "Faithfulness of methods' maps: deletion/insertion AUC, Average Drop/Increase, "
      "model-randomization check");
  add_input_options(*sub, opts.inputs);
  add_model_options(*sub, opts.model);
  std::vector<std::string> names;
  for (const MethodDef& m : method_table()) names.push_back(m.name);
  sub->add_option("--method", opts.evaluate.methods,
                  "Method(s) to evaluate (repeatable or comma-separated)")
      ->required()
      ->delimiter(',')
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->check(CLI::IsMember(names));
  sub->add_option("--layer", opts.evaluate.layer,
                  "Layer of the layer methods (default: the model's Grad-CAM layer)");
  // Set when given, even empty: `--class ''` is an error, not the default.
  sub->add_option_function<std::string>(
      "--class", [o = &opts.evaluate](const std::string& v) { o->target_class = v; },
      "Target class: index or label (default: each image's top-1)");
  sub->add_option("--steps", opts.evaluate.curves.steps, "Points of each curve")
      ->check(CLI::Range(1, kMaxSamples))
      ->capture_default_str();
  sub->add_option("--blur-sigma", opts.evaluate.curves.blur_sigma,
                  "Gaussian sigma (pixels) of the insertion curve's start image")
      ->check(CLI::Range(0.1, 1000.0))
      ->capture_default_str();
  sub->add_option("--eval-batch", opts.evaluate.curves.batch, "Images per forward pass")
      ->check(CLI::Range(1, kMaxSampleBatch))
      ->capture_default_str();
  sub->add_flag(
      "--no-randomization", [o = &opts.evaluate](int64_t) { o->randomization = false; },
      "Skip the model-randomization sanity check");
  sub->add_option("--seed", opts.evaluate.seed, "Seed of the randomized weights")
      ->capture_default_str();
  sub->add_flag(
      "--no-plots", [o = &opts.evaluate](int64_t) { o->plots = false; },
      "Do not write the curves' PNG plots");
  sub->add_option("-o,--outdir", opts.evaluate.outdir, "Output directory")->capture_default_str();
  sub->add_flag("--json", opts.json, "Print evaluate.json to stdout instead of the table");
  return sub;
}

// The summary table: which way each column is better on a second header
// line, and the randomization columns, when the check ran, by how many of
// the top layers were randomized.
void print_table(const nlohmann::ordered_json& doc, std::ostream& out) {
  std::string levels, better;
  for (const auto& level : doc.value("randomization_levels", nlohmann::ordered_json::array())) {
    levels += (levels.empty() ? "" : " ") + std::to_string(level.value("top", 0));
  }
  if (!levels.empty()) levels = "rank corr, top " + levels + " layers randomized";
  char line[256];
  auto emit = [&out](std::string text) {  // no trailing blanks without the check
    text.erase(text.find_last_not_of(' ') + 1);
    out << text << "\n";
  };
  std::snprintf(line, sizeof(line), "%-22s %8s %8s %9s %9s  %s", "method", "del AUC", "ins AUC",
                "avg drop", "increase", levels.c_str());
  emit(line);
  std::snprintf(line, sizeof(line), "%-22s %8s %8s %9s %9s  %s", "(better)", "lower", "higher",
                "lower", "higher", levels.empty() ? "" : "lower (the map follows the weights)");
  emit(line);
  for (const auto& [name, s] : doc["summary"].items()) {
    std::string rho;
    for (const auto& r : s.value("randomization_spearman", nlohmann::ordered_json::array())) {
      char v[16];
      std::snprintf(v, sizeof(v), "%s%.2f", rho.empty() ? "" : " ", r.get<double>());
      rho += v;
    }
    std::snprintf(line, sizeof(line), "%-22s %8.3f %8.3f %8.1f%% %8.1f%%  %s", name.c_str(),
                  s["deletion_auc"].get<double>(), s["insertion_auc"].get<double>(),
                  s["average_drop_pct"].get<double>(), s["increase_pct"].get<double>(),
                  rho.c_str());
    emit(line);
  }
}

int run_evaluate(EvaluateCliOptions& opts, std::ostream& out, std::ostream& err) {
  const std::vector<std::string> all = collect_inputs(opts.inputs, err);
  const Shard shard = parse_shard(opts.inputs.shard);
  std::vector<std::string> images;
  for (size_t p : shard_positions(all.size(), shard)) images.push_back(all[p]);
  if (shard.active()) opts.evaluate.report_name = "evaluate." + shard.name() + ".json";
  opts.evaluate.max_pixels = opts.inputs.max_pixels;
  if (!opts.evaluate.layer.empty()) opts.model.onnx_values = {opts.evaluate.layer};
  Model model = open_model(opts.model, err);
  Progress progress(err, images.size(), !opts.inputs.quiet && stderr_is_terminal());
  size_t failed = 0;
  nlohmann::ordered_json doc = evaluate(model, images, opts.evaluate, progress, failed);
  if (opts.json) {
    out << dump_json(doc, 2) << "\n";
  } else {
    print_table(doc, out);
    out << "(" << doc["images"].size() - failed << " images; details in " << opts.evaluate.outdir
        << "/" << opts.evaluate.report_name << ")\n";
  }
  if (!opts.inputs.quiet) progress.summary(interrupted());
  if (interrupted()) return kInterruptedExit;
  return failed > 0 ? static_cast<int>(ErrorCode::kInput) : 0;
}

}  // namespace cnnviz::cli
