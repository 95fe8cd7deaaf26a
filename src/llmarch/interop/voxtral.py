"""Voxtral (`model_type: voxtral`, VoxtralForConditionalGeneration; Mistral AI 2025, "Voxtral", §2.1): Whisper-
large-v3's encoder (audio_towers.py) over 30 s log-mel clips, every frame read, its 1500 output frames of a clip taken
four at a time side by side (transformers reshapes them to the encoder's intermediate_size, 4 x d_model: so the
stacking factor is intermediate_size / hidden_size), an MLP without biases (linear_1, projector_hidden_act,
linear_2) and a LLaMA/Mistral text model (llama.py's rules under model.language_model.), the features at the audio
token's positions (audio/inputs.py): 375 per clip (12.5 Hz). The encoder's avg_pooler is built and never run."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import hf_activation, read_activation
from .audio_towers import PROJECTOR, audio_of, canonical_name, text_config, text_hf, tower_fields, tower_hf, \
    tower_rules
from .hf import FAMILIES, Family
from .mapping import Rule
from .multimodal import text_rules

TEXT = "llama"
# VoxtralConfig's text_config defaults (Voxtral-Mini-3B's) and LlamaConfig's head count, for fields a published
# text_config leaves out
_TEXT_DEFAULTS = dict(vocab_size=131072, hidden_size=3072, intermediate_size=8192, num_hidden_layers=30,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072,
                      rms_norm_eps=1e-5, rope_theta=1e8, head_dim=128)


def to_config(hf: dict) -> ModelConfig:
    tower = tower_fields(hf.get("audio_config") or {})
    stack, rest = divmod(tower["ffn_hidden"], tower["width"])
    if rest or not stack:
        raise LlmarchError(f"voxtral stacks its encoder's frames to intermediate_size {tower['ffn_hidden']}, which "
                           f"must be a multiple of its hidden_size {tower['width']}")
    token = hf.get("audio_token_id")  # VoxtralConfig's default is None; VoxtralProcessor's id is 24
    audio = dict(audio_token_id=24 if token is None else token, **tower, stack=stack, projector="mlp",
                 projector_bias=False,
                 projector_act=read_activation(hf, "voxtral", "projector_hidden_act", "gelu"))
    return text_config(hf, TEXT, _TEXT_DEFAULTS).replace(audio=audio, hf_model_type="voxtral")


def from_config(cfg: ModelConfig) -> dict:
    a = audio_of(cfg, "voxtral")
    if a.pool != 1 or a.masked or a.projector != "mlp" or a.projector_bias or a.stack * a.width != a.ffn_hidden:
        raise LlmarchError("model_type voxtral needs an audio tower without pooling or masking, frames stacked to its "
                           "ffn_hidden (stack x width) and an MLP projector without biases")
    return dict(model_type="voxtral", architectures=["VoxtralForConditionalGeneration"], text_config=text_hf(cfg, TEXT),
                audio_config=tower_hf(a, "voxtral_encoder", 1), audio_token_id=a.audio_token_id,
                projector_hidden_act=hf_activation(a.projector_act), hidden_size=cfg.d_model,
                tie_word_embeddings=cfg.tie_embeddings)


def audio_rules(cfg: ModelConfig) -> list[Rule]:
    return tower_rules(audio_of(cfg, "voxtral")) + [
        Rule.of(f"{PROJECTOR}linear_{n}.weight", f"audio.projector.fc{n}.weight") for n in (1, 2)]


_text = FAMILIES[TEXT]
FAMILIES.register("voxtral")(Family(text_rules(_text.rules), to_config, from_config,
                                    _text.ignore + (r"^model\.audio_tower\.avg_pooler\.",),
                                    canonical=canonical_name, tied_by_checkpoint=True, more_rules=audio_rules))
