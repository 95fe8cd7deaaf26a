"""A GGUF file's block-quantized matrices kept quantized in memory, on llmarch's own int4/int8 kernels (quant/),
instead of dequantized to fp32.

Which llama.cpp types the kernels hold (llama.cpp's ggml-quants.c defines the blocks; quant/linear.py the kernels):
- Q4_1 (per 32 weights: w = d q + m, q in 0..15) is int4 in groups of 32 with scale d and zero m + 8 d, and Q4_0
  (w = d (q - 8)) the same with zero 0: the codes are the file's own, recovered from the dequantized block
  (`file_codes`). The scales and zeros are stored in the kernel's compute dtype (bf16), rounded from the file's
  fp16: that rounding, and bf16 activations, are what this costs.
- Q4_K (per 256 weights, eight sub-blocks of 32: w = d sc_j q - dmin m_j, q in 0..15, sc_j and m_j 6-bit) is
  int4 in groups of 32 too, scale d sc_j and zero 8 d sc_j - dmin m_j; its blocks need not reach q = 0 or 15, so
  its codes are those of the grid the group's values lie on (`_grid`).
- Q8_0 (per 32 weights: w = d q, q in -127..127) has a scale per 32 weights; the int8 kernel one per output
  channel, so Q8_0 matrices are re-quantized to int8 per channel, and so are the 5- and 6-bit types (Q5_0, Q5_1,
  Q5_K, Q6_K: more levels than int4's 16), Q2_K and Q3_K (a scale per 16 weights), and the codebook types (IQ4_NL
  and IQ4_XS: 16 levels, but not evenly spaced; the 1- to 3-bit IQ types; the ternary TQ1_0 and TQ2_0).
- A file that mixes 4-bit matrices with those (Q4_K_M: Q6_K for some layers' ffn_down and attn_v) runs its 4-bit
  layers on int4 and the others on int8; which is which is what the file's values say (a layer goes to int4
  only where the recovered codes give its weights exactly), recorded as the scheme's `int8_layers`.
- The token embedding goes to int8 per row (quant/linear.py's Int8Embedding) when the file stores it quantized,
  and the LM head (a tied one is the embedding table, as llama.cpp reads it) to int8 per channel when the file's
  is not 4-bit: an int4 copy of SmolLM2's Q8_0 table would cost 5% perplexity (docs/quantization.md).
- A mixture of experts' stacked `ffn_*_exps` tensors go per expert onto the same kernels (quant/experts.py's
  QuantExperts: expert e's matrices are its own int4/int8 layers, with the file's codes for the 4-bit types); the
  router (`ffn_gate_inp`, F32 in llama.cpp's files) stays as it is.
- The tensors the quantizers leave in float (KEPT_FLOAT: routers, Mamba's A, D, conv and norm weights, learned
  positions and token types, biases, and rows shorter than a block) do not make a file a mix; a linear layer among
  them (Mamba's dt projection, F16) is re-quantized to int8 with the rest.
Files of other types (F16, BF16, a mix with float matrices) have no kernel here: they are dequantized.
Each layer is quantized as soon as its tensors are read (QuantizeAsRead), so loading holds one dequantized matrix at
a time beside the quantized ones, not the fp32 model."""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from ..quant import Scheme
from ..layers.moe import Experts
from ..quant.experts import QuantExperts
from ..quant.linear import Int8Embedding
from ..quant.rtn import int4_rtn

INT4_TYPES = frozenset({"Q4_0", "Q4_1", "Q4_K"})  # held by int4 at group 32 with the file's own codes
# re-quantized to int8 per output channel: 5 to 8 bits (more levels than int4's 16), or K-quants whose scales
# change every 16 weights (Q2_K, Q3_K), finer than the int4 kernel's groups of 32
INT8_TYPES = frozenset({"Q8_0", "Q5_0", "Q5_1", "Q5_K", "Q6_K", "Q2_K", "Q3_K",
                        # and the codebook types: 4-bit IQ4_NL and IQ4_XS (non-uniform levels, which int4's evenly
                        # spaced ones do not hold), the 1- to 3-bit IQ types and the ternary TQ types
                        "IQ4_NL", "IQ4_XS", "IQ3_S", "IQ3_XXS", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_S", "IQ1_M",
                        "TQ1_0", "TQ2_0"})
FLOAT_TYPES = frozenset({"F32", "F16", "BF16"})
EMBEDDING, HEAD = "token_embd.weight", "output.weight"
# tensors the quantizers leave in float whatever the file's type: a mixture's router (and a shared expert's
# gate), Mamba's A, D, conv and gated-norm weights and the same of Qwen3-Next's delta net (none of them a linear
# layer's), every bias (the converter keeps all but `.weight` tensors F32: gpt-oss's experts' biases are 2-D),
# learned positions and token types (convert_hf_to_gguf.py keeps POS_EMBD and TOKEN_TYPES F32: llama.cpp adds
# BERT's type row to the F32 activations, which its CPU add refuses in F16), and rows shorter than a block of 32
# (Mamba's dt projection from a rank of 8 or 16), RWKV-7's fused token-shift lerps and decay LoRA (the converter keeps
# TIME_MIX_LERP_FUSED, W1 and W2 F32: llama.cpp's lerp refuses an F16 one, measured), and RWKV-6's bonus and decay LoRA
# (TIME_MIX_FIRST, DECAY_W1, DECAY_W2: the converter's list too); they do not decide the file's scheme
KEPT_FLOAT = re.compile(r"ffn_gate_inp|\.ssm_(a|d|conv1d)\b|ssm_norm|\.bias$|^position_embd\.|^token_types\.|"
                        r"\.time_mix_(lerp_fused|w1|w2|first|decay_w1|decay_w2)\.")


def file_scheme(reader) -> Scheme | None:
    """The llmarch scheme that holds the file's matrices (the token embedding and LM head apart); None where
    some are float or of a type neither kernel takes, which stay dequantized."""
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    kinds = {types[t.name] for t in reader.tensors  # the matrices, stacked experts' included
             if len(t.shape) >= 2 and t.name not in (EMBEDDING, HEAD) and not KEPT_FLOAT.search(t.name)
             and not (int(t.shape[0]) % 32 and types[t.name] in FLOAT_TYPES)}
    embedding = types.get(EMBEDDING, "F32")
    head = types.get(HEAD, embedding)  # no output.weight: the head is the embedding table (tied)
    if not kinds or not kinds <= INT4_TYPES | INT8_TYPES:
        return None
    method = "int4" if kinds & INT4_TYPES else "int8"  # a mix: the others' layers int8 (Scheme.int8_layers)
    return Scheme(method, group_size=32, head=True, embeddings=embedding not in FLOAT_TYPES,
                  head_int8=method == "int4" and head not in INT4_TYPES)


def from_gguf_kernels(path: str | Path, device=None):
    """The model of a .gguf file with its Q4_0/Q4_1/Q8_0 matrices on llmarch's int4/int8 kernels (see above);
    a file of other types comes back dequantized, as `from_gguf` gives it. The scheme is `model.quantization`."""
    from .gguf import from_gguf, open_gguf

    scheme = file_scheme(open_gguf(path))
    if scheme is None:
        return from_gguf(path, device=device)
    take = QuantizeAsRead(scheme, path)
    model = from_gguf(path, device=device, take=take)
    model.quantization = replace(scheme, int8_layers=tuple(take.int8_layers)) if take.int8_layers else scheme
    return model


def expected_scheme(path: str | Path) -> Scheme | None:
    """The scheme from_gguf_kernels gives the file, from its tensor types alone (no tensor is read): file_scheme's,
    with int8_layers the layers some tensor of which int4 does not hold (a 5- to 8-bit or float type), a mixture's
    experts each by the type of its stacked tensor. Loading decides from the values instead, which for a file of
    llama.cpp's types comes to the same. `llmarch info` reports the weight memory under it."""
    from ..models.build import empty_model
    from ..quant.apply import targets
    from .gguf import gguf_plan, open_gguf
    from .mapping import expand

    scheme = file_scheme(open_gguf(path))
    if scheme is None or not scheme.int4:
        return scheme
    cfg, family, tensors = gguf_plan(path)
    model = empty_model(cfg)
    layers = dict(targets(model, scheme))
    layers.pop("lm_head", None)  # head_int8 decides the head
    int8, stored = [], tensors.names()
    for rule in expand(family.rules_for(cfg), cfg):
        layer, _, part = rule.ours.rpartition(".")
        types = [t for hf in rule.hf if hf in stored for t in tensors.types(hf)]
        if layer not in layers or all(t in INT4_TYPES for t in types):
            continue
        if isinstance(layers[layer], Experts):  # a stacked tensor: each expert's layer, as QuantExperts names them
            if part in (layers[layer].in_name, "down"):
                int8 += [f"{layer}.{part}.{e}" for e in range(cfg.n_experts)]
        elif part == "weight":
            int8.append(layer)
    int8 = list(dict.fromkeys(int8))
    return replace(scheme, int8_layers=tuple(int8)) if int8 else scheme


def file_codes(weight: torch.Tensor, group_size: int = 32):
    """The int4 codes (N, K) and scales and zeros (N, K/G) that hold a matrix of Q4_0, Q4_1 and Q4_K blocks exactly,
    from its dequantized values, and whether they do (`exact`: each value again within 1e-5 of the largest |w|, fp32
    rounding; not for a type of more than 4 bits). Per group the first block form that reproduces it: Q4_0's
    w = d (q - 8), whose largest |w| is always -8 d (llama.cpp's quantizer maps the largest |x| to q = 0), which
    gives d and then q (its zero, 0, is exact in bf16 too, hence first); then Q4_1's w = d q + m, found again by
    round-to-nearest between the group's min and max; then a Q4_K sub-block's, which may reach neither end (_grid).
    A Q4_0 file's matrix is done after the first form."""
    N, K = weight.shape
    g = weight.float().reshape(N, K // group_size, group_size)
    tol = 1e-5 * g.abs().amax(-1)
    d = -g.gather(-1, g.abs().argmax(-1, keepdim=True)) / 8  # Q4_0's form: (N, K/G, 1)
    q = (g / torch.where(d == 0, 1.0, d)).round().add(8).clamp(0, 15)
    s, z = d.squeeze(-1), torch.zeros_like(tol)
    err = _errors(g, q, s, z)
    if not bool((err <= tol).all()):  # Q4_1's form, where it does better
        codes, scales, zeros = int4_rtn(weight, group_size)
        codes = codes.reshape_as(g).float()
        errors = _errors(g, codes, scales, zeros)
        better = errors < err
        q = torch.where(better[..., None], codes, q)
        s, z = torch.where(better, scales, s), torch.where(better, zeros, z)
        err = torch.minimum(errors, err)
        rest = err > tol
        if rest.any() and _at_most_16_values(g[rest][:256], tol[rest][:256]):  # Q4_K's, on the groups left
            found = _grid(g[rest], tol[rest])
            q[rest], s[rest], z[rest] = found
            err[rest] = _errors(g[rest], *found)
    exact = bool((err <= 1e-5 * g.abs().max()).all())
    return q.to(torch.uint8).reshape(N, K), s, z, exact


def _errors(g: torch.Tensor, q: torch.Tensor, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Each group's largest difference between (q - 8) s + z (quant.rtn.int4_dequantize's arithmetic) and g."""
    return ((q - 8) * s[..., None] + z[..., None] - g).abs().amax(-1)


def _at_most_16_values(g: torch.Tensor, tol: torch.Tensor) -> bool:
    """Whether every group of g (M, G) has at most 16 distinct values (a 4-bit one's; a Q6_K or Q8_0 group has
    more): a few groups tell a matrix that no grid holds, before _grid tries 14 of them on all."""
    gaps = g.sort(-1).values.diff(dim=-1)
    return bool(((gaps > tol[:, None]).sum(-1) < 16).all())


def _grid(g: torch.Tensor, tol: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Q4_K's form for groups g (M, G), w = a q - b with a and b from 6-bit scales, which need not reach q = 0
    or 15: the codes, scales and zeros (kernel form, (q - 8) s + z) of the first of the grids span / n
    (n = 15 .. 1) from the group's least value on which every value lies within tol (M,); min-max rounding
    (n = 15) where none does."""
    low = g.amin(-1)
    span = g.amax(-1) - low
    step = span / 15
    todo = torch.arange(len(g))
    for n in range(14, 0, -1):  # n = 15 is the Q4_1 form, which the caller tried
        a = span[todo] / n
        x = (g[todo] - low[todo, None]) / torch.where(a > 0, a, 1.0)[:, None]
        fits = ((x.round() - x).abs().amax(-1) * a <= tol[todo]) & (a > 0)
        step[todo[fits]] = a[fits]
        todo = todo[~fits]
        if not len(todo):
            break
    q = torch.where(step[:, None] > 0, (g - low[:, None]) / torch.where(step > 0, step, 1.0)[:, None], 0.0)
    return q.round().clamp(0, 15), step, low + 8 * step


class QuantizeAsRead:
    """hf.build_from's `take`: each linear layer the scheme quantizes is built from its weight (and bias) the
    moment they are read, and the fp32 tensors are dropped, so loading holds one dequantized matrix at a time
    beside the quantized ones (the same layers quant.apply.quantize makes from a loaded model). The embedding
    table, when the scheme quantizes it, and a tied head are made from the embedding's tensor."""

    def __init__(self, scheme: Scheme, source):
        from ..quant.apply import layer_maker

        self.scheme, self.source = scheme, source
        self.make_layer = layer_maker(scheme, meta=False)
        self.make_int8 = layer_maker(replace(scheme, method="int8", int8_layers=()), meta=False)
        self.targets: set[str] | None = None
        self.int8_layers: list[str] = []  # int4-shaped layers whose weights int4 does not hold (5- to 8-bit types)
        self.pending: dict[str, dict[str, torch.Tensor]] = {}

    def __call__(self, model: nn.Module, name: str, tensor: torch.Tensor) -> bool:
        from ..quant.apply import targets

        if self.targets is None:  # on the first tensor: the meta model's layers (and experts) the scheme quantizes
            self.targets = set(dict(targets(model, self.scheme)))
        if name == "embed.weight":
            if "lm_head" in self.targets and model.config.tied_head:  # the head is the table: its own copy
                model.lm_head = self.make("lm_head", tensor, None)
            if self.scheme.embeddings:
                model.embed = Int8Embedding.from_embedding(nn.Embedding.from_pretrained(tensor))
            return self.scheme.embeddings
        layer, _, part = name.rpartition(".")
        if layer not in self.targets:
            return False
        module = model.get_submodule(layer)
        experts = isinstance(module, Experts)
        needed = {module.in_name: True, "down": True, "in_bias": module.in_bias is not None,
                  "down_bias": module.down_bias is not None} if experts else {"weight": True,
                                                                              "bias": module.bias is not None}
        if part not in needed:
            return False
        parts = self.pending.setdefault(layer, {})
        parts[part] = tensor
        if all(p in parts for p, wanted in needed.items() if wanted):
            parent, _, child = layer.rpartition(".")
            if experts:  # the stacked tensors into the meta module, then each expert's matrices onto the kernels
                for p, t in parts.items():
                    setattr(module, p, nn.Parameter(t, requires_grad=False))
                new = QuantExperts(module, lambda w, b, fitted, part: self.make(f"{layer}.{part}", w, b))
            else:
                new = self.make(layer, parts["weight"], parts.get("bias"))
            setattr(model.get_submodule(parent), child, new)
            del self.pending[layer]
        return True

    def make(self, name: str, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
        """The quantized layer for `name`: int4 holding the file's own codes (file_codes) where they give its
        weight exactly (a 4-bit type's), else int8 (listed in int8_layers where the scheme would not make it so:
        a 5- to 8-bit type's, or a width the groups do not divide)."""
        from ..quant.apply import holds_int4

        N, K = weight.shape
        G = self.scheme.group_size
        codes = None
        int8 = self.scheme.int4 and K > G and K % G  # a row of whole blocks it is not (a file's F16 row of 48)
        if holds_int4(self.scheme, N, K) and not (name == "lm_head" and self.scheme.head_int8):
            *found, exact = file_codes(weight, G)
            codes, int8 = tuple(found), not exact
        if int8:
            self.int8_layers.append(name)  # named, so that a checkpoint of the model builds it int8 again
            return self.make_int8(name, weight, bias)
        return self.make_layer(name, weight, bias, codes)
