"""RWKV-4 (`model_type: rwkv`, transformers' RwkvForCausalLM; BlinkDL's RWKV-4 Pile and Raven models, Peng et al.
2023): each of its layers is two llmarch blocks, layer types `time_mix` (mixer "rwkv", HF's `attention.*`, normed
by its `ln1`) and `channel_mix` (mixer "rwkv_channel", HF's `feed_forward.*`, normed by its `ln2`), both with
ffn 'none' (layers/rwkv.py); LayerNorms with biases, `blocks.0.pre_ln` over the embeddings (embed_norm), `ln_out`
(whose epsilon is always 1e-5 in transformers: final_norm_eps), no positions, an untied head by default.

`rescale_every`: transformers, in eval mode, halves the residual stream after every rescale_every layers and divides
those layers' output weights to match (an fp16 range guard), exact in floating point except inside the LayerNorms:
llmarch computes the same as per-layer norm epsilons (presets.rwkv_layers: layer types time_mix_k, channel_mix_k with
norm_eps * 4^k) and writes rescale_every back from them. `attention_hidden_size` other than hidden_size is
refused. transformers reads no attention mask here: parity on unpadded batches."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..presets import rwkv_layers
from .hf import FAMILIES, Family
from .mapping import Rule

_TIME = ("time_decay", "time_first", "time_mix_key", "time_mix_value", "time_mix_receptance", "key.weight",
         "value.weight", "receptance.weight", "output.weight")
_CHANNEL = ("time_mix_key", "time_mix_receptance", "key.weight", "receptance.weight", "value.weight")
_W = ("weight", "bias")
RULES = [
    Rule.of("rwkv.embeddings.weight", "embed.weight"),
    *[Rule.of(f"rwkv.blocks.0.pre_ln.{w}", f"embed_norm.{w}") for w in _W],
    *[Rule.of(f"rwkv.ln_out.{w}", f"ln_final.{w}") for w in _W],
    Rule.of("head.weight", "lm_head.weight"),
]
TYPES = {"time_mix": "rwkv", "channel_mix": "rwkv_channel"}


def paired_block_rules(cfg: ModelConfig, layers: str, mixers) -> list[Rule]:
    """HF layer j (under `layers`, "rwkv.blocks.") is our blocks 2j (time mixing, its norm ln1) and 2j + 1 (channel
    mixing, its norm ln2): the two norms' rules, then mixers(hf layer j's prefix, block 2j's, block 2j + 1's, j)."""
    rules = []
    for j in range(cfg.n_layers // 2):
        hf, time, chan = f"{layers}{j}.", f"blocks.{2 * j}.", f"blocks.{2 * j + 1}."
        rules += [Rule.of(hf + f"ln1.{w}", time + f"ln1.{w}") for w in _W]
        rules += [Rule.of(hf + f"ln2.{w}", chan + f"ln1.{w}") for w in _W]
        rules += mixers(hf, time, chan, j)
    return rules


def block_rules(cfg: ModelConfig) -> list[Rule]:
    return paired_block_rules(cfg, "rwkv.blocks.", lambda hf, time, chan, j: [
        *[Rule.of(hf + "attention." + t, time + "mixer." + t) for t in _TIME],
        *[Rule.of(hf + "feed_forward." + t, chan + "mixer." + t) for t in _CHANNEL]])


def to_config(hf: dict) -> ModelConfig:
    d, n = hf["hidden_size"], hf["num_hidden_layers"]
    if hf.get("attention_hidden_size") not in (None, d):
        raise LlmarchError(f"rwkv: attention_hidden_size {hf['attention_hidden_size']} other than hidden_size {d} "
                           "is not supported")
    eos = hf.get("eos_token_id")
    return ModelConfig(
        name=hf.get("_name_or_path") or "rwkv", hf_model_type="rwkv", vocab_size=hf["vocab_size"], d_model=d,
        n_heads=1, mixer="rwkv", ffn="none", ffn_hidden=hf.get("intermediate_size") or 4 * d, norm="layernorm",
        embed_norm=True, positions="none", bias=False, tie_embeddings=hf.get("tie_word_embeddings", False),
        context_length=hf.get("context_length", 1024), eos_id=eos if isinstance(eos, int) else None,
        **rwkv_layers(n, hf.get("layer_norm_epsilon", 1e-5), int(hf.get("rescale_every", 6))))


_NEEDS = dict(mixer="rwkv", attn_period=0, ffn="none", norm="layernorm", norm_placement="pre", block="sequential",
              positions="none", embed_norm=True, embed_scale=False, embed_multiplier=1.0, residual_multiplier=1.0,
              logit_divisor=1.0, head_bias=False, final_norm=True, norm_bias=True, final_softcap=None)


def _unexpressible(cfg: ModelConfig) -> str | None:
    wrong = next((f"{k}={v!r}" for k, v in _NEEDS.items() if getattr(cfg, k) != v), None)
    mixers = [cfg.layer_mixer(i) for i in range(cfg.n_layers)]
    if wrong is None and mixers != list(TYPES.values()) * (cfg.n_layers // 2):
        wrong = "blocks alternating mixers rwkv and rwkv_channel (an even n_layers)"
    if wrong is None and rescale_every(cfg) is None:
        wrong = ("norm epsilons as transformers' rescale_every R makes them: norm_eps * 4^(j // R) in layer j, "
                 "1e-5 * 4^(layers // R) in the final norm")
    return wrong


def rescale_every(cfg: ModelConfig) -> int | None:
    """The rescale_every (0: none) whose epsilons cfg's norms have (presets.rwkv_layers), or None."""
    n = cfg.n_layers // 2
    eps = [cfg.for_layer(i).norm_eps for i in range(cfg.n_layers)] + [cfg.final_norm_eps or cfg.norm_eps]
    for every in range(n + 1):
        want = rwkv_layers(n, cfg.norm_eps, every)
        layers = [want["layer_overrides"].get(t, {}).get("norm_eps", cfg.norm_eps) for t in want["layer_types"]]
        if eps == layers + [want["final_norm_eps"] or cfg.norm_eps]:
            return every
    return None


def from_config(cfg: ModelConfig) -> dict:
    out = dict(architectures=["RwkvForCausalLM"], model_type="rwkv", vocab_size=cfg.vocab_size,
               hidden_size=cfg.d_model, attention_hidden_size=cfg.d_model, intermediate_size=cfg.ffn_hidden,
               num_hidden_layers=cfg.n_layers // 2, layer_norm_epsilon=cfg.norm_eps,
               rescale_every=rescale_every(cfg),
               tie_word_embeddings=cfg.tie_embeddings, context_length=cfg.context_length)
    if cfg.eos_id is not None:
        out["eos_token_id"] = cfg.eos_id
    return out


FAMILIES.register("rwkv")(Family(RULES, to_config, from_config, needs=_unexpressible, more_rules=block_rules))
