"""Qwen2-Audio (`model_type: qwen2_audio`, Qwen2AudioForConditionalGeneration; Chu et al. 2024, "Qwen2-Audio
Technical Report", §2): Whisper-large-v3's encoder (audio_towers.py) over 30 s log-mel clips, its frames past each
clip's length masked as keys, average-pooled in pairs before its final LayerNorm (one feature per 40 ms), one linear
projection with a bias, and a Qwen2 text model (qwen2.py's rules under model.language_model.), the features at the
<|AUDIO|> token's positions (audio/inputs.py). A clip of L real frames fills ((L - 1) // 2 + 1 - 2) // 2 + 1
tokens, as its processor expands the prompt's one <|AUDIO|> (audio/prompts.py)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .audio_towers import PROJECTOR, audio_of, canonical_name, text_config, text_hf, tower_fields, tower_hf, \
    tower_rules
from .hf import FAMILIES, Family
from .mapping import Rule
from .multimodal import text_rules

TEXT = "qwen2"
# what transformers' Qwen2Config assumes for fields a published text_config leaves out
_TEXT_DEFAULTS = dict(vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32)
_LAYOUT = dict(pool=2, masked=True, stack=1, projector="linear", projector_bias=True)  # what only this family has


def to_config(hf: dict) -> ModelConfig:
    audio = dict(audio_token_id=hf.get("audio_token_index", hf.get("audio_token_id", 151646)),
                 **tower_fields(hf.get("audio_config") or {}), **_LAYOUT)
    return text_config(hf, TEXT, _TEXT_DEFAULTS).replace(audio=audio, hf_model_type="qwen2_audio")


def from_config(cfg: ModelConfig) -> dict:
    a = audio_of(cfg, "qwen2_audio")
    if any(getattr(a, k) != v for k, v in _LAYOUT.items()):
        raise LlmarchError("model_type qwen2_audio needs an audio tower of pool 2, masked, stack 1 and a linear "
                           "projector with a bias")
    return dict(model_type="qwen2_audio", architectures=["Qwen2AudioForConditionalGeneration"],
                text_config=text_hf(cfg, TEXT), audio_config=tower_hf(audio_of(cfg, "qwen2_audio"),
                                                                       "qwen2_audio_encoder", 0),
                audio_token_index=a.audio_token_id, tie_word_embeddings=cfg.tie_embeddings)


def audio_rules(cfg: ModelConfig) -> list[Rule]:
    return tower_rules(audio_of(cfg, "qwen2_audio")) + [
        Rule.of(f"{PROJECTOR}linear.{w}", f"audio.projector.proj.{w}") for w in ("weight", "bias")]


_text = FAMILIES[TEXT]
FAMILIES.register("qwen2_audio")(Family(text_rules(_text.rules), to_config, from_config, _text.ignore,
                                        canonical=canonical_name, tied_by_checkpoint=True, more_rules=audio_rules))
