"""Qwen2.5-Omni's thinker (Xu et al. 2025, "Qwen2.5-Omni Technical Report", \u00a72: `model_type:
qwen2_5_omni_thinker`, Qwen2_5OmniThinkerForConditionalGeneration; and the thinker of a whole `qwen2_5_omni`
checkpoint, Qwen2_5OmniForConditionalGeneration, whose talker and token2wav, the speech it would speak, are not read):
text, images and audio in, text out.

- Text model (`qwen2_5_omni_text`): Qwen2.5-VL's (qwen_vl.py: Qwen2's blocks, M-RoPE in runs of mrope_section,
  [16, 24, 24] by default), its config class's defaults (a tied head among them).
- Vision tower: Qwen2.5-VL's windowed one with q, k and v stored apart (qwen_vl_vision.py), images placed as
  Qwen2.5-VL's: transformers' get_rope_index for an image (one temporal patch) starts it at the position after the
  text before it and the text after it at its largest position + 1, which is vision/qwen_inputs.py's rule.
- Audio tower: Whisper's encoder over each clip's real frames in chunks of 2 x n_window (audio/chunked_tower.py),
  frames average-pooled in pairs, ln_post and proj (our linear projector), the features at <|AUDIO|>; its tokens
  take positions as text (TMRoPE numbers audio 1-D, one position a token, as get_rope_index does).
- Videos are refused (video_token_id none): TMRoPE times their frames by position_id_per_seconds and interleaves
  them with their audio (use_audio_in_video), which vision/qwen_inputs.py does not; position_id_per_seconds and
  seconds_per_chunk, which only videos read, are not kept.

Names as transformers' modules hold them (model.language_model.*, model.visual.*, model.audio_tower.*, lm_head.*);
as saved and published (thinker.model.*, thinker.visual.*, thinker.audio_tower.*, thinker.lm_head.*, and the
transformers 5 names under thinker.) read as those (canonical_name). Written back as the thinker, with the published
special tokens' ids for what transformers' get_rope_index counts by (vision_start_token_id, audio_start_token_id),
which llmarch does not keep."""
from __future__ import annotations

from ..audio.config import audio_config
from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.qwen_config import is_qwen, qwen_vision_config
from . import multimodal
from .audio_towers import TOWER, tower_fields, tower_hf, tower_rules
from .hf import FAMILIES, Family
from .mapping import Rule
from .qwen_vl import QWEN2_SIZES, TextKind, register_text
from .qwen_vl_vision import vision_fields, vision_hf, vision_rules

THINKER, TEXT, WHOLE = "qwen2_5_omni_thinker", "qwen2_5_omni_text", "qwen2_5_omni"
register_text(TEXT, TextKind(
    "qwen2", THINKER, "Qwen2_5OmniThinkerForConditionalGeneration",
    dict(QWEN2_SIZES, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
         num_key_value_heads=4, rms_norm_eps=1e-6, tie_word_embeddings=True),
    (16, 24, 24), False, {"head_dim": None}), FAMILIES["qwen2"].rules, [])
_AUDIO = dict(pool=2, masked=True, stack=1, projector="linear", projector_bias=True)  # what the thinker's tower has
_TOKENS = dict(image_token_index=151655, audio_token_index=151646)  # the thinker config class's defaults
# what transformers' get_rope_index counts images and clips by: the published ids (its thinker config class has no
# vision_start_token_id default, and fails without one)
_STARTS = dict(vision_start_token_id=151652, audio_start_token_id=151647)


def to_config(hf: dict) -> ModelConfig:
    """The thinker's config (text_config, vision_config, audio_config and the token ids)."""
    text = FAMILIES[TEXT].to_config({**(hf.get("text_config") or {}), "_name_or_path": hf.get("_name_or_path")})
    hf = {**_TOKENS, **hf}
    vision = dict(vision_fields({**hf, "image_token_id": hf["image_token_index"]}, THINKER), video_token_id=None)
    a = hf.get("audio_config") or {}
    audio = dict(audio_token_id=hf["audio_token_index"], **tower_fields(a), window=a.get("n_window", 100), **_AUDIO)
    return text.replace(vision=vision, audio=audio, hf_model_type=THINKER)


def from_config(cfg: ModelConfig) -> dict:
    if not is_qwen(cfg.vision) or cfg.audio is None:
        raise LlmarchError(f"model_type {THINKER} has a Qwen-VL vision tower and an audio tower (config vision, "
                           f"audio); write the text model as {TEXT}")
    v, a = qwen_vision_config(cfg.vision), audio_config(cfg.audio)
    if any(getattr(a, k) != value for k, value in _AUDIO.items()) or not a.window or v.video_token_id is not None:
        raise LlmarchError(f"model_type {THINKER}'s audio tower reads chunks (window), masked, pooled in pairs, a "
                           "linear projector with a bias; its videos are not run (video_token_id none)")
    text = FAMILIES[TEXT].from_config(cfg.replace(vision=None, audio=None, hf_model_type=TEXT))
    text.pop("architectures", None)
    return dict(model_type=THINKER, architectures=["Qwen2_5OmniThinkerForConditionalGeneration"], text_config=text,
                vision_config=vision_hf(v, THINKER), image_token_index=v.image_token_id,
                audio_config=dict(tower_hf(a, "qwen2_5_omni_audio_encoder", 0), n_window=a.window,
                                  output_dim=cfg.d_model),
                audio_token_index=a.audio_token_id, tie_word_embeddings=cfg.tie_embeddings, **_STARTS)


def more_rules(cfg: ModelConfig) -> list[Rule]:
    """The tower's and the audio tower's tensors (the latter's proj our projector)."""
    return vision_rules(qwen_vision_config(cfg.vision), THINKER) + \
        tower_rules(audio_config(cfg.audio), stem="", final="ln_post") + \
        [Rule.of(f"{TOWER}proj.{w}", f"audio.projector.proj.{w}") for w in ("weight", "bias")]


def canonical_name(name: str) -> str:
    """The saved and published names (thinker.model.* the text model's, thinker.visual.*, thinker.audio_tower.*,
    thinker.lm_head.*) as transformers' modules' (model.language_model.*, model.visual.*, ...)."""
    name = name.removeprefix("thinker.")
    if name.startswith(("visual.", "audio_tower.")):
        return "model." + name
    if name.startswith("model.") and not name.startswith(("model.language_model.", "model.visual.",
                                                         "model.audio_tower.")):
        return "model.language_model." + name.removeprefix("model.")
    return name


def whole_config(hf: dict) -> ModelConfig:
    """A whole Qwen2.5-Omni checkpoint: its thinker_config, read as the thinker."""
    return to_config({**(hf.get("thinker_config") or {}), "_name_or_path": hf.get("_name_or_path")})


def no_speech(cfg: ModelConfig) -> dict:
    raise LlmarchError(f"llmarch reads {WHOLE}'s thinker only (text out; its talker and token2wav, which speak, are "
                       f"not read): write it with hf_model_type={THINKER!r}")


_IGNORE = FAMILIES["qwen2"].ignore + (r"^model\.audio_tower\.audio_bos_eos_token\.",)
_RULES = multimodal.text_rules(FAMILIES["qwen2"].rules)
FAMILIES.register(THINKER)(Family(_RULES, to_config, from_config, _IGNORE, canonical=canonical_name,
                                  tied_by_checkpoint=True, more_rules=more_rules))
FAMILIES.register(WHOLE)(Family(_RULES, whole_config, no_speech, _IGNORE + (r"^talker\.", r"^token2wav\."),
                                canonical=canonical_name, tied_by_checkpoint=True, more_rules=more_rules))
