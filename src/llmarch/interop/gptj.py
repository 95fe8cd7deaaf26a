"""GPT-J (`model_type: gptj`; Wang & Komatsuzaki 2021, GPT-J-6B; also CodeGen's layout): one LayerNorm feeding
attention and the MLP in parallel (x + attn(ln_1 x) + mlp(ln_1 x): block 'parallel', shared_norm), RoPE on the
first rotary_dim dims of each head in adjacent pairs (rotate_every_two: the q and k rows reordered, rope_pairs),
q, k, v and the output projection without biases (o_bias False), a tanh-GELU MLP with biases, and an untied LM
head with a bias."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import read_activation, require_hf_activation
from .hf import FAMILIES, Family
from .mapping import ROPE_PAIRS_QKV, Rule

_L = "transformer.h.{i}."
RULES = [
    Rule.of("transformer.wte.weight", "embed.weight"),
    Rule(tuple(_L + f"attn.{p}_proj.weight" for p in "qkv"), "blocks.{i}.attn.qkv_proj.weight", ROPE_PAIRS_QKV),
    Rule.of(_L + "attn.out_proj.weight", "blocks.{i}.attn.o_proj.weight"),
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in (
        ("ln_1", "ln1"), ("mlp.fc_in", "mlp.up"), ("mlp.fc_out", "mlp.down")) for w in ("weight", "bias")],
    Rule.of("transformer.ln_f.weight", "ln_final.weight"),
    Rule.of("transformer.ln_f.bias", "ln_final.bias"),
    Rule.of("lm_head.weight", "lm_head.weight"),
    Rule.of("lm_head.bias", "lm_head.bias"),
]


def to_config(hf: dict) -> ModelConfig:
    d, heads = hf["n_embd"], hf["n_head"]
    rotary = hf.get("rotary_dim") or d // heads  # None: every dim rotated
    return ModelConfig(
        name=hf.get("_name_or_path") or "gptj", hf_model_type="gptj", vocab_size=hf["vocab_size"], d_model=d,
        n_layers=hf["n_layer"], n_heads=heads, ffn=read_activation(hf, "gptj", "activation_function", "gelu_new"),
        ffn_hidden=hf.get("n_inner") or 4 * d,
        norm="layernorm", norm_eps=hf.get("layer_norm_epsilon", 1e-5), block="parallel", shared_norm=True,
        positions="rope", rope_fraction=rotary / (d // heads), bias=True, qkv_bias=False, o_bias=False,
        head_bias=True, tie_embeddings=hf.get("tie_word_embeddings", False), type_ids_from_tokens=True,
        context_length=hf.get("n_positions", 2048))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.block != "parallel" or not cfg.shared_norm or cfg.positions != "rope" or cfg.norm != "layernorm" \
            or cfg.qkv_bias or cfg.o_bias or not cfg.bias or not cfg.head_bias or cfg.n_kv_heads != cfg.n_heads:
        raise LlmarchError("model_type gptj has one LayerNorm before parallel attention and MLP, RoPE, no q, k, v or "
                           "output-projection biases, an MLP and an LM head with biases, and as many key heads as "
                           "query heads")
    act = require_hf_activation(cfg.ffn, "gptj")
    return dict(model_type="gptj", architectures=["GPTJForCausalLM"], vocab_size=cfg.vocab_size,
                n_positions=cfg.context_length, n_embd=cfg.d_model, n_layer=cfg.n_layers, n_head=cfg.n_heads,
                rotary_dim=round(cfg.rope_fraction * cfg.head_dim), n_inner=cfg.ffn_hidden, activation_function=act,
                layer_norm_epsilon=cfg.norm_eps, tie_word_embeddings=cfg.tie_embeddings)


FAMILIES.register("gptj")(Family(RULES, to_config, from_config, ignore=(r"\.attn\.(masked_)?bias$",
                                                                       r"\.attn\.embed_positions$")))
