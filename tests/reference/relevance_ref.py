#!/usr/bin/env python3
"""Reference DeepLIFT (rescale rule) and LRP relevance maps on an EAGER torchvision model.

usage: relevance_ref.py MODEL.pt IMAGE OUTDIR [--class C] [--threads N]
                        [--deeplift] [--baseline black|blurred|mean] [--blur-sigma S]
                        [--lrp] [--composite NAME | --rule R] [--epsilon E] [--gamma G]
                        [--alpha A] [--beta B] [--attention-rule attnlrp|cp]
                        [--layers L1,L2,...]

The model is rebuilt in eager PyTorch from the TorchScript file as methods_ref.py does
(load_eager: torchvision.models.<arch> with the scripted weights, eval mode, parameters frozen,
eager and scripted logits within 1e-4). x is the normalized input [1,3,H,W] (common.preprocess
with the metadata's parameters); c is the target class (default: top-1 of model(x)); the target
is the pre-softmax logit y_c. All tensors are float32; the sums in meta.json are float64.

DeepLIFT, rescale rule (--deeplift; Shrikumar et al. 2017)
  Baseline x' [1,3,H,W] in the normalized input space (--baseline, default black):
    black    per channel (0 - mean) / std, the metadata's mean and std (float32 arithmetic)
    mean     zeros (the dataset mean image)
    blurred  common.gaussian_blur(x, S), S = --blur-sigma (default 10.0)
  ONE forward pass of the batch cat([x, x']) (row 0: x, row 1: x'; in eval mode the rows do
  not interact), then the backward pass of T = y_c of row 0 alone. Every ReLU and ReLU6 (caught
  by monkeypatching F.relu, torch.relu, torch.relu_, Tensor.relu/relu_, F.relu6,
  torch._C._nn.relu6/relu6_, and F.hardtanh, torch._C._nn.hardtanh/hardtanh_ with bounds 0 and
  6, as methods_ref.py catches them; all run out of place) and every 2-D max pooling
  (F.max_pool2d, i.e. nn.MaxPool2d, and torch.max_pool2d; any kernel, stride, padding,
  dilation, ceil_mode; a call with return_indices=True is refused) gets a custom backward;
  every other op keeps its ordinary gradient (the "linear rule": convolution, batch norm,
  linear, average pooling, addition, concatenation).
  With t0, t1 the op's input in rows 0 and 1, y0, y1 its output, g0 the incoming gradient of
  row 0 and dt = t0 - t1:
    ReLU      grad_in0 = g0 * (y0 - y1) / dt where |dt| >= 1e-10, else g0 * (t0 > 0)
    ReLU6     the same with y = clamp(t, 0, 6), else g0 * (0 < t0 < 6)
    max pool  idx0, idx1 = the argmax indices of rows 0 and 1 (return_indices=True: flat
              indices into each H*W plane of the input); m = max(y0, y1) element-wise,
              d_plus = m - y1 >= 0, d_minus = y0 - m <= 0;
              U = scatter_add(g0 * d_plus at idx0) + scatter_add(g0 * d_minus at idx1)
              (overlapping windows accumulate);
              grad_in0 = U / dt where |dt| >= 1e-10, else scatter_add(g0 at idx0) (the ordinary
              max-pool gradient). Then sum(grad_in0 * dt) = sum(g0 * (y0 - y1)) up to the
              entries with |dt| < 1e-10.
  and grad_in of row 1 is zero for all of them. The map is
    deeplift.npy [3,H,W] = (x - x') * dT/dx (row 0 of the input gradient)
  and its sum approaches y_c(x) - y_c(x') (summation to delta; exact but for the |dt| < 1e-10
  entries, float rounding, and ops with no rule: SiLU, GELU, sigmoid, softmax, tanh, hardswish,
  hardsigmoid and other hardtanh calls keep their true gradient and are only counted).

LRP (--lrp; Bach et al. 2015, Montavon et al. 2019 "Layer-wise relevance propagation: an
overview"), computed explicitly layer by layer on the eager modules, with a traversal written
per architecture: VGG and AlexNet (features, avgpool, flatten, classifier), ResNet (conv1+bn1,
relu, maxpool, layer1..4 of Bottleneck/BasicBlock blocks with their downsample, avgpool,
flatten, fc), SqueezeNet (features with Fire modules, classifier, flatten), VisionTransformer
(below) and any plain nn.Sequential of the supported modules (no ReLU6, no other activation;
GELU only inside a transformer's MLP). Its forward pass
recomputes the logits from the folded layers and must match model(x) within
1e-4 * max(1, max |logit|). float32 throughout; each "W^T s" below is the autograd gradient of
the (modified) layer weighted by s, as in the overview's recipe z = layer'(a), s = R / z,
c = grad(z, a, s), R_in = a * c.
  Start: R = one-hot(c) * z_c at the output, z_c = the target logit (of the traversal).
  Batch norm (eval) directly after a convolution is folded into it: s = gamma /
  sqrt(running_var + eps), W' = W * s[:,None,None,None], b' = (b - running_mean) * s + beta
  (b = 0 without a conv bias); the rules see W', b' only. A batch norm anywhere else is not
  supported (DenseNet, pre-activation blocks).
  Convolution / linear layer with input a, weights W, bias b, output z = W a + b, incoming R
  (the relevance of the layer's output); W+ = max(W, 0), W- = min(W, 0), a+ = max(a, 0),
  a- = min(a, 0); sgn(z) = +1 where z >= 0, else -1; "W^T s" = the layer's transposed map
  applied to s (conv: the gradient of the convolution w.r.t. its input weighted by s, i.e.
  conv_transpose with the same stride, padding, dilation and groups):
    epsilon     s = R / (z + E sgn(z)); R_in = a * (W^T s)                      (E = --epsilon)
    zplus       zp = W+ a+ + W- a- (no bias); s = R / (zp + 1e-9);
                R_in = a+ * (W+^T s) + a- * (W-^T s)
    gamma       Wg = W + G W+, bg = b + G max(b, 0); zg = Wg a + bg;            (G = --gamma)
                s = R / (zg + 1e-9 sgn(zg)); R_in = a * (Wg^T s)
    alpha-beta  zp as in zplus, zn = W+ a- + W- a+ (no bias); sp = R / (zp + 1e-9),
                sn = R / (zn - 1e-9); R_in = A (a+ * (W+^T sp) + a- * (W-^T sp))
                - B (a- * (W+^T sn) + a+ * (W-^T sn))          (A, B = --alpha, --beta; any
                values are accepted, relevance is conserved when A - B = 1)
    flat        n = layer(ones_like(a)) with all weights 1 and no bias (with padding: the number
                of real inputs in each window); R_in = ones^T (R / n), 0 where n == 0;
                independent of a
    box         (input layer only) l = (0 - mean) / std, h = (1 - mean) / std per channel,
                broadcast to a's shape; z = W a - W+ l - W- h (no bias);
                s = R / (z + 1e-9 sgn(z)); R_in = a * (W^T s) - l * (W+^T s) - h * (W-^T s)
  Other modules:
    ReLU                         R passes through unchanged
    max pool                     each output's R goes to its argmax input (overlapping windows
                                 accumulate)
    avg pool, adaptive avg pool  R_in = a * pool^T(R / z), 0 where z == 0 (no stabilizer); VGG's
                                 AdaptiveAvgPool2d(7) on a 7x7 map is the identity
    residual addition            out = m + s (ResNet block: main branch m and identity or
                                 downsample branch s, before the final ReLU):
                                 R_m = m * R / (m + s), R_s = s * R / (m + s), 0 where m + s == 0
    concatenation (Fire)         R is split by channels
    flatten, dropout             pass-through (R reshaped back)
  Rules per layer: --composite (default epsilon-gamma-box)
    epsilon-plus-box    the first convolution executed box, every other convolution zplus,
                        every linear layer epsilon
    epsilon-plus-flat   the first convolution executed (the one the input reaches) flat, every
                        other convolution zplus, every linear layer epsilon
    epsilon-gamma-box   the first convolution box, every other convolution gamma, every linear
                        layer epsilon
  or --rule R (epsilon, zplus, gamma, alpha-beta or flat) for every convolution and linear
  layer. A convolution is a convolution wherever it is (SqueezeNet's 1x1 classifier conv gets
  the convolution rule). Defaults: E = 1e-6, G = 0.25, A = 2, B = 1.
  Vision transformer (torchvision VisionTransformer, eval mode: every dropout is the identity):
  conv_proj (a convolution, or a conv stem Sequential walked as above), [N,D,g,g] reshaped to
  the tokens [N,g*g,D]; cat([class_token, tokens], 1); encoder: + pos_embedding, dropout,
  layers (EncoderBlock: x = x + dropout(self_attention(ln_1(x))); x + mlp(ln_2(x)), mlp =
  Linear, GELU, Dropout, Linear, Dropout), ln; token 0; heads (Linear layers only: the Tanh of
  a representation layer is refused). Tensors are [N,T,D] token sequences, T = 1 + g*g. The
  "z-rule" of an op y = f(u, ...) that is linear in u with the other inputs held fixed is
  R_u = u * d/du <y, R / y> with R / y taken as 0 where y == 0 (no stabilizer); by linearity
  sum(R_u) = sum(R) where y != 0 and f has no additive term.
    conv_proj                    a convolution: the composite's first convolution (box by
                                 default; its input is the image)
    in_proj, out_proj, mlp       linear layers: the composite's linear rule (epsilon, z with the
    linears, heads.head          bias) or --rule. in_proj is nn.MultiheadAttention's packed
                                 q|k|v projection (in_proj_weight [3D,D], in_proj_bias), taken
                                 as ONE linear layer of the ln_1 output whose output relevance is
                                 cat([R_q, R_k, R_v], -1) (each part's heads merged), so the
                                 relevance of its input is the sum of the three parts'
    class token                  R[:, 1:] goes back to the patch tokens; the class token is a
                                 parameter and its relevance is dropped
    + pos_embedding              z-rule in the tokens: R_x = x * R / (x + pos) (pos_embedding's
                                 share is dropped)
    residual additions           out = m + x (m the branch): R_m = m * R / (m + x),
                                 R_x = x * R / (m + x), 0 where m + x == 0
    LayerNorm (ln_1, ln_2, ln)   identity rule on the normalization (AttnLRP, Achtibat et al.
                                 2024): sigma = sqrt(var(x) + eps) (biased variance over the
                                 last dimension) held constant, y = gamma * (x - mean(x)) /
                                 sigma + beta is linear in x; z-rule: R_x = x * J^T (R / y),
                                 J = dy/dx at fixed sigma (beta absorbs its share)
    GELU                         identity rule: R passes through unchanged
    token 0                      R goes to the class token's position, 0 elsewhere
    attention, per head (q, k, v split from in_proj's output, heads from their last dimension,
    d = D / heads): S = (q / sqrt(d)) k^T, A = softmax(S) along the last dimension, O = A v;
    heads merged, out_proj. The scaling by 1 / sqrt(d) passes relevance unchanged (R_q is the
    relevance of q / sqrt(d)). By --attention-rule (default attnlrp):
      attnlrp  (AttnLRP, Achtibat et al. 2024) the product O = A v, uniform rule: R_A = 1/2 of
               the z-rule in A with v fixed, R_v = 1/2 of the z-rule in v with A fixed; the
               softmax: R_S = S * (R_A - A * sum_j R_A[.., j]) along each row (not
               conservative); the product S = (q / sqrt(d)) k^T, uniform rule: R_q = 1/2 of the
               z-rule in q with k fixed, R_k = 1/2 of the z-rule in k with q fixed
      cp       (conservative propagation, Ali et al. 2022) A is a constant: R_v = the z-rule in
               v with A fixed; R_q = R_k = 0 (no relevance passes through the softmax)
    With eps -> 0 and the epsilon rule everywhere both equal gradient x input of a modified
    model: sigma detached in every LayerNorm, GELU(x) replaced by x * (GELU(x) / x).detach(),
    and in the attention, cp: A detached; attnlrp: half the gradient to each factor of A v and
    of q k^T, the softmax's true gradient. Without biases, class token and position embedding
    (tiny_models.py's tiny_vit_nobias) every rule but attnlrp's softmax conserves relevance:
    with cp the input relevance sums to the target logit up to the epsilon rule's absorption
    and the box rule's stabilizer.
  Caution for tests: gamma divides by zg = Wg a + bg, which can cross zero where a layer's
  output is negative yet carries relevance: a ResNet block's conv3 (and downsample) gets
  R_m = m * R / (m + s) through the residual split. Such maps are dominated by near-zero
  denominators and are not reproducible across summation orders (random resnet50,
  epsilon-gamma-box: input relevance sum ~4e10 for a logit of 63, 6.6e10 in float64). Past
  the first layer of VGG and SqueezeNet every gamma layer sees ReLU outputs (a >= 0), so
  zg >= z > 0 wherever R != 0, and it is stable.
  Written:
    lrp.npy [3,H,W]   the relevance of the input x
    lrp_<L>.npy [h,w] for each --layers L (dotted module path, e.g. "features.29", "layer3"):
                      the relevance of the module's output (the R that enters its backward
                      step) summed over channels. A convolution and the batch norm folded into
                      it share one output; a Sequential's output is its last module's; a module
                      that runs more than once (a ResNet block's relu) has no single output
                      and is refused, as is an output that is not [N,C,h,w] or, in a vision
                      transformer, [N,1+g*g,C] tokens (e.g. "encoder.layers.encoder_layer_3"):
                      those give the [g,g] map of tokens 1.. (row major; the class token is
                      left out of the map and of its sum). Past the last block only the class
                      token carries relevance (token 0 is classified), so the last block's and
                      encoder.ln's maps are all 0.

Written to OUTDIR besides those maps (float32 .npy, little-endian, C order):
  input.npy [3,H,W]  logits.npy [num_classes]  and with --deeplift deeplift_baseline.npy [3,H,W]
  meta.json {"arch", "class", "logit", "eager_vs_script_max_abs",
    with --deeplift: "deeplift_baseline", "deeplift_blur_sigma" (blurred only), "deeplift_sum"
      (sum of deeplift.npy), "deeplift_delta" (y_c(x) - y_c(x') from the DeepLIFT forward),
      "deeplift_relu_count", "deeplift_relu6_count", "deeplift_maxpool_count" (calls that went
      through the rules in the forward pass), "deeplift_other_nonlinear" ({name: calls} of the
      counted ops with their true gradient),
    with --lrp: "lrp_sum" (sum of lrp.npy), "lrp_target" (z_c), "lrp_composite" (null with
      --rule), "lrp_rule" (null with a composite), "lrp_epsilon", "lrp_gamma", "lrp_alpha",
      "lrp_beta", "lrp_rules" ({layer: rule} in forward order), "lrp_forward_max_abs"
      (traversal vs model logits), "lrp_layers" ({L: sum of lrp_<L>.npy}), and for a vision
      transformer "attention_rule" (attnlrp or cp; --attention-rule on another model is an
      error)}
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from cnnviz_python import ensure_torch  # noqa: E402

ensure_torch("relevance_ref.py")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.models.resnet import BasicBlock, Bottleneck  # noqa: E402
from torchvision.models.squeezenet import Fire  # noqa: E402
from torchvision.models.vision_transformer import EncoderBlock, VisionTransformer  # noqa: E402

import common  # noqa: E402
from methods_ref import RefError, load_eager, save, script_diff  # noqa: E402

PROG = "relevance_ref.py"
DELTA_MIN = 1e-10  # DeepLIFT: below this |t0 - t1| an op falls back to its ordinary gradient
STAB = 1e-9  # LRP: the fixed stabilizer of the zplus, gamma, alpha-beta and box rules

# The originals, captured before any patching.
_RELU = torch.relu
_CLAMP = torch.clamp
_HARDTANH = F.hardtanh
_C_HARDTANH = torch._C._nn.hardtanh
_C_HARDTANH_ = torch._C._nn.hardtanh_
_MAX_POOL2D_WITH_INDICES = F.max_pool2d_with_indices


# ---------------------------------------------------------------------------------------------
# DeepLIFT


class DeepLiftState:
    """Counts of the ops that went through the rescale rules in the forward pass, and of the
    counted nonlinear ops that keep their true gradient."""

    def __init__(self):
        self.relu = 0
        self.relu6 = 0
        self.maxpool = 0
        self.other = {name: 0 for name in OTHER_NONLINEAR}


def _pair_rows(t):
    if t.shape[0] != 2:
        raise RuntimeError(f"DeepLIFT expects a batch of 2 (input, baseline), got {t.shape[0]}")
    return t[0], t[1]


def _rescale_backward(g, t, y, ordinary):
    """Rescale rule of an element-wise op: row 0 gets g0 * (y0 - y1) / (t0 - t1), or
    g0 * ordinary where |t0 - t1| < DELTA_MIN; row 1 gets 0."""
    t0, t1 = _pair_rows(t)
    y0, y1 = _pair_rows(y)
    dt = t0 - t1
    big = dt.abs() >= DELTA_MIN
    multiplier = torch.where(big, (y0 - y1) / torch.where(big, dt, torch.ones_like(dt)),
                             ordinary.to(g.dtype))
    grad = torch.zeros_like(g)
    grad[0] = g[0] * multiplier
    return grad


class _RescaleReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t):
        y = _RELU(t)
        ctx.save_for_backward(t, y)
        return y

    @staticmethod
    def backward(ctx, g):
        t, y = ctx.saved_tensors
        return _rescale_backward(g, t, y, t[0] > 0)


class _RescaleReLU6(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t):
        y = _CLAMP(t, 0.0, 6.0)
        ctx.save_for_backward(t, y)
        return y

    @staticmethod
    def backward(ctx, g):
        t, y = ctx.saved_tensors
        return _rescale_backward(g, t, y, (t[0] > 0) & (t[0] < 6))


def _scatter_planes(values, idx, shape):
    """Sums values [C,h,w] into zeros of shape [C,H,W] at the flat H*W indices idx [C,h,w]."""
    channels = shape[0]
    out = torch.zeros(channels, shape[1] * shape[2], dtype=values.dtype, device=values.device)
    out.scatter_add_(1, idx.reshape(channels, -1), values.reshape(channels, -1))
    return out.view(shape)


class _RescaleMaxPool2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t, kernel_size, stride, padding, dilation, ceil_mode):
        if t.dim() != 4:
            raise RuntimeError(f"DeepLIFT max pool expects [N,C,H,W], got {list(t.shape)}")
        y, idx = _MAX_POOL2D_WITH_INDICES(t, kernel_size, stride, padding, dilation,
                                          ceil_mode=ceil_mode, return_indices=True)
        ctx.save_for_backward(t, y, idx)
        return y

    @staticmethod
    def backward(ctx, g):
        t, y, idx = ctx.saved_tensors
        t0, t1 = _pair_rows(t)
        y0, y1 = _pair_rows(y)
        idx0, idx1 = _pair_rows(idx)
        g0 = g[0]
        top = torch.maximum(y0, y1)
        shape = t0.shape
        moved = (_scatter_planes(g0 * (top - y1), idx0, shape)
                 + _scatter_planes(g0 * (y0 - top), idx1, shape))
        dt = t0 - t1
        big = dt.abs() >= DELTA_MIN
        grad = torch.zeros_like(t)
        grad[0] = torch.where(big, moved / torch.where(big, dt, torch.ones_like(dt)),
                              _scatter_planes(g0, idx0, shape))
        return grad, None, None, None, None, None


def _is_relu6(min_val, max_val):
    return float(min_val) == 0.0 and float(max_val) == 6.0


# Ops that keep their true gradient under DeepLIFT and are only counted: name -> the places
# they are called from. F.sigmoid and F.softmax call Tensor.sigmoid / Tensor.softmax, so those
# are not patched separately (no double counts); other hardtanh bounds are counted as hardtanh.
OTHER_NONLINEAR = {
    "silu": [(F, "silu")],
    "gelu": [(F, "gelu")],
    "sigmoid": [(torch, "sigmoid"), (torch.Tensor, "sigmoid")],
    "softmax": [(torch, "softmax"), (torch.Tensor, "softmax")],
    "tanh": [(torch, "tanh"), (torch.Tensor, "tanh")],
    "hardswish": [(F, "hardswish")],
    "hardsigmoid": [(F, "hardsigmoid")],
    "hardtanh": [],
}


@contextlib.contextmanager
def deeplift_rules(state):
    """Route every relu, relu6 and 2-D max pooling through the rescale rules, and count the
    other nonlinear calls, while the block runs (the same patch points as methods_ref.py's
    modal_relus, plus the max pooling)."""

    def relu(input, *args, **kwargs):  # F.relu(input, inplace=...), torch.relu, Tensor.relu
        state.relu += 1
        return _RescaleReLU.apply(input)

    def relu_(input):  # out of place on purpose: callers use the returned tensor
        state.relu += 1
        return _RescaleReLU.apply(input)

    def relu6(input, *args, **kwargs):  # F.relu6(input, inplace), torch._C._nn.relu6(_)
        state.relu6 += 1
        return _RescaleReLU6.apply(input)

    def hardtanh_with(original):
        def hardtanh(input, min_val=-1.0, max_val=1.0, *args, **kwargs):
            if _is_relu6(min_val, max_val):  # nn.ReLU6: F.hardtanh(x, 0., 6., inplace)
                state.relu6 += 1
                return _RescaleReLU6.apply(input)
            state.other["hardtanh"] += 1
            return original(input, min_val, max_val, *args, **kwargs)
        return hardtanh

    def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                   return_indices=False):
        if return_indices:
            refuse_indices()
        state.maxpool += 1
        stride = kernel_size if stride is None or stride == [] else stride
        return _RescaleMaxPool2d.apply(input, kernel_size, stride, padding, dilation, ceil_mode)

    def refuse_indices(*args, **kwargs):  # no torchvision classifier asks for the indices
        raise RefError("DeepLIFT: max pooling with return_indices=True is not supported")

    def counted(name, original):
        def call(*args, **kwargs):
            state.other[name] += 1
            return original(*args, **kwargs)
        return call

    targets = [(F, "relu", relu), (torch, "relu", relu), (torch, "relu_", relu_),
               (torch.Tensor, "relu", relu), (torch.Tensor, "relu_", relu_),
               (F, "relu6", relu6), (torch._C._nn, "relu6", relu6),
               (torch._C._nn, "relu6_", relu6), (F, "hardtanh", hardtanh_with(_HARDTANH)),
               (torch._C._nn, "hardtanh", hardtanh_with(_C_HARDTANH)),
               (torch._C._nn, "hardtanh_", hardtanh_with(_C_HARDTANH_)),
               (F, "max_pool2d", max_pool2d), (torch, "max_pool2d", max_pool2d),
               (F, "max_pool2d_with_indices", refuse_indices)]
    for name, places in OTHER_NONLINEAR.items():
        targets += [(owner, attr, counted(name, getattr(owner, attr))) for owner, attr in places]
    with common.patched(targets):
        yield state


def normalized_constant(meta, value, like):
    """(value - mean) / std per channel, float32 (as Normalize computes it), shaped like
    `like` [1,C,H,W]."""
    params = common.preprocess_params(meta)
    mean = torch.tensor(params["mean"], dtype=torch.float32)
    std = torch.tensor(params["std"], dtype=torch.float32)
    channel = (value - mean) / std
    if channel.numel() != like.shape[1]:
        raise RefError(f"{channel.numel()} normalization channels for a {like.shape[1]}-channel "
                       "input")
    return channel[None, :, None, None].expand_as(like).contiguous()


def deeplift_baseline(kind, x, meta, sigma):
    if kind == "black":
        return normalized_constant(meta, 0.0, x)
    if kind == "mean":
        return torch.zeros_like(x)
    if kind == "blurred":
        return common.gaussian_blur(x, sigma)
    raise RefError(f"unknown baseline '{kind}'")


def deeplift(model, x, baseline, cls):
    """DeepLIFT rescale attribution of logit cls: ((x - x') * dT/dx [3,H,W], logits [2,K] of
    the (x, x') forward, DeepLiftState)."""
    state = DeepLiftState()
    batch = torch.cat([x, baseline]).detach().requires_grad_(True)
    with deeplift_rules(state):
        out = model(batch)
        out[0, cls].backward()
    return (x - baseline)[0] * batch.grad[0], out.detach(), state


# ---------------------------------------------------------------------------------------------
# LRP


class LrpParams:
    """Rule parameters, and the box bounds [C] of the normalized input (l, h)."""

    def __init__(self, epsilon, gamma, alpha, beta, low, high):
        self.epsilon, self.gamma, self.alpha, self.beta = epsilon, gamma, alpha, beta
        self.low, self.high = low, high


def sgn(z):
    """+1 where z >= 0, else -1."""
    return torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))


def safe_divide(r, z):
    """r / z, 0 where z == 0."""
    nonzero = z != 0
    return torch.where(nonzero, r / torch.where(nonzero, z, torch.ones_like(z)),
                       torch.zeros_like(z))


def leaf(t):
    """A detached copy of t that autograd differentiates against."""
    return t.detach().requires_grad_(True)


def contributions(z, inputs, s):
    """sum_i inputs[i] * (d<z, s>/d inputs[i]): the inputs times their transposed-layer map
    of s (the inputs must be leaves that require grad)."""
    grads = torch.autograd.grad(z, inputs, s)
    return sum(i.detach() * g for i, g in zip(inputs, grads))


# The rules of a convolution or linear layer (see the module docstring): f(a, w, b) is the layer
# (F.conv2d with the module's stride, padding, dilation and groups, or F.linear), a its input,
# w, b its folded parameters (b may be None), r the relevance of its output, p the LrpParams;
# each returns the relevance of a.


def rule_epsilon(f, a, w, b, r, p):
    a = leaf(a)
    z = f(a, w, b)
    return contributions(z, (a,), r / (z + p.epsilon * sgn(z)))


def rule_zplus(f, a, w, _b, r, _p):
    ap, an = leaf(a.clamp(min=0)), leaf(a.clamp(max=0))
    z = f(ap, w.clamp(min=0), None) + f(an, w.clamp(max=0), None)
    return contributions(z, (ap, an), r / (z + STAB))


def rule_gamma(f, a, w, b, r, p):
    a = leaf(a)
    wg = w + p.gamma * w.clamp(min=0)
    bg = None if b is None else b + p.gamma * b.clamp(min=0)
    z = f(a, wg, bg)
    return contributions(z, (a,), r / (z + STAB * sgn(z)))


def rule_alpha_beta(f, a, w, _b, r, p):
    ap, an = leaf(a.clamp(min=0)), leaf(a.clamp(max=0))
    wp, wn = w.clamp(min=0), w.clamp(max=0)
    zp = f(ap, wp, None) + f(an, wn, None)  # positive contributions
    zn = f(an, wp, None) + f(ap, wn, None)  # negative contributions
    positive = contributions(zp, (ap, an), r / (zp + STAB))
    negative = contributions(zn, (ap, an), r / (zn - STAB))
    return p.alpha * positive - p.beta * negative


def rule_flat(f, a, w, _b, r, _p):
    ones = leaf(torch.ones_like(a))
    n = f(ones, torch.ones_like(w), None)
    return contributions(n, (ones,), safe_divide(r, n))


def rule_box(f, a, w, _b, r, p):
    if a.dim() != 4 or a.shape[1] != p.low.numel():
        raise RefError(f"the box rule needs the network input ([N,{p.low.numel()},H,W]), not "
                       f"{list(a.shape)}")
    low = leaf(p.low.view(1, -1, 1, 1).expand_as(a))
    high = leaf(p.high.view(1, -1, 1, 1).expand_as(a))
    a = leaf(a)
    # The minus signs make d z / d low = -W+^T and d z / d high = -W-^T: contributions() then
    # gives a * (W^T s) - low * (W+^T s) - high * (W-^T s).
    z = f(a, w, None) - f(low, w.clamp(min=0), None) - f(high, w.clamp(max=0), None)
    return contributions(z, (a, low, high), r / (z + STAB * sgn(z)))


RULES = {"epsilon": rule_epsilon, "zplus": rule_zplus, "gamma": rule_gamma,
         "alpha-beta": rule_alpha_beta, "flat": rule_flat, "box": rule_box}
# Composite -> (first convolution, other convolutions, linear layers)
COMPOSITES = {"epsilon-plus-box": ("box", "zplus", "epsilon"),
              "epsilon-plus-flat": ("flat", "zplus", "epsilon"),
              "epsilon-gamma-box": ("box", "gamma", "epsilon")}


class Op:
    """One step of the LRP traversal. forward(a) computes the output (keeping what relprop
    needs); relprop(r, record) maps the relevance r of the output to the relevance of the input.
    propagate() first records r under `names`, the module paths whose output is this op's
    output (record: {path: relevance}), then calls relprop."""

    def __init__(self, names=()):
        self.names = list(names)

    def propagate(self, r, record):
        for name in self.names:
            if name in record:
                raise RefError(f"layer '{name}' has two outputs in the LRP traversal")
            record[name] = r
        return self.relprop(r, record)

    def layers(self):
        """The Layer ops inside, in the order the forward pass runs them."""
        return []


class Layer(Op):
    """A convolution or linear layer, with the batch norm that follows it folded in."""

    def __init__(self, module, bn=None, names=()):
        super().__init__(names)
        if isinstance(module, nn.Conv2d):
            if module.padding_mode != "zeros":
                raise RefError(f"'{self.names[0]}': padding mode {module.padding_mode} is not "
                               "supported")
            self.kind = "conv"
            self.f = lambda a, w, b: F.conv2d(a, w, b, module.stride, module.padding,
                                              module.dilation, module.groups)
        elif isinstance(module, nn.Linear):
            if bn is not None:
                raise RefError("a batch norm after a linear layer is not supported")
            self.kind = "linear"
            self.f = F.linear
        else:
            raise RefError(f"'{self.names[0]}': not a convolution or linear layer")
        w = module.weight.detach()
        b = None if module.bias is None else module.bias.detach()
        if bn is not None:
            scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            shift = -bn.running_mean if b is None else b - bn.running_mean
            w = w * scale[:, None, None, None]
            b = shift * scale + bn.bias.detach()
        self.w, self.b = w, b
        self.rule, self.params = None, None  # set by assign_rules

    def forward(self, a):
        self.a = a
        return self.f(a, self.w, self.b)

    def relprop(self, r, record):
        return RULES[self.rule](self.f, self.a, self.w, self.b, r, self.params)

    def layers(self):
        return [self]


class Relu(Op):
    def forward(self, a):
        return F.relu(a)

    def relprop(self, r, record):
        return r


class PassThrough(Op):
    """Dropout (identity in eval mode) and flatten: R is only reshaped back."""

    def __init__(self, names=(), flatten=False):
        super().__init__(names)
        self.flatten = flatten

    def forward(self, a):
        self.shape = a.shape
        return torch.flatten(a, 1) if self.flatten else a

    def relprop(self, r, record):
        return r.reshape(self.shape)


class MaxPool(Op):
    def __init__(self, module, names=()):
        super().__init__(names)
        self.module = module

    def forward(self, a):
        m = self.module
        y, self.idx = F.max_pool2d(a, m.kernel_size, m.stride, m.padding, m.dilation,
                                   ceil_mode=m.ceil_mode, return_indices=True)
        self.shape = a.shape
        return y

    def relprop(self, r, record):
        n, c, h, w = self.shape
        out = torch.zeros(n * c, h * w, dtype=r.dtype, device=r.device)
        out.scatter_add_(1, self.idx.reshape(n * c, -1), r.reshape(n * c, -1))
        return out.view(self.shape)


class AvgPool(Op):
    """AvgPool2d or AdaptiveAvgPool2d: proportional to the inputs, no stabilizer."""

    def __init__(self, module, names=()):
        super().__init__(names)
        self.module = module

    def forward(self, a):
        self.a = a
        return self.module(a)

    def relprop(self, r, record):
        a = leaf(self.a)
        z = self.module(a)
        return contributions(z, (a,), safe_divide(r, z))


class Sequence(Op):
    def __init__(self, ops, names=()):
        super().__init__(names)
        self.ops = ops

    def forward(self, a):
        for op in self.ops:
            a = op.forward(a)
        return a

    def relprop(self, r, record):
        for op in reversed(self.ops):
            r = op.propagate(r, record)
        return r

    def layers(self):
        return [layer for op in self.ops for layer in op.layers()]


class Residual(Op):
    """torchvision's BasicBlock / Bottleneck: relu(main(x) + shortcut(x)), the shortcut being
    the identity or the downsample (conv + bn)."""

    def __init__(self, block, name):
        super().__init__([name])
        convs = ["conv1", "conv2", "conv3"] if isinstance(block, Bottleneck) else ["conv1",
                                                                                    "conv2"]
        ops = []
        for i, conv in enumerate(convs):
            bn = f"bn{i + 1}"
            ops.append(Layer(getattr(block, conv), getattr(block, bn),
                             [f"{name}.{conv}", f"{name}.{bn}"]))
            if i + 1 < len(convs):
                ops.append(Relu())  # block.relu runs several times: it gets no name
        self.main = Sequence(ops)
        if block.downsample is None:
            self.shortcut = Sequence([])
        else:
            self.shortcut = build(block.downsample, f"{name}.downsample")

    def forward(self, x):
        self.m = self.main.forward(x)
        self.s = self.shortcut.forward(x)
        return F.relu(self.m + self.s)

    def relprop(self, r, record):  # the final ReLU passes r through to the sum
        share = safe_divide(r, self.m + self.s)
        return (self.main.propagate(self.m * share, record)
                + self.shortcut.propagate(self.s * share, record))

    def layers(self):
        return self.main.layers() + self.shortcut.layers()


class FireOp(Op):
    """SqueezeNet's Fire: s = relu(squeeze(x)); cat([relu(expand1x1(s)), relu(expand3x3(s))])."""

    def __init__(self, fire, name):
        super().__init__([name])

        def branch(conv, act):
            return Sequence([Layer(getattr(fire, conv), None, [f"{name}.{conv}"]),
                             Relu([f"{name}.{act}"])])
        self.squeeze = branch("squeeze", "squeeze_activation")
        self.expand1 = branch("expand1x1", "expand1x1_activation")
        self.expand3 = branch("expand3x3", "expand3x3_activation")

    def forward(self, x):
        s = self.squeeze.forward(x)
        e1 = self.expand1.forward(s)
        self.split = e1.shape[1]
        return torch.cat([e1, self.expand3.forward(s)], dim=1)

    def relprop(self, r, record):
        rs = (self.expand1.propagate(r[:, :self.split], record)
              + self.expand3.propagate(r[:, self.split:], record))
        return self.squeeze.propagate(rs, record)

    def layers(self):
        return self.squeeze.layers() + self.expand1.layers() + self.expand3.layers()


# ---- Vision transformer ops (torchvision's VisionTransformer); tensors are token sequences
# [N,T,D] unless said otherwise.


class Projection(Layer):
    """A linear layer given by its weight [out,in] and bias (nn.MultiheadAttention's packed
    q|k|v projection has no module of its own)."""

    def __init__(self, weight, bias, names=()):
        Op.__init__(self, names)
        self.kind = "linear"
        self.f = F.linear
        self.w = weight.detach()
        self.b = None if bias is None else bias.detach()
        self.rule, self.params = None, None  # set by assign_rules


class Tokens(Op):
    """VisionTransformer._process_input after conv_proj: [N,D,g,g] -> [N,g*g,D]."""

    def forward(self, a):
        self.shape = a.shape
        return a.flatten(2).permute(0, 2, 1)

    def relprop(self, r, record):
        return r.permute(0, 2, 1).reshape(self.shape)


class ClassToken(Op):
    """cat([class_token, x], 1): the class token is a parameter, its relevance is dropped."""

    def __init__(self, token, names=()):
        super().__init__(names)
        self.token = token.detach()

    def forward(self, a):
        return torch.cat([self.token.expand(a.shape[0], -1, -1), a], dim=1)

    def relprop(self, r, record):
        return r[:, 1:]


class PositionEmbedding(Op):
    """x + pos_embedding, z-rule: R_x = x * R / (x + pos), 0 where x + pos == 0 (the position
    embedding's share is dropped)."""

    def __init__(self, pos, names=()):
        super().__init__(names)
        self.pos = pos.detach()

    def forward(self, a):
        self.a = a
        return a + self.pos

    def relprop(self, r, record):
        return self.a * safe_divide(r, self.a + self.pos)


class Skip(Op):
    """x + branch(x) (the two residual additions of an EncoderBlock), z-rule: R_branch =
    m * R / (m + x), R_x = x * R / (m + x), 0 where m + x == 0."""

    def __init__(self, branch, names=()):
        super().__init__(names)
        self.branch = branch

    def forward(self, a):
        self.a = a
        self.m = self.branch.forward(a)
        return self.m + a

    def relprop(self, r, record):
        share = safe_divide(r, self.m + self.a)
        return self.branch.propagate(self.m * share, record) + self.a * share

    def layers(self):
        return self.branch.layers()


class LayerNorm(Op):
    """nn.LayerNorm over the last dimension, identity rule on the normalization (AttnLRP):
    sigma = sqrt(var(x) + eps) held constant, y = gamma * (x - mean(x)) / sigma + beta is
    linear in x; z-rule R_x = x * J^T (R / y), 0 where y == 0."""

    def __init__(self, ln, names=()):
        super().__init__(names)
        if len(ln.normalized_shape) != 1:
            raise RefError(f"LRP: '{self.names[0]}' normalizes over {len(ln.normalized_shape)} "
                           "dimensions (only the last one is supported)")
        dim = ln.normalized_shape[0]
        self.eps = ln.eps
        self.gamma = torch.ones(dim) if ln.weight is None else ln.weight.detach()
        self.beta = torch.zeros(dim) if ln.bias is None else ln.bias.detach()

    def forward(self, a):
        self.a = a
        return F.layer_norm(a, self.gamma.shape, self.gamma, self.beta, self.eps)

    def relprop(self, r, record):
        sigma = torch.sqrt(self.a.var(dim=-1, unbiased=False, keepdim=True) + self.eps)
        a = leaf(self.a)
        y = (a - a.mean(dim=-1, keepdim=True)) / sigma * self.gamma + self.beta
        return contributions(y, (a,), safe_divide(r, y))


class Gelu(Op):
    """GELU, identity rule: R passes through unchanged."""

    def __init__(self, module, names=()):
        super().__init__(names)
        self.module = module

    def forward(self, a):
        return self.module(a)

    def relprop(self, r, record):
        return r


class ClassSelect(Op):
    """x[:, 0], the class token's output: R goes back to token 0."""

    def forward(self, a):
        self.shape = a.shape
        return a[:, 0]

    def relprop(self, r, record):
        out = torch.zeros(self.shape, dtype=r.dtype, device=r.device)
        out[:, 0] = r
        return out


ATTENTION_RULES = ("attnlrp", "cp")


class Attention(Op):
    """nn.MultiheadAttention as an EncoderBlock calls it: self-attention, batch first, no mask.
    Per head (d = head dim): q, k, v from the packed projection in_proj, S = (q / sqrt(d)) k^T,
    A = softmax(S) along rows, O = A v; heads merged, out_proj. See the module docstring for
    the rules ("attnlrp" or "cp")."""

    def __init__(self, mha, name, rule):
        super().__init__([name])
        if not mha._qkv_same_embed_dim or mha.in_proj_weight is None:
            raise RefError(f"LRP: '{name}': only a packed q|k|v projection is supported")
        if mha.bias_k is not None or mha.bias_v is not None or mha.add_zero_attn:
            raise RefError(f"LRP: '{name}': bias_k, bias_v and add_zero_attn are not supported")
        if not mha.batch_first:
            raise RefError(f"LRP: '{name}': only batch_first attention is supported")
        if rule not in ATTENTION_RULES:
            raise RefError(f"LRP: unknown attention rule '{rule}'")
        self.num_heads = mha.num_heads
        self.rule = rule
        self.in_proj = Projection(mha.in_proj_weight, mha.in_proj_bias, [f"{name}.in_proj"])
        self.out_proj = Layer(mha.out_proj, None, [f"{name}.out_proj"])

    def split(self, t):
        """[N,T,D] -> [N,heads,T,D/heads]"""
        n, length, dim = t.shape
        return t.reshape(n, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    @staticmethod
    def merge(t):
        """[N,heads,T,d] -> [N,T,heads*d]"""
        n, heads, length, d = t.shape
        return t.transpose(1, 2).reshape(n, length, heads * d)

    def forward(self, a):
        q, k, v = (self.split(t) for t in self.in_proj.forward(a).chunk(3, dim=-1))
        self.q = q / math.sqrt(q.shape[-1])  # the scaling passes relevance unchanged
        self.k, self.v = k, v
        self.s = self.q @ k.transpose(-2, -1)
        self.attn = torch.softmax(self.s, dim=-1)
        return self.out_proj.forward(self.merge(self.attn @ v))

    def relprop(self, r, record):
        r_o = self.split(self.out_proj.propagate(r, record))
        attn, v = leaf(self.attn), leaf(self.v)
        o = attn @ v
        g_attn, g_v = torch.autograd.grad(o, (attn, v), safe_divide(r_o, o))
        if self.rule == "cp":  # A is a constant
            r_v = self.v * g_v
            r_q = r_k = torch.zeros_like(self.q)
        else:  # uniform rule on O = A v, AttnLRP's softmax rule, uniform rule on S = q k^T
            r_v = 0.5 * self.v * g_v
            r_attn = 0.5 * self.attn * g_attn
            r_s = self.s * (r_attn - self.attn * r_attn.sum(dim=-1, keepdim=True))
            q, k = leaf(self.q), leaf(self.k)
            s = q @ k.transpose(-2, -1)
            g_q, g_k = torch.autograd.grad(s, (q, k), safe_divide(r_s, s))
            r_q, r_k = 0.5 * self.q * g_q, 0.5 * self.k * g_k
        r_qkv = torch.cat([self.merge(r_q), self.merge(r_k), self.merge(r_v)], dim=-1)
        return self.in_proj.propagate(r_qkv, record)

    def layers(self):
        return [self.in_proj, self.out_proj]


def mlp_op(mlp, path):
    """torchvision's MLPBlock: Linear, GELU, Dropout, Linear, Dropout."""
    ops = []
    for name, child in mlp.named_children():
        child_path = f"{path}.{name}"
        if isinstance(child, nn.Linear):
            ops.append(Layer(child, None, [child_path]))
        elif isinstance(child, nn.GELU):
            ops.append(Gelu(child, [child_path]))
        elif isinstance(child, nn.Dropout):
            ops.append(PassThrough([child_path]))
        else:
            raise RefError(f"LRP: module '{child_path}' ({type(child).__name__}) is not "
                           "supported in a transformer MLP")
    return Sequence(ops, [path])


def encoder_block_op(block, path, attention_rule):
    """EncoderBlock: x = x + dropout(attention(ln_1(x))); x + mlp(ln_2(x))."""
    attention = Sequence([LayerNorm(block.ln_1, [f"{path}.ln_1"]),
                          Attention(block.self_attention, f"{path}.self_attention",
                                    attention_rule),
                          PassThrough([f"{path}.dropout"])])
    mlp = Sequence([LayerNorm(block.ln_2, [f"{path}.ln_2"]), mlp_op(block.mlp, f"{path}.mlp")])
    return Sequence([Skip(attention), Skip(mlp)], [path])


def vit_graph(model, attention_rule):
    """VisionTransformer.forward: conv_proj, tokens, class token, encoder (position embedding,
    dropout, layers, ln), token 0, heads."""
    encoder = model.encoder
    blocks = []
    for name, block in encoder.layers.named_children():
        if not isinstance(block, EncoderBlock):
            raise RefError(f"LRP: 'encoder.layers.{name}' ({type(block).__name__}) is not an "
                           "EncoderBlock")
        blocks.append(encoder_block_op(block, f"encoder.layers.{name}", attention_rule))
    return Sequence([build(model.conv_proj, "conv_proj"), Tokens(),
                     ClassToken(model.class_token),
                     Sequence([PositionEmbedding(encoder.pos_embedding),
                               PassThrough(["encoder.dropout"]),
                               Sequence(blocks, ["encoder.layers"]),
                               LayerNorm(encoder.ln, ["encoder.ln"])], ["encoder"]),
                     ClassSelect(), build(model.heads, "heads")])


def join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def build(module, path):
    """The LRP op of one module (a Sequential is walked, a conv followed by a batch norm in it
    becomes one folded Layer)."""
    names = [path] if path else []
    if isinstance(module, nn.Sequential):
        children = list(module.named_children())
        ops, i = [], 0
        while i < len(children):
            name, child = children[i]
            following = children[i + 1] if i + 1 < len(children) else (None, None)
            if isinstance(child, nn.Conv2d) and isinstance(following[1], nn.BatchNorm2d):
                ops.append(Layer(child, following[1],
                                 [join(path, name), join(path, following[0])]))
                i += 2
            else:
                ops.append(build(child, join(path, name)))
                i += 1
        return Sequence(ops, names)
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return Layer(module, None, names)
    if isinstance(module, nn.ReLU):
        return Relu(names)
    if isinstance(module, nn.MaxPool2d):
        if module.return_indices:
            raise RefError(f"'{path}': MaxPool2d(return_indices=True) is not supported")
        return MaxPool(module, names)
    if isinstance(module, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        return AvgPool(module, names)
    if isinstance(module, nn.Dropout):
        return PassThrough(names)
    if isinstance(module, nn.Flatten):
        if module.start_dim != 1 or module.end_dim != -1:
            raise RefError(f"'{path}': only Flatten(1, -1) is supported")
        return PassThrough(names, flatten=True)
    if isinstance(module, (BasicBlock, Bottleneck)):
        return Residual(module, path)
    if isinstance(module, Fire):
        return FireOp(module, path)
    kind = type(module).__name__
    if isinstance(module, nn.BatchNorm2d):
        raise RefError(f"LRP: batch norm '{path}' does not directly follow a convolution (only "
                       "conv + batch norm pairs are folded)")
    raise RefError(f"LRP: module '{path}' ({kind}) is not supported")


def lrp_graph(model, attention_rule="attnlrp"):
    """The explicit LRP traversal of a torchvision VGG, AlexNet, ResNet, SqueezeNet,
    VisionTransformer (its attention by attention_rule) or a plain nn.Sequential, mirroring
    their forward()."""
    if isinstance(model, VisionTransformer):
        return vit_graph(model, attention_rule)
    if isinstance(model, (torchvision.models.VGG, torchvision.models.AlexNet)):
        return Sequence([build(model.features, "features"), build(model.avgpool, "avgpool"),
                         PassThrough(flatten=True), build(model.classifier, "classifier")])
    if isinstance(model, torchvision.models.ResNet):
        return Sequence([Layer(model.conv1, model.bn1, ["conv1", "bn1"]), Relu(["relu"]),
                         build(model.maxpool, "maxpool")]
                        + [build(getattr(model, f"layer{i}"), f"layer{i}") for i in range(1, 5)]
                        + [build(model.avgpool, "avgpool"), PassThrough(flatten=True),
                           build(model.fc, "fc")])
    if isinstance(model, torchvision.models.SqueezeNet):
        return Sequence([build(model.features, "features"),
                         build(model.classifier, "classifier"), PassThrough(flatten=True)])
    if isinstance(model, nn.Sequential):
        return build(model, "")
    raise RefError(f"LRP: no traversal for {type(model).__name__} (VGG, AlexNet, ResNet, "
                   "SqueezeNet, VisionTransformer or nn.Sequential only)")


def assign_rules(graph, composite, rule, params):
    """Sets each Layer's rule; returns {layer name: rule} in forward order."""
    layers = graph.layers()
    first_conv = next((layer for layer in layers if layer.kind == "conv"), None)
    for layer in layers:
        if rule is not None:
            layer.rule = rule
        else:
            first, conv, linear = COMPOSITES[composite]
            if layer is first_conv:
                layer.rule = first
            else:
                layer.rule = conv if layer.kind == "conv" else linear
        layer.params = params
    return {layer.names[0] if layer.names else f"<layer {i}>": layer.rule
            for i, layer in enumerate(layers)}


def lrp(graph, x, cls):
    """Input relevance [3,H,W], the traversal's logits [K] and {module path: relevance of its
    output, [1,...]} of the target z_cls (R = one-hot(cls) * z_cls at the output)."""
    with torch.no_grad():
        out = graph.forward(x)
    r = torch.zeros_like(out)
    r[0, cls] = out[0, cls]
    record = {}
    with torch.enable_grad():
        r_in = graph.propagate(r, record)
    return r_in[0].detach(), out[0], record


# ---------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Reference DeepLIFT (rescale) and LRP relevance maps on the eager "
        "torchvision model (float32 .npy files in OUTDIR)")
    parser.add_argument("model", metavar="MODEL.pt")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("outdir", metavar="OUTDIR")
    parser.add_argument("--class", dest="cls", type=int, default=None,
                        help="target class (default: top-1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--deeplift", action="store_true", help="DeepLIFT (rescale rule)")
    parser.add_argument("--baseline", default="black", choices=["black", "blurred", "mean"],
                        help="DeepLIFT baseline (default: black)")
    parser.add_argument("--blur-sigma", type=float, default=10.0, metavar="S",
                        help="sigma of the blurred baseline (default: 10.0)")
    parser.add_argument("--lrp", action="store_true", help="layer-wise relevance propagation")
    parser.add_argument("--composite", default=None, choices=sorted(COMPOSITES),
                        help="LRP rules per layer (default: epsilon-gamma-box)")
    parser.add_argument("--rule", default=None, choices=[r for r in RULES if r != "box"],
                        help="one LRP rule for every convolution and linear layer")
    parser.add_argument("--epsilon", type=float, default=1e-6, metavar="E")
    parser.add_argument("--gamma", type=float, default=0.25, metavar="G")
    parser.add_argument("--alpha", type=float, default=2.0, metavar="A")
    parser.add_argument("--beta", type=float, default=1.0, metavar="B")
    parser.add_argument("--attention-rule", default=None, choices=ATTENTION_RULES,
                        help="LRP through a vision transformer's attention (default: attnlrp)")
    parser.add_argument("--layers", default=None,
                        help="comma-separated module paths: their output relevance (LRP)")
    args = parser.parse_args()
    if not (args.deeplift or args.lrp):
        parser.error("nothing to do: give --deeplift and/or --lrp")
    if args.composite and args.rule:
        parser.error("--composite and --rule exclude each other")
    if args.layers and not args.lrp:
        parser.error("--layers needs --lrp")
    if args.attention_rule and not args.lrp:
        parser.error("--attention-rule needs --lrp")
    if not args.blur_sigma > 0:
        parser.error("--blur-sigma must be > 0")
    composite = None if args.rule else (args.composite or "epsilon-gamma-box")
    layers = list(dict.fromkeys(n for n in (args.layers or "").split(",") if n))

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        model, meta, scripted = load_eager(args.model)
        arch = meta["arch"]
        x = common.preprocess(common.load_rgb(args.image), **common.preprocess_params(meta))[None]
        diff = script_diff(model, scripted, x)
        if not diff < 1e-4:
            raise RefError(f"eager and scripted logits differ by {diff:g} (>= 1e-4)")
        with torch.no_grad():
            logits = model(x)[0]
        num_classes = logits.shape[0]
        if args.cls is not None and not 0 <= args.cls < num_classes:
            raise RefError(f"--class {args.cls} out of range [0, {num_classes})")
        cls = int(logits.argmax()) if args.cls is None else args.cls
        report = {"arch": arch, "class": cls, "logit": logits[cls].item(),
                  "eager_vs_script_max_abs": diff}
        maps = {}
        summary = []

        if args.deeplift:
            baseline = deeplift_baseline(args.baseline, x, meta, args.blur_sigma)
            attribution, pair, state = deeplift(model, x, baseline, cls)
            maps["deeplift.npy"] = attribution
            maps["deeplift_baseline.npy"] = baseline[0]
            total = attribution.double().sum().item()
            delta = pair[0, cls].item() - pair[1, cls].item()
            report.update({"deeplift_baseline": args.baseline})
            if args.baseline == "blurred":
                report["deeplift_blur_sigma"] = args.blur_sigma
            report.update({"deeplift_sum": total, "deeplift_delta": delta,
                           "deeplift_relu_count": state.relu,
                           "deeplift_relu6_count": state.relu6,
                           "deeplift_maxpool_count": state.maxpool,
                           "deeplift_other_nonlinear": state.other})
            gap = abs(total - delta) / max(abs(delta), 1e-12)
            summary.append(f"deeplift {args.baseline} sum {total:.6g} delta {delta:.6g} "
                           f"(rel. gap {gap:.2g}; relus {state.relu} relu6s {state.relu6} "
                           f"maxpools {state.maxpool})")

        if args.lrp:
            params = LrpParams(args.epsilon, args.gamma, args.alpha, args.beta,
                               normalized_constant(meta, 0.0, x)[0, :, 0, 0],
                               normalized_constant(meta, 1.0, x)[0, :, 0, 0])
            transformer = isinstance(model, VisionTransformer)
            if args.attention_rule and not transformer:
                raise RefError(f"--attention-rule: {arch} has no attention (vision "
                               "transformers only)")
            attention_rule = args.attention_rule or "attnlrp"
            graph = lrp_graph(model, attention_rule)
            rules = assign_rules(graph, composite, args.rule, params)
            relevance, traced, record = lrp(graph, x, cls)
            forward_diff = (traced - logits).abs().max().item()
            if not forward_diff <= 1e-4 * max(1.0, logits.abs().max().item()):
                raise RefError(f"the LRP traversal's logits differ from the model's by "
                               f"{forward_diff:g}")
            maps["lrp.npy"] = relevance
            layer_sums = {}
            modules = dict(model.named_modules())
            for name in layers:
                if name not in modules or name == "":
                    raise RefError(f"no module named '{name}' in the model")
                if name not in record:
                    raise RefError(f"layer '{name}' has no single output in the LRP traversal "
                                   "(it runs more than once)")
                r = record[name]
                grid = math.isqrt(r.shape[1] - 1) if r.dim() == 3 and r.shape[1] > 1 else 0
                if r.dim() == 4:
                    maps[f"lrp_{name}.npy"] = r[0].sum(dim=0)
                    layer_sums[name] = r[0].double().sum().item()
                elif transformer and grid * grid + 1 == r.shape[1]:
                    tokens = r[0, 1:]  # the class token's relevance is left out of the map
                    maps[f"lrp_{name}.npy"] = tokens.sum(dim=1).reshape(grid, grid)
                    layer_sums[name] = tokens.double().sum().item()
                else:
                    raise RefError(f"layer '{name}' outputs {list(r.shape)}, neither an "
                                   "[N,C,h,w] map nor (vision transformer) [N,1+g*g,C] tokens")
            target = traced[cls].item()
            report.update({"lrp_sum": relevance.double().sum().item(), "lrp_target": target,
                           "lrp_composite": composite, "lrp_rule": args.rule,
                           "lrp_epsilon": args.epsilon, "lrp_gamma": args.gamma,
                           "lrp_alpha": args.alpha, "lrp_beta": args.beta, "lrp_rules": rules,
                           "lrp_forward_max_abs": forward_diff, "lrp_layers": layer_sums})
            if transformer:
                report["attention_rule"] = attention_rule
            summary.append(f"lrp {composite or args.rule}"
                           f"{' ' + attention_rule if transformer else ''} sum "
                           f"{report['lrp_sum']:.6g} target {target:.6g}")

        os.makedirs(args.outdir, exist_ok=True)
        save(args.outdir, "input.npy", x[0])
        save(args.outdir, "logits.npy", logits)
        for name, tensor in maps.items():
            save(args.outdir, name, tensor)
        with open(os.path.join(args.outdir, "meta.json"), "w") as out:
            json.dump(report, out, indent=1)
            out.write("\n")
    except (RefError, OSError, RuntimeError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.outdir}: {arch} class {cls}; {'; '.join(summary)} "
          f"({time.perf_counter() - start:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
