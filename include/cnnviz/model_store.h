// Finding a model by name: `-m vgg16` means `<models dir>/vgg16.pt`.
#ifndef CNNVIZ_MODEL_STORE_H_
#define CNNVIZ_MODEL_STORE_H_

#include <string>
#include <vector>

namespace cnnviz {

// The directory searched when $CNNVIZ_MODELS is unset: the source tree's
// models/ (where scripts/export_models.py writes), fixed at build time.
std::string builtin_models_dir();

// Names (file stems) of the "*.pt" files in `dir`, sorted; empty when the
// directory does not exist.
std::vector<std::string> list_models(const std::string& dir);

// Returns the file to load for `name_or_path`: the path itself when it names
// an existing file or contains a '/' or ends in ".pt", else `dir`/NAME.pt.
// Throws Error(kModel) when nothing is found; the message lists the models in
// `dir` and the command that exports one.
std::string resolve_model(const std::string& name_or_path, const std::string& dir);

}  // namespace cnnviz

#endif  // CNNVIZ_MODEL_STORE_H_
