"""Zyphra's Zamba2 (`model_type: zamba2`, transformers' Zamba2ForCausalLM; Zamba2-1.2B, 2.7B, 7B): a Mamba-2 backbone
in which the `hybrid` layers of `layers_block_type` first run one of `num_mem_blocks` shared transformer blocks on
[x; embeddings] and add its output, through the layer's own `linear`, to the input of their Mamba-2 (Glorioso et
al. 2024; layers/shared_block.py). In llmarch: layer types `mamba` (mixer mamba2) and `hybrid` (mixer shared_block
over mamba2), no FFN in any block; the shared blocks' attention and GeGLU FFN from the config's fields (2d-wide
input, head_dim 2d / heads, scores scaled by (head_dim / 2)^-1/2, RoPE where `use_mem_rope`), their per-layer
adapters (`adapter_rank`; the FFN's gate_up always, q, k, v where `use_shared_attention_adapter`).

transformers keeps shared block k's tensors, and the adapters of every hybrid layer j that uses it (j counting
hybrid layers, k = j mod num_mem_blocks), under the first hybrid layer that uses block k
(`model.layers.{first}.shared_transformer.*`, adapter lists indexed by j); later layers' copies, where a
checkpoint stores them, are the same tensors and are not read. Mamba-2 as transformers' Zamba2 computes it: the
gated norm after the gate with epsilon 1e-5 (so rms_norm_eps must be 1e-5), a convolution bias always, dt clamped
below at time_step_min (`ssm_dt_floor`; transformers clamps only in its chunked scan, not in its one-token step:
llmarch clamps both, so cached decoding equals the whole forward)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers.ffn import FFN_ACTIVATION
from .activations import HF_GATED_ACTIVATIONS, PYTORCH_TANH, hf_activation, read_activation
from .hf import FAMILIES, Family
from .llama import rope_fields, rope_parameters
from .mamba import MAMBA2_TENSORS
from .mapping import Rule

MAMBA, HYBRID = "mamba", "hybrid"
_HF_TYPES = {"mamba": MAMBA, "linear_attention": MAMBA, "hybrid": HYBRID}
_W = ("weight", "bias")
RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    Rule.of("model.final_layernorm.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
IGNORE = (r"\.shared_transformer\.",)  # a later hybrid layer's copy of its shared block (the first one is read)


def hybrid_layers(cfg: ModelConfig) -> list[int]:
    return [i for i in range(cfg.n_layers) if cfg.layer_mixer(i) == "shared_block"]


def _shared_rules(cfg: ModelConfig) -> list[Rule]:
    """Each layer's tensors, by its type, and each shared block's under the first layer that uses it."""
    hybrid, out = hybrid_layers(cfg), []
    for i in range(cfg.n_layers):
        L, B = f"model.layers.{i}.", f"blocks.{i}."
        if i not in hybrid:
            out += [Rule.of(L + "input_layernorm.weight", B + "ln1.weight"),
                    *[Rule.of(L + "mamba." + t, B + "mixer." + t) for t in MAMBA2_TENSORS]]
            continue
        j = hybrid.index(i)
        owner = f"model.layers.{hybrid[j % cfg.shared_blocks]}.shared_transformer."
        out += [Rule.of(L + "mamba_decoder.input_layernorm.weight", B + "ln1.weight"),
                *[Rule.of(L + "mamba_decoder.mamba." + t, B + "mixer.mamba2." + t) for t in MAMBA2_TENSORS],
                Rule.of(L + "linear.weight", B + "mixer.proj.weight")]
        adapters = [(owner + f"self_attn.linear_{p}_adapter_list.{j}.", p) for p in "qkv"]
        adapters.append((owner + f"feed_forward.gate_up_proj_adapter_list.{j}.", "gate_up"))
        out += [Rule.of(hf + f"{n}.weight", B + f"mixer.adapters.{p}.{part}.weight")
                for hf, p in adapters for n, part in ((0, "down"), (1, "up"))]
    for k in range(min(cfg.shared_blocks, len(hybrid))):
        S, O = f"model.layers.{hybrid[k]}.shared_transformer.", f"shared_blocks.{k}."
        out += [Rule.of(S + "input_layernorm.weight", O + "ln_in.weight"),
                Rule.of(tuple(S + f"self_attn.{p}_proj.weight" for p in "qkv"), O + "attn.qkv_proj.weight"),
                Rule.of(S + "self_attn.o_proj.weight", O + "attn.o_proj.weight"),
                Rule.of(S + "pre_ff_layernorm.weight", O + "ln_mlp.weight"),
                *[Rule.of(S + f"feed_forward.gate_up_proj.{w}", O + f"mlp.gate_up.{w}") for w in _W],
                *[Rule.of(S + f"feed_forward.down_proj.{w}", O + f"mlp.down.{w}") for w in _W]]
    return out


def layer_types(hf: dict) -> list[str]:
    """Our layer types (mamba, hybrid) from layers_block_type (Zamba and Zamba2 alike)."""
    types = hf.get("layers_block_type") or hf.get("layer_types")
    if types is None:
        raise LlmarchError(f"{hf['model_type']}: config.json lacks layers_block_type")
    unknown = sorted({str(t) for t in types} - set(_HF_TYPES))
    if unknown:
        raise LlmarchError(f"{hf['model_type']}: unknown layer type {unknown[0]!r} (mamba or linear_attention, "
                           "hybrid)")
    return [_HF_TYPES[t] for t in types]


def _refuse(hf: dict) -> None:
    """What transformers' Zamba2 computes otherwise than llmarch would."""
    if not hf.get("tie_word_embeddings", True):
        raise LlmarchError("zamba2: tie_word_embeddings=False, with which transformers unties the shared blocks too "
                           "(each hybrid layer its own copy): not supported")
    if hf.get("use_long_context"):
        raise LlmarchError("zamba2: use_long_context is not supported")
    if float(hf.get("rms_norm_eps", 1e-5)) != 1e-5:
        raise LlmarchError("zamba2: rms_norm_eps other than 1e-5 is not supported (Mamba-2's gated norm keeps 1e-5)")
    heads, kv = hf.get("num_attention_heads", 32), hf.get("num_key_value_heads") or hf.get("num_attention_heads", 32)
    if hf.get("use_shared_attention_adapter") and kv != heads:
        raise LlmarchError("zamba2: use_shared_attention_adapter with num_key_value_heads != num_attention_heads "
                           "(transformers' k and v adapters are as wide as the queries)")
    if (2 * hf["hidden_size"]) % heads or (int(hf.get("mamba_expand", 2)) * hf["hidden_size"]) % hf.get(
            "n_mamba_heads", 8):
        raise LlmarchError("zamba2: 2 * hidden_size must split into num_attention_heads and mamba_expand * "
                           "hidden_size into n_mamba_heads")


def to_config(hf: dict) -> ModelConfig:
    _refuse(hf)
    types = layer_types(hf)
    d, heads = hf["hidden_size"], hf.get("num_attention_heads", 32)
    head_dim = 2 * d // heads
    rope = rope_fields(hf) if hf.get("use_mem_rope") else {}
    expand, eos = int(hf.get("mamba_expand", 2)), hf.get("eos_token_id", 2)
    bias = bool(hf.get("add_bias_linear", False))
    adapters = ["qkv", "gate_up"] if hf.get("use_shared_attention_adapter") else ["gate_up"]
    return ModelConfig(
        name=hf.get("_name_or_path") or "zamba2", hf_model_type="zamba2", vocab_size=hf["vocab_size"], d_model=d,
        n_layers=len(types), n_heads=heads, n_kv_heads=hf.get("num_key_value_heads") or heads, head_dim=head_dim,
        attn_scale=(head_dim / 2) ** -0.5,
        ffn=read_activation(hf, "zamba2", "hidden_act", "gelu", HF_GATED_ACTIVATIONS),
        ffn_hidden=hf.get("intermediate_size") or 4 * d, norm="rmsnorm", norm_eps=1e-5,
        positions="rope" if hf.get("use_mem_rope") else "none", **rope, bias=bias, qkv_bias=False, o_bias=False,
        tie_embeddings=True, context_length=hf.get("max_position_embeddings", 4096),
        eos_id=eos if isinstance(eos, int) else None, mixer="mamba2", ssm_state=hf.get("mamba_d_state", 64),
        ssm_conv=hf.get("mamba_d_conv", 4), ssm_expand=expand, ssm_head_dim=expand * d // hf.get("n_mamba_heads", 8),
        ssm_groups=hf.get("mamba_ngroups", 1), ssm_chunk=hf.get("chunk_size", 256), ssm_bias=bias,
        ssm_conv_bias=True, ssm_dt_floor=float(hf.get("time_step_min", 0.001)),
        shared_blocks=hf.get("num_mem_blocks", 1), shared_block_mixer="mamba2", shared_adapters=adapters,
        shared_adapter_rank=hf.get("adapter_rank", 128), layer_types=types,
        layer_overrides={MAMBA: {"ffn": "none"}, HYBRID: {"mixer": "shared_block", "ffn": "none"}})


def _unexpressible(cfg: ModelConfig) -> str | None:
    """What of a config Zamba2's layout cannot hold (Family.needs)."""
    if cfg.layer_types is None or set(cfg.layer_types) - {MAMBA, HYBRID} or cfg.layer_overrides != {
            MAMBA: {"ffn": "none"}, HYBRID: {"mixer": "shared_block", "ffn": "none"}} or cfg.mixer != "mamba2":
        return "layer types mamba (mixer mamba2) and hybrid (mixer shared_block), with no FFN in any block"
    adapters = sorted(cfg.shared_adapters or [])
    if adapters not in (["gate_up"], ["gate_up", "qkv"]) or ("qkv" in adapters and cfg.n_kv_heads != cfg.n_heads):
        return "shared_adapters ['gate_up'] or ['qkv', 'gate_up'] (the latter with as many KV heads as heads)"
    want = dict(tie_embeddings=True, shared_block_mixer="mamba2", head_dim=2 * cfg.d_model // cfg.n_heads,
                attn_scale=(cfg.head_dim / 2) ** -0.5, norm="rmsnorm", norm_eps=1e-5, qkv_bias=False, o_bias=False,
                ssm_bias=cfg.bias, ssm_conv_bias=True, ssm_norm="gated", ssm_inner=None, ssm_proj_multipliers=None)
    bad = next((k for k, v in want.items() if getattr(cfg, k) != v), None)
    if bad is not None or cfg.ffn not in HF_GATED_ACTIVATIONS.values() or cfg.positions not in ("rope", "none"):
        return f"{bad or 'ffn or positions'} as transformers' Zamba2 computes it"
    return None


def from_config(cfg: ModelConfig) -> dict:
    out = dict(
        architectures=["Zamba2ForCausalLM"], model_type="zamba2", vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, layers_block_type=[
            "hybrid" if t == HYBRID else "mamba" for t in cfg.layer_types], num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads, intermediate_size=cfg.ffn_hidden,
        hidden_act=hf_activation(FFN_ACTIVATION[cfg.ffn], PYTORCH_TANH),
        rms_norm_eps=cfg.norm_eps, max_position_embeddings=cfg.context_length, tie_word_embeddings=True,
        mamba_d_state=cfg.ssm_state, mamba_d_conv=cfg.ssm_conv, mamba_expand=cfg.ssm_expand,
        n_mamba_heads=cfg.ssm_expand * cfg.d_model // cfg.ssm_head_dim, mamba_ngroups=cfg.ssm_groups,
        chunk_size=cfg.ssm_chunk, add_bias_linear=cfg.bias, time_step_min=cfg.ssm_dt_floor,
        num_mem_blocks=cfg.shared_blocks, adapter_rank=cfg.shared_adapter_rank,
        use_shared_attention_adapter="qkv" in cfg.shared_adapters, use_mem_rope=cfg.positions == "rope")
    if cfg.positions == "rope":
        out["rope_parameters"] = rope_parameters(cfg)
    if cfg.eos_id is not None:
        out["eos_token_id"] = cfg.eos_id
    return out


FAMILIES.register("zamba2")(Family(RULES, to_config, from_config, IGNORE, needs=_unexpressible,
                                   more_rules=_shared_rules))
