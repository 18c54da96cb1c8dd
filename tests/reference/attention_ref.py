#!/usr/bin/env python3
"""Reference attention maps, attention rollout and Chefer et al.'s gradient-weighted attention on
an EAGER torchvision VisionTransformer.

usage: attention_ref.py MODEL.pt IMAGE OUTDIR [--class C] [--head-fusion mean|max|min]
                        [--discard-ratio R] [--threads N]

The model is rebuilt in eager PyTorch from the TorchScript file as methods_ref.py does
(load_eager: torchvision.models.<arch>, or tests/reference/tiny_models.py's tiny_vit, with the
scripted weights, eval mode, parameters frozen; eager and scripted logits within 1e-4). It must
be a VisionTransformer-like model whose model.encoder.layers are torchvision EncoderBlocks, each
with an nn.MultiheadAttention `self_attention` (packed in_proj, no bias_k/bias_v, no
add_zero_attn); anything else is refused. x is the normalized input [1,3,H,W]
(common.preprocess with the metadata's parameters); C is the target class (--class, default:
top-1 of model(x)); the target is the pre-softmax logit y_C (methods_ref.score_of with its
default SCORE). float32 throughout.

Attention weights, computed independently of the module's own attention kernel
  For the duration of the pass, the `self_attention` of every block k (in the order of
  model.encoder.layers; P_k is its module path, e.g. encoder.layers.encoder_layer_0.
  self_attention) is replaced by a wrapper that
    1. calls the original module with need_weights=True, average_attn_weights=False under
       no_grad, keeping its output O_ref and weights W_ref [N,H,T,T];
    2. recomputes the attention from the module's parameters, with E = embed_dim, H =
       num_heads, d = E / H and the inputs as [N,T,E] (transposed from [T,N,E] when the module
       is not batch_first):
         q, k, v = F.linear(query|key|value, in_proj_weight[0:E|E:2E|2E:3E],
                            in_proj_bias[0:E|E:2E|2E:3E]), each split into H heads [N,H,T,d]
         A = softmax(q k^T / sqrt(d), dim=-1)                  [N,H,T,T]
         O = out_proj(heads of A v merged back to [N,T,E])
       and returns (O, None) in the module's layout: O, and so A, is what the rest of the
       network computes with, so autograd gives dy_C/dA;
    3. checks max|O - O_ref| <= 1e-5 * max(1, max|O_ref|) and max|A - W_ref| <= 1e-6.
  The wrapped model's logits must equal the unwrapped model's within 1e-4 (max abs). The input
  x requires grad (the parameters are frozen), so every A_k is part of the graph; ONE backward
  pass of y_C (torch.autograd.grad) gives G_k = dy_C/dA_k [N,H,T,T] for all blocks at once:
  the total derivative, through the later blocks' attention too.
  T is the number of tokens: the class token at index 0, then a g x g grid of patch tokens,
  row-major; g = sqrt(T - 1), and a model where T - 1 is not a perfect square is refused.
  Below, A_j and G_j stand for row 0 of the batch: [H,T,T].

Written to OUTDIR (float32 .npy, little-endian, C order), for every block k (path P_k):
  attention_<P_k>.npy [H,g,g]   raw attention of the class token per head: A_k[h, 0, 1:] as
                                g x g
  rollout_<P_k>.npy [g,g]       attention rollout (Abnar & Zuidema 2020, "Quantifying Attention
                                Flow in Transformers", with jacobgil/vit-explain's head fusion
                                and discarding) through blocks 0..k: result = I [T,T]; for each
                                block j = 0..k in order:
                                  fused = mean, max or min over heads of A_j (--head-fusion,
                                          default mean) [T,T]
                                  n = int(T * T * R) (R = --discard-ratio, default 0.9; Python
                                      float product, truncated)
                                  the n smallest entries of fused flattened row-major
                                  (torch.topk(n, largest=False); ties as topk breaks them) are
                                  set to 0, except flat index 0 (the class token's attention to
                                  itself), which is never discarded (fewer than n are then zeroed)
                                  a = (fused + I) / 2;  a = a / a.sum(-1, keepdim=True)  (rows)
                                  result = a @ result
                                map = result[0, 1:] as g x g, raw (not divided by its max)
  rows_<P_k>.npy [T]            the row sums of block k's renormalized a (1 up to rounding)
  attention_grad_<P_k>.npy [g,g]
                                Chefer, Gur & Wolf 2021, "Generic Attention-model
                                Explainability for Interpreting Bi-Modal and Encoder-Decoder
                                Transformers" (ICCV), self-attention rule, through blocks 0..k:
                                R = I [T,T]; for each block j = 0..k in order:
                                  Abar = mean over heads of clamp(G_j * A_j, min=0)   [T,T]
                                  R = R + Abar @ R
                                map = R[0, 1:] as g x g, raw
  meta.json {"arch", "class", "logit" (y_C), "T", "H", "g", "blocks" (the P_k in order),
             "head_fusion", "discard_ratio", "discard_count" (n),
             "eager_vs_script_max_abs", "wrapped_vs_plain_logits_max_abs",
             "output_max_abs" ({P_k: max|O - O_ref|}), "weights_max_abs" ({P_k: max|A - W_ref|})}
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from cnnviz_python import ensure_torch  # noqa: E402

ensure_torch("attention_ref.py")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torchvision.models.vision_transformer import EncoderBlock  # noqa: E402

import common  # noqa: E402
from methods_ref import RefError, load_eager, save, score_of, script_diff  # noqa: E402

PROG = "attention_ref.py"
FUSIONS = ("mean", "max", "min")
OUTPUT_TOL = 1e-5  # explicit vs module output, relative to max(1, max|output|)
WEIGHTS_TOL = 1e-6  # explicit softmax vs need_weights=True weights, absolute
LOGITS_TOL = 1e-4  # wrapped vs unwrapped logits, absolute


class ExplicitAttention(nn.Module):
    """Stands in for one nn.MultiheadAttention: recomputes its attention from the parameters
    (see the module docstring), checks it against the module's own, and keeps A (attached to
    the graph) and the measured differences."""

    def __init__(self, original, path):
        super().__init__()
        if not isinstance(original, nn.MultiheadAttention):
            raise RefError(f"'{path}' is not an nn.MultiheadAttention")
        if (not original._qkv_same_embed_dim or original.in_proj_weight is None
                or original.bias_k is not None or original.add_zero_attn):
            raise RefError(f"'{path}': only packed q/k/v projections without bias_k, bias_v or "
                           "add_zero_attn are supported")
        self.original = original
        self.path = path
        self.attention = None  # A [N,H,T,T]
        self.output_diff = None
        self.weights_diff = None

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True):
        if key_padding_mask is not None or attn_mask is not None:
            raise RefError(f"'{self.path}': attention masks are not supported")
        if self.attention is not None:
            raise RefError(f"'{self.path}' runs more than once per forward pass")
        mha = self.original
        with torch.no_grad():
            ref_out, ref_weights = mha(query, key, value, need_weights=True,
                                       average_attn_weights=False)
        if not mha.batch_first:  # [T,N,E] -> [N,T,E]
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        n, tokens, embed = query.shape
        heads = mha.num_heads
        dim = embed // heads
        w, b = mha.in_proj_weight, mha.in_proj_bias
        bias = (lambda i: None) if b is None else (lambda i: b[i * embed:(i + 1) * embed])

        def project(t, i):  # [N,T,E] -> [N,H,T,d]
            p = F.linear(t, w[i * embed:(i + 1) * embed], bias(i))
            return p.reshape(n, -1, heads, dim).transpose(1, 2)

        q, k, v = project(query, 0), project(key, 1), project(value, 2)
        attention = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(dim), dim=-1)
        merged = (attention @ v).transpose(1, 2).reshape(n, tokens, embed)
        out = mha.out_proj(merged)
        if not mha.batch_first:
            out = out.transpose(0, 1)

        self.output_diff = (out.detach() - ref_out).abs().max().item()
        bound = OUTPUT_TOL * max(1.0, ref_out.abs().max().item())
        if not self.output_diff <= bound:
            raise RefError(f"'{self.path}': explicit attention output differs from the module's "
                           f"by {self.output_diff:g} (> {bound:g})")
        if ref_weights is None or tuple(ref_weights.shape) != tuple(attention.shape):
            raise RefError(f"'{self.path}': the module's weights are not [N,H,T,T]")
        self.weights_diff = (attention.detach() - ref_weights).abs().max().item()
        if not self.weights_diff <= WEIGHTS_TOL:
            raise RefError(f"'{self.path}': explicit softmax differs from the module's weights "
                           f"by {self.weights_diff:g} (> {WEIGHTS_TOL:g})")
        self.attention = attention
        return out, None


def attention_blocks(model):
    """[(path of the block's nn.MultiheadAttention, EncoderBlock)] in the order of
    model.encoder.layers; refuses a model without torchvision EncoderBlocks."""
    layers = getattr(getattr(model, "encoder", None), "layers", None)
    blocks = list(layers.children()) if isinstance(layers, nn.Module) else []
    if not blocks or not all(isinstance(block, EncoderBlock)
                             and isinstance(block.self_attention, nn.MultiheadAttention)
                             for block in blocks):
        raise RefError(f"{type(model).__name__}: not a vision transformer with torchvision "
                       "EncoderBlocks containing nn.MultiheadAttention")
    names = {id(module): name for name, module in model.named_modules()}
    return [(names[id(block.self_attention)], block) for block in blocks]


def attentions_and_grads(model, x, cls):
    """One forward pass with every block's attention recomputed explicitly, and one backward
    pass of y_target (target: cls, or the top-1 of the unwrapped model when cls is None).
    Returns (paths, A list [N,H,T,T], G list [N,H,T,T], logits [C], wrappers, max abs
    difference of wrapped and unwrapped logits, target)."""
    blocks = attention_blocks(model)
    with torch.no_grad():
        plain = model(x)
    wrappers = [ExplicitAttention(block.self_attention, path) for path, block in blocks]
    try:
        for (_, block), wrapper in zip(blocks, wrappers):
            block.self_attention = wrapper
        x = x.detach().clone().requires_grad_(True)
        out = model(x)
    finally:
        for (_, block), wrapper in zip(blocks, wrappers):
            block.self_attention = wrapper.original
    for wrapper in wrappers:
        if wrapper.attention is None:
            raise RefError(f"'{wrapper.path}' did not run in the forward pass")
    logits_diff = (out.detach() - plain).abs().max().item()
    if not logits_diff <= LOGITS_TOL:
        raise RefError(f"logits with the explicit attention differ from the model's by "
                       f"{logits_diff:g} (> {LOGITS_TOL:g})")
    target = int(plain[0].argmax()) if cls is None else cls
    attentions = [wrapper.attention for wrapper in wrappers]
    grads = torch.autograd.grad(score_of(out, target).sum(), attentions)
    return ([path for path, _ in blocks], [a.detach() for a in attentions],
            [g.detach() for g in grads], out.detach()[0], wrappers, logits_diff, target)


def fuse_heads(attention, fusion):
    """[H,T,T] -> [T,T]: mean, max or min over the heads."""
    if fusion == "mean":
        return attention.mean(dim=0)
    if fusion == "max":
        return attention.max(dim=0).values
    if fusion == "min":
        return attention.min(dim=0).values
    raise RefError(f"unknown head fusion '{fusion}'")


def discard_count(tokens, ratio):
    return int(tokens * tokens * ratio)


def rollout(attentions, fusion, ratio):
    """Attention rollout through blocks 0..k for every k (see the module docstring); attentions
    are [H,T,T]. Returns [(result [T,T], row sums of that block's a [T])] per block."""
    tokens = attentions[0].shape[-1]
    eye = torch.eye(tokens, dtype=torch.float32)
    result = eye.clone()
    count = discard_count(tokens, ratio)
    out = []
    for attention in attentions:
        fused = fuse_heads(attention, fusion).clone()
        flat = fused.view(-1)
        if count > 0:
            indices = flat.topk(count, largest=False).indices
            flat[indices[indices != 0]] = 0
        a = (fused + eye) / 2
        a = a / a.sum(dim=-1, keepdim=True)
        result = a @ result
        out.append((result, a.sum(dim=-1)))
    return out


def attention_grad(attentions, grads):
    """Chefer et al.'s self-attention relevance through blocks 0..k for every k; attentions and
    grads are [H,T,T]. Returns [R [T,T]] per block."""
    tokens = attentions[0].shape[-1]
    relevance = torch.eye(tokens, dtype=torch.float32)
    out = []
    for attention, grad in zip(attentions, grads):
        mean = (grad * attention).clamp(min=0).mean(dim=0)
        relevance = relevance + mean @ relevance
        out.append(relevance)
    return out


def grid_of(tokens):
    """g with tokens = 1 + g * g; refuses any other token count."""
    g = math.isqrt(tokens - 1) if tokens > 1 else 0
    if g < 1 or g * g != tokens - 1:
        raise RefError(f"{tokens} tokens: not a class token and a square grid of patches")
    return g


def main():
    parser = argparse.ArgumentParser(
        prog=PROG, description="Reference attention maps, attention rollout and Chefer et al.'s "
        "gradient-weighted attention on the eager torchvision ViT (float32 .npy files in OUTDIR)")
    parser.add_argument("model", metavar="MODEL.pt")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("outdir", metavar="OUTDIR")
    parser.add_argument("--class", dest="cls", type=int, default=None,
                        help="target class (default: top-1)")
    parser.add_argument("--head-fusion", default="mean", choices=FUSIONS,
                        help="how rollout fuses the heads (default: mean)")
    parser.add_argument("--discard-ratio", type=float, default=0.9, metavar="R",
                        help="fraction of the smallest fused weights rollout zeroes (default: "
                        "0.9)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if not 0 <= args.discard_ratio <= 1:
        parser.error("--discard-ratio must be in [0, 1]")

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        model, meta, scripted = load_eager(args.model)
        arch = meta["arch"]
        attention_blocks(model)  # refuse a non-ViT before anything else runs
        x = common.preprocess(common.load_rgb(args.image), **common.preprocess_params(meta))[None]
        diff = script_diff(model, scripted, x)
        if not diff < 1e-4:
            raise RefError(f"eager and scripted logits differ by {diff:g} (>= 1e-4)")
        with torch.no_grad():
            num_classes = model(x).shape[1]
        if args.cls is not None and not 0 <= args.cls < num_classes:
            raise RefError(f"--class {args.cls} out of range [0, {num_classes})")

        paths, attentions, grads, logits, wrappers, logits_diff, cls = attentions_and_grads(
            model, x, args.cls)
        heads, tokens = attentions[0].shape[1], attentions[0].shape[-1]
        g = grid_of(tokens)
        attentions = [a[0] for a in attentions]
        grads = [gr[0] for gr in grads]
        rolled = rollout(attentions, args.head_fusion, args.discard_ratio)
        relevance = attention_grad(attentions, grads)

        os.makedirs(args.outdir, exist_ok=True)
        for path, attention, (result, rows), r in zip(paths, attentions, rolled, relevance):
            save(args.outdir, f"attention_{path}.npy", attention[:, 0, 1:].reshape(heads, g, g))
            save(args.outdir, f"rollout_{path}.npy", result[0, 1:].reshape(g, g))
            save(args.outdir, f"rows_{path}.npy", rows)
            save(args.outdir, f"attention_grad_{path}.npy", r[0, 1:].reshape(g, g))
        report = {"arch": arch, "class": cls, "logit": logits[cls].item(), "T": tokens,
                  "H": heads, "g": g, "blocks": paths, "head_fusion": args.head_fusion,
                  "discard_ratio": args.discard_ratio,
                  "discard_count": discard_count(tokens, args.discard_ratio),
                  "eager_vs_script_max_abs": diff,
                  "wrapped_vs_plain_logits_max_abs": logits_diff,
                  "output_max_abs": {w.path: w.output_diff for w in wrappers},
                  "weights_max_abs": {w.path: w.weights_diff for w in wrappers}}
        with open(os.path.join(args.outdir, "meta.json"), "w") as out:
            json.dump(report, out, indent=1)
            out.write("\n")
    except (RefError, OSError, RuntimeError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.outdir}: {arch} class {cls} logit {report['logit']:.6g} blocks {len(paths)} "
          f"T {tokens} heads {heads} fusion {args.head_fusion} discard {args.discard_ratio} "
          f"max diffs: output {max(report['output_max_abs'].values()):.2g} weights "
          f"{max(report['weights_max_abs'].values()):.2g} logits {logits_diff:.2g} "
          f"({time.perf_counter() - start:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
