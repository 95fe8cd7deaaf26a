"""NVIDIA's Llama-3.x-Nemotron "NAS" models (`model_type: nemotron-nas`, remote code DeciLMForCausalLM: Llama-3.1-
Nemotron-51B, Llama-3.3-Nemotron-Super-49B, Llama-3.1-Nemotron-Ultra-253B; Bercovich et al. 2024, "Puzzle:
Distillation-Based NAS for Inference-Optimized LLMs"): LLaMA blocks whose shape each layer's entry of `block_configs`
sets. Its attention is grouped-query with num_attention_heads // n_heads_in_group key/value heads, or one d x d
matrix (`replace_with_linear`: mixer 'projection', layers/projection.py), or nothing (`no_op`: mixer 'none', the
layer is its FFN alone); its SwiGLU FFN is ffn_mult wide, int(2 ffn_mult d / 3) rounded up to a multiple of 256
(the remote code's _ffn_mult_to_intermediate_size), or nothing (`no_op`: ffn 'none'). In llmarch that is a
configuration: one layer type per kind of layer, named after what it holds (`kv8.ffn5376`, `linear.ffn2560`,
`none.ffn512`), its layer_overrides the fields that differ from the model's (mixer, n_kv_heads, ffn, ffn_hidden).
A layer with neither (Ultra-253B's) is an empty block, the identity. Tensors are LLaMA's; a projection's is
`self_attn.linear_attn`. Refused in one line: the remote code's sliding windows, sink tokens and sparsity, linear FFNs,
biases."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule

RULES = [*LLAMA_RULES, Rule.of("model.layers.{i}.self_attn.linear_attn.weight", "blocks.{i}.mixer.proj.weight")]
_MULTIPLE = 256  # the FFN widths ffn_mult gives are multiples of this
_UNSUPPORTED = (("attention", "window_length"), ("attention", "num_sink_tokens"), ("attention", "sparsify"),
                ("attention", "unshifted_sink"), ("attention", "use_prefill_window_in_sink_attention"),
                ("ffn", "sparsify"), ("ffn", "replace_with_linear"))


def ffn_width(ffn_mult: float, d: int) -> int:
    """The remote code's _ffn_mult_to_intermediate_size: 2/3 of ffn_mult x d (SwiGLU's usual shrink of a 4d MLP,
    Shazeer 2020), rounded up to a multiple of 256."""
    width = int(2 * ffn_mult * d / 3)
    return -(-width // _MULTIPLE) * _MULTIPLE


def _layer(block: dict, heads: int, d: int, i: int) -> tuple[str, int | None, int | None]:
    """One block_configs entry as (its mixer, its key/value heads, its FFN width; None where it has none)."""
    attn, ffn = block.get("attention") or {}, block.get("ffn") or {}
    for part, key in _UNSUPPORTED:
        if (attn if part == "attention" else ffn).get(key):
            raise LlmarchError(f"nemotron-nas: block_configs[{i}].{part}.{key} is not supported")
    width = None if ffn.get("no_op") or ffn.get("ffn_mult") is None else ffn_width(ffn["ffn_mult"], d)
    if attn.get("no_op"):  # with no FFN either, the identity (Ultra-253B's empty layers)
        return "none", None, width
    if attn.get("replace_with_linear"):
        return "projection", None, width
    group = attn.get("n_heads_in_group")
    if not group or heads % group:
        raise LlmarchError(f"nemotron-nas: block_configs[{i}].attention.n_heads_in_group {group!r} does not divide "
                           f"{heads} heads")
    return "attention", heads // group, width


def _type_name(mixer: str, kv: int | None, width: int | None) -> str:
    kind = f"kv{kv}" if mixer == "attention" else {"projection": "linear", "none": "none"}[mixer]
    return f"{kind}.{'none' if width is None else f'ffn{width}'}"


def to_config(hf: dict) -> ModelConfig:
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise LlmarchError("nemotron-nas: attention_bias and mlp_bias are not supported")
    d, heads, n = hf["hidden_size"], hf["num_attention_heads"], hf["num_hidden_layers"]
    blocks = hf["block_configs"]
    if len(blocks) != n:
        raise LlmarchError(f"nemotron-nas: {len(blocks)} block_configs for {n} layers")
    layers = [_layer(b, heads, d, i) for i, b in enumerate(blocks)]
    kv = next((k for _, k, _ in layers if k is not None), heads)  # the model's: its first attention layer's
    width = next((w for _, _, w in layers if w is not None), _MULTIPLE)
    overrides = {}
    for mixer, k, w in layers:
        fields = {"mixer": mixer} if mixer != "attention" else {}
        fields.update({"n_kv_heads": k} if k not in (None, kv) else {})
        fields.update({"ffn": "none"} if w is None else {"ffn_hidden": w} if w != width else {})
        overrides[_type_name(mixer, k, w)] = fields
    types = [_type_name(*layer) for layer in layers]
    uniform = len(set(types)) == 1 and not overrides[types[0]]
    return llama_like_config({**hf, "num_key_value_heads": kv, "intermediate_size": width, "head_dim": d // heads},
                             layer_types=None if uniform else types,
                             layer_overrides={t: f for t, f in overrides.items() if f} or None)


def _block(cfg: ModelConfig, i: int) -> dict:
    layer, mixer = cfg.for_layer(i), cfg.layer_mixer(i)
    attention = {"no_op": mixer == "none", "replace_with_linear": mixer == "projection",
                 "n_heads_in_group": cfg.n_heads // layer.n_kv_heads if mixer == "attention" else None}
    none = layer.ffn == "none"
    # the ffn_mult that gives this width: ffn_width() rounds it back up to the width itself
    ffn = {"no_op": none, "replace_with_linear": False,
           "ffn_mult": None if none else layer.ffn_hidden * 3 / (2 * cfg.d_model)}
    return {"attention": attention, "ffn": ffn}


def from_config(cfg: ModelConfig) -> dict:
    hf = llama_like_hf(cfg, architectures=["DeciLMForCausalLM"],
                       block_configs=[_block(cfg, i) for i in range(cfg.n_layers)])
    for derived in ("num_key_value_heads", "intermediate_size", "head_dim"):  # block_configs and d / heads give them
        del hf[derived]
    return refuse_unless_read_back(cfg, hf, to_config)


FAMILIES.register("nemotron-nas")(Family(RULES, to_config, from_config, IGNORE))
