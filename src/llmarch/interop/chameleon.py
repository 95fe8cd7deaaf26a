"""Chameleon (`model_type: chameleon`, ChameleonForConditionalGeneration; Chameleon Team 2024, "Chameleon:
Mixed-Modal Early-Fusion Foundation Models", §2.3), read as its text model: LLaMA's layout (llama.py's rules: RMSNorm,
GQA, RoPE in halves, SwiGLU, an untied head) over one vocabulary of text and VQ image tokens, with two changes for
training stability. QK-norm: each head's queries and keys through a LayerNorm (eps 1e-5, whatever rms_norm_eps is)
with a gain and a bias of their own per head and channel, (H, D) each, before RoPE (qk_norm 'per_head',
qk_norm_kind 'layernorm', qk_norm_bias). Swin norm (the 30B's `swin_norm`): no norm on a sublayer's input, one on
its output before the residual add, x + n(attn(x)), x + n(mlp(x)) (norm_placement 'res_post'; input_layernorm is
the attention's, post_attention_layernorm the MLP's). `attention_bias` biases q, k, v and o; `mlp_bias` the MLP.

ChameleonForConditionalGeneration sets the logits of the image tokens (the vocabulary_map's names starting IMGIMG)
to the dtype's lowest value in every forward, so it writes text only: read as suppressed_logits, the ranges of those
ids. The VQ-VAE (`vqmodel`, which turns images into those tokens) is not read, so llmarch takes token ids only.
Written back as `chameleon` with transformers' default vq_config and no vqmodel weights (transformers initialises
them afresh: images need the original checkpoint's), the suppressed ids named IMGIMG<code>Z in vocabulary_map."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import JOINS, Rule

# ChameleonConfig's defaults, for fields a config.json leaves out
DEFAULTS = dict(vocab_size=65536, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=32, hidden_act="silu", max_position_embeddings=4096,
                rms_norm_eps=1e-5, tie_word_embeddings=False)
QK_EPS = 1e-5  # ChameleonLayerNorm's, fixed
IMAGE = "IMGIMG"  # ChameleonImageVocabularyMapping: the names of image tokens start so

# a per-head QK-norm tensor, (H, D) in the checkpoint, ours flat (H * D,): one HF tensor "joined" into ours
JOINS["heads_rows"] = (lambda parts, cfg: parts[0].reshape(-1), lambda t, cfg: [t.view(-1, cfg.head_dim)])
_ATTN = "model.layers.{i}.self_attn."
RULES = LLAMA_RULES + [Rule.of(_ATTN + f"{p}_norm.{w}", f"blocks.{{i}}.attn.{p}_norm.{w}", "heads_rows")
                       for p in "qk" for w in ("weight", "bias")]


def image_ranges(vocabulary_map: dict | None) -> list | None:
    """The ids of the vocabulary map's image tokens as [start, stop) ranges, or None where it has none."""
    ids = sorted(v for k, v in (vocabulary_map or {}).items() if k.startswith(IMAGE))
    ranges: list = []
    for i in ids:
        if ranges and ranges[-1][1] == i:
            ranges[-1][1] = i + 1
        else:
            ranges.append([i, i + 1])
    return ranges or None


def vocabulary_map(ranges: list | None) -> dict:
    """suppressed_logits as ChameleonImageVocabularyMapping reads them: IMGIMG, the code's digits as letters A-J, Z,
    the codes 0, 1, ... in the order of the ids."""
    ids = [i for start, stop in ranges or [] for i in range(start, stop)]
    return {f"{IMAGE}{''.join(chr(ord('A') + int(c)) for c in str(code))}Z": i for code, i in enumerate(ids)}


def to_config(hf: dict) -> ModelConfig:
    hf = {**DEFAULTS, **hf, "model_type": "chameleon"}
    hf.pop("head_dim", None)  # ChameleonAttention's head_dim is hidden_size / num_attention_heads, always
    attn, mlp = bool(hf.get("attention_bias", False)), bool(hf.get("mlp_bias", False))
    # llama_like_config reads one bias for o_proj and the MLP: here that is mlp_bias, and attention_bias q, k, v, o's
    return llama_like_config({**hf, "attention_bias": mlp}, qkv_bias=attn, o_bias=attn, norm_eps=hf["rms_norm_eps"],
                             qk_norm="per_head", qk_norm_kind="layernorm", qk_norm_eps=QK_EPS, qk_norm_bias=True,
                             norm_placement="res_post" if hf.get("swin_norm") else "pre",
                             suppressed_logits=image_ranges(hf.get("vocabulary_map")))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.head_dim * cfg.n_heads != cfg.d_model:
        raise LlmarchError(f"model_type chameleon needs head_dim * n_heads = d_model, got {cfg.head_dim} * "
                           f"{cfg.n_heads} != {cfg.d_model}")
    hf = llama_like_hf(cfg, architectures=["ChameleonForConditionalGeneration"], attention_bias=cfg.qkv_bias,
                       swin_norm=cfg.norm_placement == "res_post", vocabulary_map=vocabulary_map(cfg.suppressed_logits))
    hf.pop("head_dim")
    return refuse_unless_read_back(cfg, hf, to_config)


FAMILIES.register("chameleon")(Family(RULES, to_config, from_config, IGNORE + (r"^model\.vqmodel\.",)))
