// LRP's operators for transformers (see ops.h): layer norm, GELU and the
// products of two computed tensors, with AttnLRP's rules in kLrp mode and
// the true gradient otherwise.
#include <torch/library.h>
#include <torch/torch.h>

#include "ops.h"

namespace cnnviz::ops {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::vector<int64_t> reduced_dims(int64_t dim, size_t normalized) {
  std::vector<int64_t> dims;
  for (int64_t d = dim - static_cast<int64_t>(normalized); d < dim; ++d) dims.push_back(d);
  return dims;
}

class LrpLayerNorm : public torch::autograd::Function<LrpLayerNorm> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, at::IntArrayRef shape,
                            const at::Tensor& w, const at::Tensor& b, double eps) {
    auto [y, mean, rstd] = at::native_layer_norm(x, shape, w, b, eps);
    ctx->save_for_backward({x, w, b, mean, rstd});
    ctx->saved_data["shape"] = shape.vec();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list v = ctx->get_saved_variables();
    const at::Tensor &x = v[0], &w = v[1], &b = v[2], &mean = v[3], &rstd = v[4];
    const std::vector<int64_t> shape = ctx->saved_data["shape"].toIntVector();
    variable_list out(5);
    if (!lrp_backward()) {
      out[0] = std::get<0>(at::native_layer_norm_backward(grads[0], x, shape, mean, rstd, w, b,
                                                          {true, false, false}));
      return out;
    }
    // y = w (x - mean) rstd + b with rstd held constant: c_in = J^T c.
    const at::Tensor wc = w.defined() && w.numel() > 0 ? grads[0] * w : grads[0];
    out[0] = rstd * (wc - wc.mean(reduced_dims(x.dim(), shape.size()), /*keepdim=*/true));
    return out;
  }
};

class LrpGelu : public torch::autograd::Function<LrpGelu> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, c10::string_view approx) {
    at::Tensor y = at::gelu(x, approx);
    ctx->save_for_backward({x, y});
    ctx->saved_data["approximate"] = std::string(approx);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list v = ctx->get_saved_variables();
    const at::Tensor &x = v[0], &y = v[1];
    variable_list out(2);
    if (!lrp_backward()) {
      out[0] = at::gelu_backward(grads[0], x, ctx->saved_data["approximate"].toStringRef());
    } else {
      // R_in = R_out: x * c_in = y * c. At x = 0, y / x tends to 1/2.
      const at::Tensor ratio =
          at::where(x != 0, y / at::where(x != 0, x, at::ones_like(x)), at::full_like(x, 0.5));
      out[0] = grads[0] * ratio;
    }
    return out;
  }
};

class LrpMatmul : public torch::autograd::Function<LrpMatmul> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b,
                            bool weights) {
    ctx->save_for_backward({a, b});
    ctx->saved_data["weights"] = weights;
    return at::matmul(a, b);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list v = ctx->get_saved_variables();
    const at::Tensor &a = v[0], &b = v[1], &g = grads[0];
    at::Tensor ga, gb;
    if (a.dim() >= 2 && b.dim() >= 2) {
      ga = g.matmul(b.transpose(-2, -1)).sum_to_size(a.sizes());
      gb = a.transpose(-2, -1).matmul(g).sum_to_size(b.sizes());
    } else {  // vectors: autograd's own rule for their shapes
      torch::AutoGradMode on(true);
      at::Tensor a1 = a.detach().requires_grad_(true), b1 = b.detach().requires_grad_(true);
      variable_list d = torch::autograd::grad({at::matmul(a1, b1)}, {a1, b1}, {g});
      ga = d[0];
      gb = d[1];
    }
    if (lrp_backward()) {
      if (ctx->saved_data["weights"].toBool() && lrp_settings().conservative_attention) {
        ga = at::zeros_like(ga);
      } else {
        ga = ga * 0.5;
        gb = gb * 0.5;
      }
    }
    return {ga, gb, at::Tensor()};
  }
};

at::Tensor layer_norm_autograd(const at::Tensor& x, at::IntArrayRef shape,
                               const c10::optional<at::Tensor>& w,
                               const c10::optional<at::Tensor>& b, double eps) {
  return LrpLayerNorm::apply(x, shape, w.value_or(at::Tensor()), b.value_or(at::Tensor()), eps);
}
at::Tensor layer_norm_plain(const at::Tensor& x, at::IntArrayRef shape,
                            const c10::optional<at::Tensor>& w, const c10::optional<at::Tensor>& b,
                            double eps) {
  return at::layer_norm(x, shape, w, b, eps);
}
at::Tensor gelu_autograd(const at::Tensor& x, c10::string_view approx) {
  return LrpGelu::apply(x, approx);
}
at::Tensor gelu_plain(const at::Tensor& x, c10::string_view approx) { return at::gelu(x, approx); }
at::Tensor matmul_autograd(const at::Tensor& a, const at::Tensor& b, bool weights) {
  return LrpMatmul::apply(a, b, weights);
}
at::Tensor matmul_plain(const at::Tensor& a, const at::Tensor& b, bool) { return at::matmul(a, b); }

void impl_plain(torch::Library& m) {
  m.impl("lrp_layer_norm", layer_norm_plain);
  m.impl("lrp_gelu", gelu_plain);
  m.impl("lrp_matmul", matmul_plain);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(cnnviz, m) {
  m.def("lrp_layer_norm(Tensor x, int[] shape, Tensor? w, Tensor? b, float eps) -> Tensor");
  m.def("lrp_gelu(Tensor x, str approximate) -> Tensor");
  m.def("lrp_matmul(Tensor a, Tensor b, bool weights) -> Tensor");
}

TORCH_LIBRARY_IMPL(cnnviz, CPU, m) { impl_plain(m); }

TORCH_LIBRARY_IMPL(cnnviz, CUDA, m) { impl_plain(m); }

TORCH_LIBRARY_IMPL(cnnviz, Autograd, m) {
  m.impl("lrp_layer_norm", layer_norm_autograd);
  m.impl("lrp_gelu", gelu_autograd);
  m.impl("lrp_matmul", matmul_autograd);
}

void ensure_transformer_ops_registered() {
  // Referencing this translation unit is what keeps its static registrars.
  static const bool registered = true;
  (void)registered;
}

}  // namespace cnnviz::ops
