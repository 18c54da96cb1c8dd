#include "logits.h"

#include "cnnviz/core/error.h"

namespace cnnviz {

at::Tensor logits_of(const c10::IValue& v, const std::string& path) {
  c10::IValue out = v;
  if (out.isTuple()) out = out.toTupleRef().elements().at(0);
  if (!out.isTensor() || out.toTensor().dim() != 2) {
    throw Error(ErrorCode::kModel,
                "model '" + path + "': forward does not return [N,classes] logits");
  }
  if (out.toTensor().size(1) == 0) {
    throw Error(ErrorCode::kModel, "model '" + path +
                                       "': forward returns no classes ([N,0] logits): nothing to "
                                       "rank or explain");
  }
  return out.toTensor();
}

}  // namespace cnnviz
