"""Gemma 4 with its images (`model_type: gemma4`, Gemma4ForConditionalGeneration; Gemma Team 2026, Gemma 4 model
card): gemma4.py's text model under model.language_model., its vision tower (model.vision_tower.*) and embedder
(model.embed_vision.*) as vision/gemma4_tower.py runs them (vision/gemma4_config.py's fields), read and written.
What Gemma4Model does around the text model:
- the image, video and audio tokens' ids are looked up as padding (pad_token_id 0) by both embeddings
  (placeholder_ids), the image tokens' embeddings then replaced by the image features, not scaled by sqrt(d_model);
- use_bidirectional_attention 'vision' (the 26B and 31B models): each image's run of tokens attends to itself both
  ways on the sliding layers only, the full layers staying causal (create_masks_for_vision_model:
  bidirectional_token with bidirectional_sliding); transformers does so when given the processor's
  mm_token_type_ids, which Gemma4Processor always returns. Without it (E2B, E4B) images are read causally.
A checkpoint without a vision_config is read as its text model (gemma4_text), as before. The audio tower and embedder
are not read; videos (frames through the same tower at <|video|> tokens) are not supported here. boi_token_id,
eoi_token_id and the video and audio token ids, which only the processor and the audio and video paths read, are
written as transformers' defaults."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.gemma4_config import TOWER, Gemma4VisionConfig, gemma4_vision_config, is_gemma4
from . import gemma4
from .activations import PYTORCH_TANH, hf_activation, read_activation
from .mapping import LAYOUTS, Rule
from .multimodal import text_rules

# transformers' Gemma4VisionConfig defaults, for fields a config.json leaves out
_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=16, num_attention_heads=12,
                 num_key_value_heads=12, head_dim=64, hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6,
                 pooling_kernel_size=3, patch_size=16, position_embedding_size=10240, use_clipped_linears=False,
                 standardize=False, attention_bias=False)
_VT, _EMBED = "model.vision_tower.", "model.embed_vision."
_BOUNDS = ("input_min", "input_max", "output_min", "output_max")
# a clipped linear's bound that does not bite is stored as +-inf (transformers' init), which llmarch's finite-weights
# check refuses: read as the dtype's largest magnitude (the same clamp), written back as +-inf
LAYOUTS["clip_bound"] = (lambda t, cfg: t.nan_to_num(posinf=torch.finfo(t.dtype).max, neginf=torch.finfo(t.dtype).min),
                         lambda t, cfg: torch.where(t.abs() == torch.finfo(t.dtype).max, t * float("inf"), t),
                         lambda s: s)


def vision_fields(hf: dict, text_width: int) -> dict:
    """ModelConfig.vision of a gemma4 config.json's vision_config, or one line refusing what the tower cannot run."""
    vc = {**_DEFAULTS, **hf["vision_config"]}
    rope = vc.get("rope_parameters") or {}
    if vc["attention_bias"] or rope.get("rope_type", "axial") not in ("axial", "default"):
        raise LlmarchError(f"gemma4: vision attention_bias {vc['attention_bias']!r} or rope_type "
                           f"{rope.get('rope_type')!r} is not supported (no biases; axial 2-D RoPE)")
    image_token = hf.get("image_token_id", gemma4.MEDIA_TOKENS["image_token_id"])
    return dict(tower=TOWER, image_token_id=image_token, width=vc["hidden_size"],
                n_layers=vc["num_hidden_layers"], n_heads=vc["num_attention_heads"],
                n_kv_heads=vc["num_key_value_heads"], head_dim=vc["head_dim"], ffn_hidden=vc["intermediate_size"],
                out_width=text_width,
                act=read_activation(vc, "gemma4 vision", "hidden_activation", "gelu_pytorch_tanh"),
                patch_size=vc["patch_size"], positions=vc["position_embedding_size"],
                pooling=vc["pooling_kernel_size"], norm_eps=float(vc["rms_norm_eps"]),
                rope_theta=float(rope.get("rope_theta", 100.0)), clipped=bool(vc["use_clipped_linears"]),
                standardize=bool(vc["standardize"]))


def vision_hf(v: Gemma4VisionConfig) -> dict:
    """The vision_config transformers builds `v`'s tower from."""
    return dict(model_type="gemma4_vision", hidden_size=v.width, intermediate_size=v.ffn_hidden,
                num_hidden_layers=v.n_layers, num_attention_heads=v.n_heads, num_key_value_heads=v.n_kv_heads,
                head_dim=v.head_dim, hidden_activation=hf_activation(v.act, PYTORCH_TANH), rms_norm_eps=v.norm_eps,
                pooling_kernel_size=v.pooling, patch_size=v.patch_size, position_embedding_size=v.positions,
                use_clipped_linears=v.clipped, standardize=v.standardize,
                rope_parameters={"rope_type": "axial", "rope_theta": v.rope_theta})


def to_config(hf: dict) -> ModelConfig:
    cfg = gemma4.multimodal_config(hf)
    if hf.get("vision_config") is None:
        return cfg  # the text model alone, as gemma4_text
    vision = vision_fields(hf, cfg.d_model)
    token = vision["image_token_id"]
    bidirectional = (hf.get("text_config") or {}).get("use_bidirectional_attention") == "vision"
    if (hf.get("text_config") or {}).get("pad_token_id", 0) != 0:  # Gemma4Model looks image tokens up as padding
        raise LlmarchError("gemma4 with images: text_config pad_token_id other than 0 is not supported")
    return cfg.replace(vision=vision, hf_model_type="gemma4",
                       placeholder_ids=gemma4.placeholder_ids(hf, cfg.vocab_size),
                       bidirectional_token=token if bidirectional else None, bidirectional_sliding=bidirectional)


def from_config(cfg: ModelConfig) -> dict:
    if not is_gemma4(cfg.vision):
        raise LlmarchError("llmarch writes gemma4 with its Gemma 4 vision tower; export a text model with "
                           "hf_model_type='gemma4_text'")
    v = gemma4_vision_config(cfg.vision)
    token, bidirectional = v.image_token_id, cfg.bidirectional_token is not None
    if cfg.placeholder_ids != gemma4.placeholder_ids({"image_token_id": token}, cfg.vocab_size) or bidirectional and (
            cfg.bidirectional_token != token or not cfg.bidirectional_sliding):
        raise LlmarchError("gemma4 looks its image, video and audio tokens up as padding (placeholder_ids: the image "
                           "token, and the video and audio ones at transformers' defaults), and its images attend "
                           "both ways on sliding layers only (bidirectional_sliding), if at all")
    text = gemma4.from_config(cfg.replace(vision=None, hf_model_type="gemma4_text", placeholder_ids=None,
                                          bidirectional_token=None, bidirectional_sliding=False))
    text.pop("architectures", None)
    text["use_bidirectional_attention"] = "vision" if bidirectional else None
    return dict(model_type="gemma4", architectures=["Gemma4ForConditionalGeneration"], text_config=text,
                vision_config=vision_hf(v), image_token_id=token, tie_word_embeddings=cfg.tie_embeddings)


def vision_rules(v: Gemma4VisionConfig) -> list[Rule]:
    """HF names of the tower's and embedder's tensors and ours (vision.tower.*, vision.projector.*), block by block
    (the tower's depth is not the text model's)."""
    ours = "vision.tower."
    rules = [Rule.of(_VT + "patch_embedder.input_proj.weight", ours + "patch.weight"),
             Rule.of(_VT + "patch_embedder.position_embedding_table", ours + "positions"),
             Rule.of(_EMBED + "embedding_projection.weight", "vision.projector.weight")]
    if v.standardize:
        rules += [Rule.of(_VT + name, ours + name) for name in ("std_bias", "std_scale")]
    linears = {"self_attn.q_proj": "attn.q_proj", "self_attn.k_proj": "attn.k_proj", "self_attn.v_proj": "attn.v_proj",
               "self_attn.o_proj": "attn.o_proj", "mlp.gate_proj": "gate", "mlp.up_proj": "up", "mlp.down_proj": "down"}
    norms = {"self_attn.q_norm": "attn.q_norm", "self_attn.k_norm": "attn.k_norm", "input_layernorm": "ln1",
             "post_attention_layernorm": "post_ln1", "pre_feedforward_layernorm": "ln2",
             "post_feedforward_layernorm": "post_ln2"}
    for i in range(v.n_layers):
        hf, block = f"{_VT}encoder.layers.{i}.", f"{ours}blocks.{i}."
        for theirs, mine in linears.items():
            rules.append(Rule.of(f"{hf}{theirs}.linear.weight", f"{block}{mine}.weight"))
            rules += [Rule.of(f"{hf}{theirs}.{b}", f"{block}{mine}.{b}", "clip_bound")
                      for b in (_BOUNDS if v.clipped else ())]
        rules += [Rule.of(f"{hf}{theirs}.weight", f"{block}{mine}.weight") for theirs, mine in norms.items()]
    return rules


def more_rules(cfg: ModelConfig) -> list[Rule]:
    """The text model's q, k, v (gemma4.qkv_rules) under model.language_model., and the tower's where there is one."""
    rules = text_rules(gemma4.qkv_rules(cfg))
    return rules + vision_rules(gemma4_vision_config(cfg.vision)) if is_gemma4(cfg.vision) else rules

