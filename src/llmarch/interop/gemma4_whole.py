"""`gemma4` (Gemma4ForConditionalGeneration) as one family: the text model (gemma4.py's rules under
model.language_model.) with its vision tower and embedder (gemma4_vision.py) where the checkpoint has a
vision_config, else with its audio tower and embedder (gemma4_audio.py) where it has an audio_config, else the text
model alone (as gemma4_text). A checkpoint with both towers is read with its vision tower: llmarch's audio inputs
are not yet checked beside a Gemma 4 vision tower, so the audio tower is left unread there (ignored, not refused)."""
from __future__ import annotations

from ..config import ModelConfig
from . import gemma4, gemma4_audio, gemma4_vision
from .hf import FAMILIES, Family
from .mapping import Rule
from .multimodal import text_name, text_rules

TOWERS = (r"^model\.(vision_tower|audio_tower|embed_vision|embed_audio)\.",)  # what a checkpoint may hold unread


def to_config(hf: dict) -> ModelConfig:
    if hf.get("vision_config") is not None:
        return gemma4_vision.to_config(hf)
    return gemma4_audio.to_config(hf)  # the text model alone where there is no audio_config either


def from_config(cfg: ModelConfig) -> dict:
    return gemma4_audio.from_config(cfg) if cfg.audio is not None and cfg.vision is None else \
        gemma4_vision.from_config(cfg)


def more_rules(cfg: ModelConfig) -> list[Rule]:
    rules = gemma4_vision.more_rules(cfg)
    return rules + gemma4_audio.tower_rules(cfg) if cfg.audio is not None else rules


FAMILIES.register("gemma4")(Family(text_rules(gemma4.RULES), to_config, from_config, gemma4.IGNORE_SHARED + TOWERS,
                                   canonical=text_name, tied_by_checkpoint=True, more_rules=more_rules))
