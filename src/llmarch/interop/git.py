"""GIT (`model_type: git`, GitForCausalLM; Wang et al. 2022, "GIT: A Generative Image-to-text Transformer for Vision
and Language"): a CLIP image encoder whose projected features (`visual_projection`: a linear map and a LayerNorm)
are put before the text tokens, and a BERT-like text decoder over both: word embeddings plus learned absolute
positions under a LayerNorm (`git.embeddings.*`, no token types), BERT's post-norm blocks (`git.encoder.layer.{i}.*`:
bert.py's names) with causal self-attention over the text tokens (the image tokens, when there are any, attend
among themselves bidirectionally, §2.1), no final norm, and a head with a bias (`output`), untied by default.

llmarch reads the text decoder, which is all that runs without pixel_values: position ids count the text tokens from
0, so a left-padded row's positions are its mask's running count, as for any decoder. The image encoder (a CLIP
ViT whose post_layernorm applies to every position, `git.image_encoder.vision_model.*`) and the projection
(`git.visual_projection.visual_projection.{0,1}`: projector `linear_norm`) are held (vision `held`): read, kept and
written back, never run, as trocr.py holds TrOCR's cross-attention. llmarch's image path writes features at
image-token positions; GIT's goes before the text, with its own attention pattern, so pixel_values are refused.
Refused: the video models' temporal embeddings (`num_image_with_embedding`)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.config import vision_config
from .activations import read_activation, require_hf_activation
from .bert import body_rules
from .hf import FAMILIES, Family
from .mapping import Rule
from .vision_towers import tower_fields, tower_hf, tower_rules

RULES = [*body_rules("git"), Rule.of("output.weight", "lm_head.weight"), Rule.of("output.bias", "lm_head.bias")]
IGNORE = (r"embeddings\.position_ids$",)  # a buffer in older files
TOWER, PROJECTION = "git.image_encoder.vision_model.", "git.visual_projection.visual_projection."
# GitConfig's defaults (microsoft/git-base's text decoder), for fields a config.json leaves out
DEFAULTS = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072,
                hidden_act="gelu", max_position_embeddings=1024, layer_norm_eps=1e-12, tie_word_embeddings=False,
                pad_token_id=0)
# GitVisionConfig's defaults (its patch_size is not CLIPVisionConfig's)
VISION_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                       image_size=224, patch_size=16, hidden_act="quick_gelu", layer_norm_eps=1e-5)


def to_config(hf: dict) -> ModelConfig:
    hf = {**DEFAULTS, **hf}
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    if d % heads:
        raise LlmarchError(f"git: hidden_size {d} is not a multiple of num_attention_heads {heads}")
    dropouts = {float(hf.get(k, 0.1) or 0.0) for k in ("hidden_dropout_prob", "attention_probs_dropout_prob")}
    if hf.get("num_image_with_embedding") is not None:
        raise LlmarchError("git with num_image_with_embedding (video: temporal embeddings per frame) is not supported")
    pad = hf["pad_token_id"]
    vision = {**VISION_DEFAULTS, **(hf.get("vision_config") or {}), "model_type": "clip_vision_model"}
    return ModelConfig(name=hf.get("_name_or_path") or "git", hf_model_type="git", vocab_size=hf["vocab_size"],
                       d_model=d, n_layers=hf["num_hidden_layers"], n_heads=heads,
                       ffn=read_activation(hf, "git", "hidden_act", "gelu"),
                       ffn_hidden=hf["intermediate_size"], norm="layernorm", norm_eps=hf["layer_norm_eps"],
                       norm_placement="post", final_norm=False, positions="learned", causal=True, type_vocab_size=0,
                       embed_norm=True, head_transform=False, head_bias=True, bias=True,
                       tie_embeddings=hf["tie_word_embeddings"], context_length=hf["max_position_embeddings"],
                       dropout=dropouts.pop() if len(dropouts) == 1 else 0.0, pad_id=0 if pad is None else pad,
                       vision=dict(tower_fields(vision), post_norm=True, projector="linear_norm", held=True))


def needs(cfg: ModelConfig) -> str | None:
    if cfg.norm_placement != "post" or cfg.final_norm or not cfg.embed_norm or cfg.position_offset \
            or cfg.positions != "learned" or cfg.type_vocab_size or cfg.embed_width != cfg.d_model or not cfg.causal \
            or cfg.head_transform or not cfg.head_bias or cfg.n_kv_heads != cfg.n_heads or cfg.vision is None:
        return ("BERT's post-norm causal blocks, embedding LayerNorm and learned positions from 0, no token types, "
                "an LM head without a transform, with a bias, and a held vision tower")
    v = vision_config(cfg.vision)
    if not (v.held and v.post_norm and v.projector == "linear_norm" and v.projector_bias and v.feature_layers is None):
        return "a held CLIP tower, post-normed, and a linear_norm projector with bias (GIT's image encoder)"
    return None


def from_config(cfg: ModelConfig) -> dict:
    return dict(model_type="git", architectures=["GitForCausalLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                intermediate_size=cfg.ffn_hidden, hidden_act=require_hf_activation(cfg.ffn, "git"),
                layer_norm_eps=cfg.norm_eps, max_position_embeddings=cfg.context_length,
                tie_word_embeddings=cfg.tie_embeddings, pad_token_id=cfg.pad_id,
                hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
                vision_config={k: x for k, x in tower_hf(vision_config(cfg.vision)).items() if k != "model_type"})


def vision_rules(cfg: ModelConfig) -> list[Rule]:
    return tower_rules(vision_config(cfg.vision), TOWER) + [
        Rule.of(f"{PROJECTION}{i}.{w}", f"vision.projector.{ours}.{w}") for i, ours in ((0, "proj"), (1, "norm"))
        for w in ("weight", "bias")]


FAMILIES.register("git")(Family(RULES, to_config, from_config, IGNORE, needs=needs, more_rules=vision_rules))
