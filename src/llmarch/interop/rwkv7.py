"""RWKV-7 (`model_type: rwkv7`; BlinkDL's RWKV-7 "Goose" models, Peng et al. 2025): transformers has no RWKV-7, so
this table is the layout llama.cpp's converter (convert_hf_to_gguf.py, Rwkv7Model) reads without renaming, and its
GGUF file is what llmarch's parity is checked against (gguf_archs/rwkv7.py, llama.cpp's rwkv7 graph). Each layer is
two llmarch blocks, as RWKV-4's (interop/rwkv.py): `time_mix` (mixer "rwkv7", HF's `attention.*`, normed by `ln1`)
and `channel_mix` (mixer "rwkv7_channel", HF's `feed_forward.*`, normed by `ln2`), both with ffn 'none'; LayerNorms
with biases, `model.layers.0.pre_norm` over the embeddings (embed_norm), `model.ln_out`, no positions.

Names: `model.layers.{j}.attention.<p>.weight` for every parameter p, as the converter's name map has them; the six
token-shift lerps as one tensor `attention.x_x` (rows r, w, k, v, a, g: the converter's "already concatenated" form);
the LoRA matrices w1 w2, a1 a2, v1 v2, g1 g2 as RWKV-LM stores them, (in, out) (the converter transposes them);
1-D tensors of d_model (r_k flattened over heads x head_dim). Layer 0 has no v0 v1 v2 (its values are v_first).
Config: hidden_size, head_size, intermediate_size, layer_norm_epsilon and the LoRA ranks lora_rank_decay,
lora_rank_iclr, lora_rank_value_residual_mix, lora_rank_gate (or flash-linear-attention's head_dim, norm_eps and
*_low_rank_dim names, which the converter reads too). The group norm's epsilon is RWKV-LM's and llama.cpp's 64e-5
(flash-linear-attention's head_dim x norm_eps is the same at heads of 64): another is refused."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers.rwkv7 import lora_rank, ranks
from ..presets import rwkv7_layers
from .hf import FAMILIES, Family
from .mapping import Rule
from .rwkv import paired_block_rules

_W = ("weight", "bias")
_LORAS = ("w1", "w2", "a1", "a2", "v1", "v2", "g1", "g2")
_TIME = ("x_x", "w0", "a0", "v0", "k_k", "k_a", "r_k")
_LINEAR = ("receptance", "key", "value", "output")
RULES = [
    Rule.of("model.embeddings.weight", "embed.weight"),
    *[Rule.of(f"model.layers.0.pre_norm.{w}", f"embed_norm.{w}") for w in _W],
    *[Rule.of(f"model.ln_out.{w}", f"ln_final.{w}") for w in _W],
    Rule.of("lm_head.weight", "lm_head.weight"),
]
GROUP_NORM_EPS = 64e-5
# (config.json name, flash-linear-attention's name, exponent, multiplier) of each LoRA rank, in ranks() order
_RANKS = (("lora_rank_decay", "decay_low_rank_dim", 0.5, 1.8), ("lora_rank_iclr", "a_low_rank_dim", 0.5, 1.8),
          ("lora_rank_value_residual_mix", "v_low_rank_dim", 0.5, 1.3),
          ("lora_rank_gate", "gate_low_rank_dim", 0.8, 0.6))
_FIELDS = ("rwkv7_decay_rank", "rwkv7_iclr_rank", "rwkv7_value_rank", "rwkv7_gate_rank")


def time_rules(hf: str, ours: str, j: int) -> list[Rule]:
    """HF layer j's time mixing (`{hf}attention.*`) as our mixer `{ours}mixer.*`: layer 0 without the value
    residual's v0 v1 v2. Rules for what a model lacks (ARWKV's missing gate or group norm) are skipped."""
    rules = [Rule.of(hf + f"attention.ln_x.{w}", ours + f"mixer.ln_x.{w}") for w in _W]
    rules += [Rule.of(hf + f"attention.{p}.weight", ours + f"mixer.{p}") for p in _TIME if j or p != "v0"]
    rules += [Rule.of(hf + f"attention.{p}.weight", ours + f"mixer.{p}.weight", "transposed")
              for p in _LORAS if j or p[0] != "v"]
    return rules + [Rule.of(hf + f"attention.{p}.weight", ours + f"mixer.{p}.weight") for p in _LINEAR]


def block_rules(cfg: ModelConfig) -> list[Rule]:
    return paired_block_rules(cfg, "model.layers.", lambda hf, time, chan, j: [
        *time_rules(hf, time, j), Rule.of(hf + "feed_forward.x_k.weight", chan + "mixer.x_k"),
        *[Rule.of(hf + f"feed_forward.{p}.weight", chan + f"mixer.{p}.weight") for p in ("key", "value")]])


def to_config(hf: dict) -> ModelConfig:
    d = hf["hidden_size"]
    head = hf.get("head_size") or hf["head_dim"]
    eps = hf.get("layer_norm_epsilon", hf.get("norm_eps", 1e-5))
    if d % head:
        raise LlmarchError(f"rwkv7: hidden_size {d} is not a multiple of head_size {head}")
    if hf.get("attention_hidden_size") not in (None, d):
        raise LlmarchError(f"rwkv7: attention_hidden_size {hf['attention_hidden_size']} other than hidden_size {d} "
                           "is not supported")
    eos = hf.get("eos_token_id")
    return ModelConfig(
        name=hf.get("_name_or_path") or "rwkv7", hf_model_type="rwkv7", vocab_size=hf["vocab_size"], d_model=d,
        n_heads=d // head, head_dim=head, mixer="rwkv7", ffn="none", ffn_hidden=hf.get("intermediate_size") or 4 * d,
        norm="layernorm", norm_eps=eps, embed_norm=True, positions="none", bias=False,
        tie_embeddings=hf.get("tie_word_embeddings", False), context_length=hf.get("max_position_embeddings", 4096),
        eos_id=eos if isinstance(eos, int) else None, **given_ranks(hf), **rwkv7_layers(hf["num_hidden_layers"]))


def given_ranks(hf: dict) -> dict:
    """The config's LoRA rank fields from config.json's (either naming); None where a rank is RWKV-7's own size."""
    given, d = {}, hf["hidden_size"]
    for field, (name, fla, exponent, multiplier) in zip(_FIELDS, _RANKS):
        r = hf.get(name) or hf.get(fla)
        given[field] = None if r in (None, lora_rank(d, exponent, multiplier)) else r
    return given


def written_ranks(cfg: ModelConfig) -> dict:
    """config.json's LoRA ranks (RWKV-LM's names), each written out, RWKV-7's own sizes too."""
    return {name: r for (name, *_), r in zip(_RANKS, ranks(cfg))}


_NEEDS = dict(ffn="none", norm="layernorm", norm_placement="pre", block="sequential", positions="none",
              embed_norm=True, embed_scale=False, embed_multiplier=1.0, residual_multiplier=1.0, logit_divisor=1.0,
              head_bias=False, final_norm=True, norm_bias=True, final_softcap=None, final_norm_eps=None,
              attn_period=0, rwkv7_group_norm_eps=GROUP_NORM_EPS, rwkv7_gate=True, rwkv7_group_norm=True)


def _unexpressible(cfg: ModelConfig) -> str | None:
    wrong = next((f"{k}={v!r}" for k, v in _NEEDS.items() if getattr(cfg, k) != v), None)
    mixers = [cfg.layer_mixer(i) for i in range(cfg.n_layers)]
    if wrong is None and mixers != ["rwkv7", "rwkv7_channel"] * (cfg.n_layers // 2):
        wrong = "blocks alternating mixers rwkv7 and rwkv7_channel (an even n_layers)"
    if wrong is None and any(cfg.for_layer(i).norm_eps != cfg.norm_eps for i in range(cfg.n_layers)):
        wrong = "one norm_eps in every block"
    return wrong


def from_config(cfg: ModelConfig) -> dict:
    out = dict(architectures=["Rwkv7ForCausalLM"], model_type="rwkv7", vocab_size=cfg.vocab_size,
               hidden_size=cfg.d_model, head_size=cfg.head_dim, intermediate_size=cfg.ffn_hidden,
               num_hidden_layers=cfg.n_layers // 2, layer_norm_epsilon=cfg.norm_eps,
               tie_word_embeddings=cfg.tie_embeddings, max_position_embeddings=cfg.context_length,
               **written_ranks(cfg))
    if cfg.eos_id is not None:
        out["eos_token_id"] = cfg.eos_id
    return out


FAMILIES.register("rwkv7")(Family(RULES, to_config, from_config, needs=_unexpressible, more_rules=block_rules))
