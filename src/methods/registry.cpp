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
std::vector<MethodMap> gradient_input(Capture&);
std::vector<MethodMap> smoothgrad(Capture&);
std::vector<MethodMap> integrated_gradients(Capture&);
std::vector<MethodMap> gradcam_plus_plus(Capture&);
std::vector<MethodMap> xgradcam(Capture&);
std::vector<MethodMap> layercam(Capture&);
std::vector<MethodMap> hirescam(Capture&);
std::vector<MethodMap> scorecam(Capture&);
std::vector<MethodMap> eigencam(Capture&);
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
      {"gradient-input", "Gradient x input: the input times its vanilla gradient", false, nullptr,
       methods::gradient_input},
      {"smoothgrad", "SmoothGrad: saliency or guided backprop averaged over noisy copies", false,
       nullptr, methods::smoothgrad, kParamSamples | kParamSampleBatch},
      {"integrated-gradients", "Integrated Gradients from a black or blurred baseline", false,
       nullptr, methods::integrated_gradients, kParamSteps | kParamSampleBatch},
      {"gradcam++", "Grad-CAM++: positive gradients weighted per position", true, nullptr,
       methods::gradcam_plus_plus},
      {"xgradcam", "XGrad-CAM: gradients weighted by normalized activations", true, nullptr,
       methods::xgradcam},
      {"layercam", "Layer-CAM: per-position weights; fused across layers", true, nullptr,
       methods::layercam},
      {"hirescam", "HiResCAM: gradient times activation, summed over channels", true, nullptr,
       methods::hirescam},
      {"scorecam", "Score-CAM: channels weighted by the score of the masked input", true, nullptr,
       methods::scorecam, kParamSampleBatch},
      {"eigencam", "Eigen-CAM: first principal component of the layer output", true, nullptr,
       methods::eigencam},
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
