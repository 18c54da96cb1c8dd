// The one table of visualization methods.
#include "cnnviz/error.h"
#include "cnnviz/methods.h"

namespace cnnviz {

namespace methods {
std::vector<MethodMap> saliency(Capture&);
std::vector<MethodMap> guided_backprop(Capture&);
std::vector<MethodMap> deconvnet(Capture&);
std::vector<MethodMap> gradcam(Capture&);
std::vector<MethodMap> guided_gradcam(Capture&);
std::vector<MethodMap> cam(Capture&);
}  // namespace methods

const std::vector<MethodDef>& method_table() {
  static const std::vector<MethodDef> table = {
      {"guided-backprop", "Guided backpropagation: input gradient through guided ReLUs", false,
       nullptr, methods::guided_backprop},
      {"deconvnet", "Deconvnet: input gradient through ReLUs that pass max(g, 0)", false, nullptr,
       methods::deconvnet},
      {"saliency", "Saliency: the vanilla input gradient of the class score", false, nullptr,
       methods::saliency},
      {"gradcam", "Grad-CAM at one layer or every feature layer", true, nullptr, methods::gradcam},
      {"guided-gradcam", "Guided Grad-CAM: guided backprop times the upsampled Grad-CAM map", true,
       nullptr, methods::guided_gradcam},
      {"cam", "CAM (Zhou et al.) for global-average-pooling heads", false, kGlobalPoolInput,
       methods::cam},
  };
  return table;
}

const MethodDef& find_method(const std::string& name) {
  std::string known;
  for (const MethodDef& m : method_table()) {
    if (name == m.name) return m;
    known += (known.empty() ? "" : ", ") + std::string(m.name);
  }
  throw Error(ErrorCode::kUsage, "unknown method '" + name + "' (known: " + known + ")");
}

}  // namespace cnnviz
