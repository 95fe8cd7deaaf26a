"""BLT (`model_type: blt`; Meta's Byte Latent Transformer, Pagnoni et al. 2024; transformers' BltForCausalLM): four
stacks of LLaMA blocks (entropy model, local encoder, global transformer, local decoder) with RoPE turning adjacent
dims (2j, 2j + 1), read as ours with q and k rows reordered per stack (layout "rope_pairs" at each stack's head_dim:
the joins blt_qkv_<stack>). The config's top level describes the local decoder; patch_stacks the other three
(models/byte_latent.py). Supported: entropy patching in the forward (patch_in_forward, patching_mode entropy, no
max_patch_length), cross-attention after the local encoder's last layer only and before each local decoder layer
(the released checkpoints'), one key/value head per head in the local stacks, SiLU and default RoPE."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from ..models.byte_latent import part_config
from .hf import FAMILIES, Family
from .mapping import JOINS, LAYOUTS, Rule

# our stack -> (its name in transformers' BltModel, its own config's key in config.json)
STACKS = {"patcher": ("patcher", "patcher_config"), "encoder": ("local_encoder", "encoder_config"),
          "global": ("global_transformer", "global_config"), "decoder": ("local_decoder", "decoder_config")}
_OURS = {"patcher": "patcher.", "encoder": "encoder.", "global": "global_stack."}


def _join_qkv(part: str):
    def join(parts: list[torch.Tensor], cfg) -> torch.Tensor:
        pc, (q, k, v) = part_config(cfg, part), parts
        return torch.cat([LAYOUTS["rope_pairs"][0](q, pc), LAYOUTS["rope_pairs"][0](k, pc), v])

    def split(t: torch.Tensor, cfg) -> list[torch.Tensor]:
        pc = part_config(cfg, part)
        q, k, v = t.split([pc.n_heads * pc.head_dim, pc.n_kv_heads * pc.head_dim, pc.n_kv_heads * pc.head_dim])
        return [LAYOUTS["rope_pairs"][1](q, pc), LAYOUTS["rope_pairs"][1](k, pc), v]
    return join, split


for _part in STACKS:
    JOINS[f"blt_qkv_{_part}"] = _join_qkv(_part)


def _block_rules(hf: str, ours: str, part: str) -> list[Rule]:
    return [Rule.of(tuple(f"{hf}self_attn.{p}_proj.weight" for p in "qkv"), ours + "attn.qkv_proj.weight",
                    f"blt_qkv_{part}"),
            Rule.of(hf + "self_attn.o_proj.weight", ours + "attn.o_proj.weight"),
            Rule.of((hf + "mlp.gate_proj.weight", hf + "mlp.up_proj.weight"), ours + "mlp.gate_up.weight"),
            Rule.of(hf + "mlp.down_proj.weight", ours + "mlp.down.weight"),
            Rule.of(hf + "input_layernorm.weight", ours + "ln1.weight"),
            Rule.of(hf + "post_attention_layernorm.weight", ours + "ln2.weight")]


def _cross_rules(hf: str, ours: str) -> list[Rule]:
    return [Rule.of(hf + f"{p}.weight", ours + f"{p}.weight")
            for p in ("q_norm", "k_norm", "q_proj", "k_proj", "v_proj", "o_proj")]


def more_rules(cfg: ModelConfig) -> list[Rule]:
    """Every tensor by name: the stacks differ in depth, which one {i} cannot count."""
    rules = []
    for part, prefix in _OURS.items():
        n = cfg.patch_stacks[part].get("n_layers", cfg.n_layers)
        rules += [r for i in range(n) for r in _block_rules(f"model.{STACKS[part][0]}.layers.{i}.",
                                                            f"{prefix}blocks.{i}.", part)]
    for i in range(cfg.n_layers):
        rules += _block_rules(f"model.local_decoder.layers.{i}.", f"decoder_layers.{i}.blocks.0.", "decoder")
        rules += _cross_rules(f"model.local_decoder.cross_attn_layers.{i}.", f"decoder_cross.{i}.")
    if cfg.patch_cross_k * cfg.d_model != cfg.patch_stacks["global"].get("d_model", cfg.d_model):
        rules.append(Rule.of("model.global_transformer.token_embedding_projection.weight", "global_in.weight"))
    return rules


RULES = [
    Rule.of("model.patcher.embed_tokens.weight", "patcher_embed.weight"),
    Rule.of("model.patcher.norm.weight", "patcher.ln_final.weight"),
    Rule.of("model.patcher.lm_head.weight", "patcher_head.weight"),
    Rule.of("model.local_encoder.embed_tokens.weight", "embed.weight"),
    Rule.of("model.encoder_hash_tok_embedding.weight", "hash_embed.weight"),
    Rule.of("model.local_encoder.patch_embedding_projection.weight", "encoder_patches.weight"),
    *_cross_rules("model.local_encoder.cross_attn_layers.0.", "encoder_cross."),
    Rule.of("model.local_decoder.patch_embedding_projection.weight", "decoder_patches.weight"),
    Rule.of("model.local_decoder.norm.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
IGNORE = (r"rotary_emb\.(original_)?inv_freq$",)


# transformers' defaults of each stack's config class (hidden size, layers, heads, FFN width (None: 8/3 of the
# width), context, RoPE base), for a config.json that leaves them out
DEFAULTS = {"patcher": (768, 14, 12, 2048, 8192, 10000.0), "encoder": (1024, 1, 16, None, 24576, 500000.0),
            "decoder": (1024, 9, 16, 2816, 24576, 500000.0), "global": (2048, 25, 16, 5632, 4096, 500000.0)}


def _sub(hf: dict, part: str) -> dict:
    """A stack's config from config.json over its class's defaults."""
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "max_position_embeddings")
    sub = {**dict(zip(keys, DEFAULTS[part])), "rms_norm_eps": 1e-5,
           **{k: v for k, v in (hf.get(STACKS[part][1]) or {}).items() if v is not None}}
    sub.setdefault("intermediate_size", int(8 * sub["hidden_size"] / 3))
    sub["rope_theta"] = float((sub.get("rope_parameters") or {}).get("rope_theta", DEFAULTS[part][5]))
    return sub


def _stack_fields(sub: dict, window: int | None) -> dict:
    heads = sub["num_attention_heads"]
    params = sub.get("rope_parameters") or {}
    if params.get("rope_type", "default") != "default" or sub.get("hidden_act", "silu") != "silu":
        raise LlmarchError("blt: only SiLU stacks with default RoPE are supported")
    return dict(d_model=sub["hidden_size"], n_layers=sub["num_hidden_layers"], n_heads=heads,
                n_kv_heads=sub.get("num_key_value_heads") or heads, head_dim=sub["hidden_size"] // heads,
                ffn_hidden=sub["intermediate_size"], norm_eps=sub["rms_norm_eps"], rope_theta=sub["rope_theta"],
                context_length=sub["max_position_embeddings"], sliding_window=window,
                attention="full" if window is None else "sliding_window")


def _refuse(hf: dict) -> None:
    enc, dec = _sub(hf, "encoder"), _sub(hf, "decoder")
    k = hf.get("cross_attn_k", 2)
    problems = [
        (not hf.get("patch_in_forward", True) or hf.get("patching_mode", "entropy") != "entropy"
         or hf.get("patch_size", 4) is None, "entropy patching in the forward (patch_in_forward, patching_mode "
         "entropy, a patch_size)"),
        (hf.get("max_patch_length") is not None, "no max_patch_length"),
        (enc.get("cross_attn_all_layers") or not dec.get("cross_attn_all_layers", True),
         "cross-attention after the local encoder's last layer only and before every local decoder layer"),
        (any(c.get("num_key_value_heads") not in (None, c["num_attention_heads"]) for c in (enc, dec)),
         "as many key/value heads as heads in the local encoder and decoder"),
        (enc["hidden_size"] != dec["hidden_size"], "a local encoder as wide as the local decoder"),
        (enc.get("cross_attn_k", k) != k or dec.get("cross_attn_k", k) != k, "one cross_attn_k for every part"),
        (dec.get("hidden_size_global", 2048) != _sub(hf, "global")["hidden_size"],
         "the local decoder's hidden_size_global equal to the global transformer's width"),
        (hf.get("tie_word_embeddings"), "an untied LM head"),
    ]
    for bad, need in problems:
        if bad:
            raise LlmarchError(f"blt: this checkpoint is not supported; llmarch reads BLT with {need}")


def to_config(hf: dict) -> ModelConfig:
    _refuse(hf)
    window = hf.get("local_attention_window_len", 512)
    dec = _stack_fields(_sub(hf, "decoder"), window)
    patcher = _sub(hf, "patcher")
    patcher_window = (hf.get("patcher_config") or {}).get("sliding_window", 512)  # None: no window
    stacks = {"patcher": _stack_fields(patcher, patcher_window),
              "encoder": _stack_fields(_sub(hf, "encoder"), window), "global": _stack_fields(_sub(hf, "global"), None)}
    return ModelConfig(name=hf.get("_name_or_path") or "blt", hf_model_type="blt", vocab_size=hf["vocab_size"],
                       ffn="swiglu", norm="rmsnorm", positions="rope", bias=False, qkv_bias=False, norm_bias=False,
                       tie_embeddings=False, patch_stacks={p: {k: v for k, v in f.items() if dec.get(k) != v}
                                                          for p, f in stacks.items()},
                       patch_threshold=float(hf.get("patching_threshold", 1.335442066192627)),
                       patch_cross_k=hf.get("cross_attn_k", 2),
                       hash_ngram_sizes=list(hf.get("encoder_hash_byte_group_size") or [3, 4, 5, 6, 7, 8]),
                       hash_ngram_vocab=hf.get("encoder_hash_byte_group_vocab", 500002),
                       hash_ngram_functions=hf.get("encoder_hash_byte_group_nb_functions", 1), **dec)


def _stack_hf(pc: ModelConfig, **extra) -> dict:
    return dict(hidden_size=pc.d_model, num_hidden_layers=pc.n_layers, num_attention_heads=pc.n_heads,
                num_key_value_heads=pc.n_kv_heads, intermediate_size=pc.ffn_hidden, rms_norm_eps=pc.norm_eps,
                rope_parameters={"rope_type": "default", "rope_theta": pc.rope_theta},
                max_position_embeddings=pc.context_length, **extra)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.patch_stacks is None:
        raise LlmarchError("model_type blt needs a byte-latent model (patch_stacks)")
    pc, ec, gc = (part_config(cfg, p) for p in ("patcher", "encoder", "global"))
    window = cfg.sliding_window
    if ec.sliding_window != window:
        raise LlmarchError("model_type blt needs one attention window for the local encoder and decoder")
    k, g = cfg.patch_cross_k, gc.d_model
    return dict(model_type="blt", architectures=["BltForCausalLM"], vocab_size=cfg.vocab_size,
                patch_in_forward=True, patching_mode="entropy", patch_size=4, patching_threshold=cfg.patch_threshold,
                max_patch_length=None, local_attention_window_len=window, cross_attn_k=k,
                encoder_hash_byte_group_size=list(cfg.hash_ngram_sizes),
                encoder_hash_byte_group_vocab=cfg.hash_ngram_vocab,
                encoder_hash_byte_group_nb_functions=cfg.hash_ngram_functions, tie_word_embeddings=False,
                patcher_config=_stack_hf(pc, vocab_size=cfg.vocab_size, sliding_window=pc.sliding_window),
                encoder_config=_stack_hf(ec, vocab_size=cfg.vocab_size, cross_attn_k=k, hidden_size_global=g,
                                         cross_attn_all_layers=False),
                decoder_config=_stack_hf(cfg, vocab_size=cfg.vocab_size, cross_attn_k=k, hidden_size_global=g,
                                         cross_attn_all_layers=True),
                global_config=_stack_hf(gc))


def _needs(cfg: ModelConfig) -> str | None:
    if cfg.patch_stacks is None:
        return "a byte-latent model (patch_stacks)"
    return None


FAMILIES.register("blt")(Family(RULES, to_config, from_config, IGNORE, needs=_needs, more_rules=more_rules))
