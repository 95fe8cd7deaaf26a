"""RWKV-6 "Finch" (`model_type: rwkv6`; the RWKV/v6-Finch-*-HF checkpoints, Rwkv6ForCausalLM, remote code: transformers
has no RWKV-6, so this table is the layout llama.cpp's converter (convert_hf_to_gguf.py, Rwkv6Model) reads, and its
GGUF file is what llmarch's parity is checked against: gguf_archs/rwkv6.py, llama.cpp's rwkv6 graph). Each layer is
two llmarch blocks, as RWKV-4's (interop/rwkv.py): `time_mix` (mixer "rwkv6", HF's `attention.*`, normed by `ln1`)
and `channel_mix` (mixer "rwkv_channel", HF's `feed_forward.*`, normed by `ln2`), both with ffn 'none'; LayerNorms
with biases, `rwkv.blocks.0.pre_ln` over the embeddings (embed_norm), `rwkv.ln_out` (whose epsilon is always 1e-5
in the HF code: final_norm_eps), `head`, no positions.

Names: every time-mixing parameter under its HF name (time_maa_x ... time_maa_g and time_decay (1, 1, d),
time_maa_w1 (d, 5 R), time_maa_w2 (5, R, d), time_decay_w1 (d, R'), time_decay_w2 (R', d), time_faaaa (heads,
head_size), ln_x); the channel mix's time_maa_k and time_maa_r are 1 - RWKV-4's time_mix_key and time_mix_receptance
(layout "complement"). Config: hidden_size, head_size, intermediate_size, layer_norm_epsilon; the LoRA ranks are the
HF code's (32 and 64, or 64 and 128 at hidden_size 4096), or `lora_rank_tokenshift` and `lora_rank_decay` where given
(the converter's names for QRWKV6), written where they differ. head_size_divisor other than 8 (the group norm's eps
1e-5 x 8^2) and attention_hidden_size other than hidden_size are refused. `rescale_every`: the HF code halves the
stream only in fp16 and bf16, so it is read as nothing and written 0. A model read from a GGUF file with
rescale_every_n_layers n > 0 (gguf_archs/rwkv6.py) has norm epsilons growing by 4^(j // n) (interop/rwkv.py's
rescale_every finds n), which this layout cannot hold: it is read, and refused when written."""
from __future__ import annotations

import math

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers.rwkv6 import FINAL_NORM_EPS, default_ranks
from ..presets import rwkv6_layers
from .hf import FAMILIES, Family
from .mapping import Rule
from .rwkv import paired_block_rules, rescale_every

_W = ("weight", "bias")
CHUNK = 16  # the chunked WKV's length: its decays take B H T L D floats (rwkv6-tiny's too)
_TIME = ("time_maa_x", "time_maa_w", "time_maa_k", "time_maa_v", "time_maa_r", "time_maa_g", "time_maa_w1",
         "time_maa_w2", "time_decay", "time_decay_w1", "time_decay_w2", "time_faaaa")
_LINEAR = ("receptance", "key", "value", "gate", "output")
RULES = [
    Rule.of("rwkv.embeddings.weight", "embed.weight"),
    *[Rule.of(f"rwkv.blocks.0.pre_ln.{w}", f"embed_norm.{w}") for w in _W],
    *[Rule.of(f"rwkv.ln_out.{w}", f"ln_final.{w}") for w in _W],
    Rule.of("head.weight", "lm_head.weight"),
]


def time_rules(hf: str, ours: str) -> list[Rule]:
    """HF layer's time mixing (`{hf}attention.*`) as our mixer `{ours}mixer.*`."""
    rules = [Rule.of(hf + f"attention.{p}", ours + f"mixer.{p}") for p in _TIME]
    rules += [Rule.of(hf + f"attention.ln_x.{w}", ours + f"mixer.ln_x.{w}") for w in _W]
    return rules + [Rule.of(hf + f"attention.{p}.weight", ours + f"mixer.{p}.weight") for p in _LINEAR]


def block_rules(cfg: ModelConfig) -> list[Rule]:
    return paired_block_rules(cfg, "rwkv.blocks.", lambda hf, time, chan, j: [
        *time_rules(hf, time),
        Rule.of(hf + "feed_forward.time_maa_k", chan + "mixer.time_mix_key", "complement"),
        Rule.of(hf + "feed_forward.time_maa_r", chan + "mixer.time_mix_receptance", "complement"),
        *[Rule.of(hf + f"feed_forward.{p}.weight", chan + f"mixer.{p}.weight")
          for p in ("key", "receptance", "value")]])


def to_config(hf: dict) -> ModelConfig:
    d, head = hf["hidden_size"], hf["head_size"]
    if d % head:
        raise LlmarchError(f"rwkv6: hidden_size {d} is not a multiple of head_size {head}")
    if hf.get("attention_hidden_size") not in (None, d):
        raise LlmarchError(f"rwkv6: attention_hidden_size {hf['attention_hidden_size']} other than hidden_size {d} "
                           "is not supported")
    if hf.get("head_size_divisor", 8) != 8:
        raise LlmarchError(f"rwkv6: head_size_divisor {hf['head_size_divisor']} is not supported (8: the group "
                           "norm's eps 64e-5, llama.cpp's)")
    eps, (mix, decay) = hf.get("layer_norm_epsilon", 1e-5), default_ranks(d)
    eos = hf.get("eos_token_id")
    return ModelConfig(
        name=hf.get("_name_or_path") or "rwkv6", hf_model_type="rwkv6", vocab_size=hf["vocab_size"], d_model=d,
        n_heads=d // head, head_dim=head, mixer="rwkv6", ffn="none",
        ffn_hidden=hf.get("intermediate_size") or int(d * 3.5) // 32 * 32, norm="layernorm", norm_eps=eps,
        final_norm_eps=None if _is_final(eps) else FINAL_NORM_EPS, embed_norm=True, positions="none",
        bias=False, tie_embeddings=hf.get("tie_word_embeddings", False), ssm_chunk=CHUNK,
        context_length=hf.get("context_length") or hf.get("max_position_embeddings") or 4096,
        eos_id=eos if isinstance(eos, int) else None, rwkv6_mix_rank=hf.get("lora_rank_tokenshift") or mix,
        rwkv6_decay_rank=hf.get("lora_rank_decay") or decay, **rwkv6_layers(hf["num_hidden_layers"]))


def _is_final(eps: float) -> bool:
    """eps is ln_out's 1e-5, up to GGUF's float32."""
    return math.isclose(eps, FINAL_NORM_EPS, rel_tol=1e-6)


_NEEDS = dict(ffn="none", norm="layernorm", norm_placement="pre", block="sequential", positions="none",
              embed_norm=True, embed_scale=False, embed_multiplier=1.0, residual_multiplier=1.0, logit_divisor=1.0,
              head_bias=False, final_norm=True, norm_bias=True, final_softcap=None)


def _unexpressible(cfg: ModelConfig) -> str | None:
    wrong = next((f"{k}={v!r}" for k, v in _NEEDS.items() if getattr(cfg, k) != v), None)
    mixers = [cfg.layer_mixer(i) for i in range(cfg.n_layers)]
    if wrong is None and mixers != ["rwkv6", "rwkv_channel"] * (cfg.n_layers // 2):
        wrong = "blocks alternating mixers rwkv6 and rwkv_channel (an even n_layers)"
    if wrong is None and rescale_every(cfg):  # a rescaled GGUF file's (gguf_archs/rwkv6.py): read, not written
        return None
    if wrong is None and any(cfg.for_layer(i).norm_eps != cfg.norm_eps for i in range(cfg.n_layers)):
        wrong = "one norm_eps in every block"
    if wrong is None and not _is_final(cfg.final_norm_eps or cfg.norm_eps):
        wrong = f"a final norm eps of {FINAL_NORM_EPS} (final_norm_eps; the HF code's ln_out)"
    return wrong


def from_config(cfg: ModelConfig) -> dict:
    if every := rescale_every(cfg):  # eps 4^(j // n) in layer j, 1e-5 4^(layers // n) in the output norm
        raise LlmarchError(f"rwkv6 with norm epsilons growing with depth (a GGUF file's rescale_every_n_layers "
                           f"{every}) cannot be written: the HF code rescales only in fp16 and bf16, and llmarch "
                           "writes GGUF files unrescaled")
    out = dict(architectures=["Rwkv6ForCausalLM"], model_type="rwkv6", vocab_size=cfg.vocab_size,
               hidden_size=cfg.d_model, attention_hidden_size=cfg.d_model, head_size=cfg.head_dim,
               head_size_divisor=8, intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers // 2,
               layer_norm_epsilon=cfg.norm_eps, rescale_every=0, tie_word_embeddings=cfg.tie_embeddings,
               context_length=cfg.context_length)
    if (cfg.rwkv6_mix_rank, cfg.rwkv6_decay_rank) != default_ranks(cfg.d_model):
        out.update(lora_rank_tokenshift=cfg.rwkv6_mix_rank, lora_rank_decay=cfg.rwkv6_decay_rank)
    if cfg.eos_id is not None:
        out["eos_token_id"] = cfg.eos_id
    return out


FAMILIES.register("rwkv6")(Family(RULES, to_config, from_config, needs=_unexpressible, more_rules=block_rules))
