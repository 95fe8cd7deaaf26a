"""MiniMax-Text-01 and MiniMax-M1 (`model_type: minimax`; MiniMax 2025, "MiniMax-01", arXiv 2501.08313): a hybrid
whose layer_types name each layer "linear_attention" (lightning attention: attention kind "lightning",
layers/attention_kinds/lightning.py, with no RoPE and one head per KV head; its fused `qkv_proj` stores each head's
q, k, v rows together, GPT-NeoX's layout, and its `norm` and `output_gate` sit on our attention layer) or
"full_attention" (GQA with RoPE); every FFN Mixtral's mixture of SwiGLU experts (block_sparse_moe: top-k of a
softmax, renormalised). The block is DeepNorm's post-norm in MiniMax's form (norm_placement "normed_residual"):
h = n1(x), x = alpha h + beta attn(h), then the same with n2 and the experts; alpha is residual_alpha, beta
residual_multiplier. transformers' MiniMaxRotaryEmbedding turns each head's whole width (a partial_rotary_factor
in rope_parameters is not read), and so do we. The decay buffers transformers stores (slope_rate, query_decay,
key_decay, diagonal_decay) follow from the layer index and are not read."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule
from .mixtral import RULES as MIXTRAL_RULES, STACKED, moe_fields, moe_hf

LINEAR, FULL = "linear_attention", "full_attention"
RULES = [r for r in LLAMA_RULES if ".attn." not in r.ours and ".mlp." not in r.ours] + \
    [r for r in MIXTRAL_RULES if ".mlp." in r.ours]
_BUFFERS = r"self_attn\.(slope_rate|query_decay|key_decay|diagonal_decay)$"
_SCALES = {FULL: ("full_attn_alpha_factor", "full_attn_beta_factor"),
           LINEAR: ("linear_attn_alpha_factor", "linear_attn_beta_factor"), "mlp": ("mlp_alpha_factor",
                                                                                    "mlp_beta_factor")}


def layer_rules(cfg: ModelConfig) -> list[Rule]:
    """Each layer's attention tensors, by its kind: lightning's fused qkv_proj, out_proj, output_gate and norm, or
    full attention's q, k, v and o_proj."""
    rules = []
    for i in range(cfg.n_layers):
        hf, ours = f"model.layers.{i}.self_attn.", f"blocks.{i}.attn."
        if cfg.for_layer(i).attention == "lightning":
            rules += [Rule(hf=(hf + "qkv_proj.weight",), ours=ours + "qkv_proj.weight", layout="neox_qkv", layer=i),
                      Rule.of(hf + "out_proj.weight", ours + "o_proj.weight"),
                      Rule.of(hf + "output_gate.weight", ours + "output_gate.weight"),
                      Rule.of(hf + "norm.weight", ours + "norm.weight")]
        else:
            rules += [Rule.of(tuple(hf + f"{p}_proj.weight" for p in "qkv"), ours + "qkv_proj.weight"),
                      Rule.of(hf + "o_proj.weight", ours + "o_proj.weight")]
    return rules


def _one(hf: dict, types: list[str], which: int) -> float:
    """The one alpha (which 0) or beta (1) of the layer types present and the experts; refused where they differ."""
    values = {float(hf.get(_SCALES[t][which], 1)) for t in {*types, "mlp"}}
    if len(values) > 1:
        raise LlmarchError(f"minimax: residual {'alpha' if which == 0 else 'beta'} factors that differ between "
                           f"attention kinds and the experts ({sorted(values)}) are not supported")
    return values.pop()


def to_config(hf: dict) -> ModelConfig:
    n, heads = hf["num_hidden_layers"], hf["num_attention_heads"]
    types = list(hf.get("layer_types") or [FULL if (i + 1) % 2 else LINEAR for i in range(n)])
    if set(types) - {LINEAR, FULL}:
        raise LlmarchError(f"minimax: unknown layer type {sorted(set(types) - {LINEAR, FULL})[0]!r}")
    if hf.get("sliding_window") is not None or hf.get("hidden_act", "silu") != "silu":
        raise LlmarchError("minimax: a sliding window or an activation other than silu is not supported")
    linear = {"attention": "lightning", "positions": "none", "n_kv_heads": heads}
    return llama_like_config(
        {**hf, "mlp_bias": False, "attention_bias": False, "rope_theta": hf.get("rope_theta", 1e6)},
        norm_placement="normed_residual", residual_alpha=_one(hf, types, 0), residual_multiplier=_one(hf, types, 1),
        layer_types=types, layer_overrides={LINEAR: linear} if LINEAR in types else None,
        attention_block=int(hf.get("block_size", 256)), expert_hidden=hf["intermediate_size"], **moe_fields(hf))


def from_config(cfg: ModelConfig) -> dict:
    kinds = [cfg.for_layer(i).attention for i in range(cfg.n_layers)]
    if set(kinds) - {"full", "lightning"} or {cfg.layer_mixer(i) for i in range(cfg.n_layers)} != {"attention"} \
            or cfg.norm_placement != "normed_residual" or cfg.norm != "rmsnorm" or cfg.ffn != "swiglu" or cfg.bias \
            or cfg.qkv_bias or cfg.qk_norm != "none" or cfg.rope_fraction != 1.0:
        raise LlmarchError("model_type minimax needs full and lightning attention layers (no biases, QK-norm or "
                           "partial RoPE), RMSNorm with norm_placement='normed_residual' and SwiGLU")
    if not cfg.n_experts or cfg.moe_period != 1 or cfg.moe_dense_first or cfg.n_shared_experts \
            or cfg.router_scoring != "softmax" or not cfg.router_renormalize or cfg.expert_hidden != cfg.ffn_hidden \
            or cfg.capacity_factor is not None or cfg.expert_capacity is not None or cfg.router_groups > 1:
        raise LlmarchError("model_type minimax needs every FFN Mixtral's mixture (softmax top-k, renormalised, "
                           "experts of width ffn_hidden, no shared experts or capacity)")
    scales = {name: v for pair, v in zip(zip(*_SCALES.values()), (cfg.residual_alpha, cfg.residual_multiplier))
              for name in pair}
    out = llama_like_hf(cfg, architectures=["MiniMaxForCausalLM"], block_size=cfg.attention_block,
                        layer_types=[LINEAR if k == "lightning" else FULL for k in kinds], **scales, **moe_hf(cfg))
    for key in ("attention_bias", "mlp_bias"):
        out.pop(key)
    return out


FAMILIES.register("minimax")(Family(RULES, to_config, from_config, IGNORE + (_BUFFERS,), stacked_experts=STACKED,
                                    more_rules=layer_rules))
