// Finding a model by name: `-m vgg16` means the first `vgg16.pt` on the
// models search path.
#ifndef CNNVIZ_CORE_MODEL_STORE_H_
#define CNNVIZ_CORE_MODEL_STORE_H_

#include <cstdint>
#include <string>
#include <vector>

namespace cnnviz {

// One directory on the models search path and why it is there.
struct ModelDir {
  std::string path;
  std::string source;  // e.g. "--models-dir", "user data directory"
};

// The models directory of the user: $XDG_DATA_HOME/cnnviz/models, else
// $HOME/.local/share/cnnviz/models; empty when neither is set.
std::string user_models_dir();

// The directories searched for a model name, in this order:
//  1. `chosen` when its path is not empty (the CLI passes the one of
//     --models-dir, $CNNVIZ_MODELS and the config file that wins);
//  2. the user's models directory (user_models_dir());
//  3. the installation's share/cnnviz/models, found beside the running
//     binary (<bindir>/../share/cnnviz/models), so that a relocated prefix
//     works;
//  4. the source tree's models/ (where scripts/export_models.py writes), only
//     when the running binary is the one in its build tree.
// Directories that do not exist stay on the list (cnnviz models shows them).
std::vector<ModelDir> model_search_path(const ModelDir& chosen);

// Names (file stems) of the "*.pt" files in `dir`, sorted; empty when the
// directory does not exist.
std::vector<std::string> list_models(const std::string& dir);

// Returns the file to load for `name_or_path`: the path itself when it names
// an existing file or contains a '/' or ends in ".pt", else the first
// DIR/NAME.pt along `path`. Throws Error(kModel) when nothing is found; the
// message says where it looked, lists the models there and the command that
// exports one.
std::string resolve_model(const std::string& name_or_path, const std::vector<ModelDir>& path);
std::string resolve_model(const std::string& name_or_path, const std::string& dir);

// What `cnnviz models` shows of one model file, read without loading it.
struct ModelEntry {
  std::string name;  // the file's stem: what -m takes
  std::string path;
  std::string dir_source;  // the ModelDir::source it was found through
  std::string arch;        // empty when unknown
  std::string task;        // classify or segment (task_name)
  std::string weights;     // pretrained, file, random, unknown
  int64_t classes = 0;     // 0 when the metadata does not say
  uint64_t bytes = 0;
  bool shadowed = false;  // an earlier directory has a model of the same name
  std::string problem;    // why the file cannot be used (empty: fine)
};

// Every "*.pt" along `path`, in search order.
std::vector<ModelEntry> find_models(const std::vector<ModelDir>& path);

}  // namespace cnnviz

#endif  // CNNVIZ_CORE_MODEL_STORE_H_
