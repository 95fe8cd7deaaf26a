"""The Whisper-style audio towers of audio-language checkpoints (qwen2_audio.py, voxtral.py): their audio_config as
audio/config.py's fields and back, their weights' names block by block, and the text model under language_model
(multimodal.py's rules). Both encoders are Whisper's (Radford et al. 2022, §2.2), saved with Whisper's encoder
names: conv1, conv2, embed_positions (stored sinusoids, read into the stem's buffer), layers.{i}.self_attn.{q,k,v,
out}_proj (no key bias), self_attn_layer_norm, fc1, fc2, final_layer_norm, and a final layer_norm. The rules use
transformers 5's module names (model.audio_tower.*, model.multi_modal_projector.*, model.language_model.*), which
to_hf writes and transformers loads; what its save_pretrained stores (audio_tower.*, multi_modal_projector.*,
language_model.model.*) is renamed to those (canonical_name). The encoder's scale_embedding is read and ignored, as
transformers computes its embed_scale and never applies it."""
from __future__ import annotations

import torch

from ..audio.config import AudioConfig, audio_config
from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import hf_activation, read_activation
from .hf import FAMILIES
from .mapping import JOINS, Rule
from .multimodal import text_name

TOWER = "model.audio_tower."
PROJECTOR = "model.multi_modal_projector."
# the encoder config's names of each AudioConfig size: Whisper's (qwen2_audio_encoder), or the attribute_map's
# (voxtral_encoder writes hidden_size and the others, and reads either)
_SIZES = {"width": ("d_model", "hidden_size"), "n_layers": ("encoder_layers", "num_hidden_layers"),
          "n_heads": ("encoder_attention_heads", "num_attention_heads"),
          "ffn_hidden": ("encoder_ffn_dim", "intermediate_size")}
# what transformers' encoder configs assume where a published audio_config leaves a field out (both the same)
_DEFAULTS = dict(width=1280, n_layers=32, n_heads=20, ffn_hidden=5120)
# q, k and v of the tower's attention, equal thirds of our qkv_proj; their biases q and v only, the keys' zero
JOINS["audio_qkv"] = (lambda parts, cfg: torch.cat(parts), lambda t, cfg: list(t.chunk(3)))
# a block's other tensors, weight and bias each: Whisper's names and ours
_BLOCK = {"self_attn.out_proj": "attn.o_proj", "self_attn_layer_norm": "ln1", "final_layer_norm": "ln2",
          "fc1": "mlp.up", "fc2": "mlp.down"}
JOINS["audio_qv_bias"] = (lambda parts, cfg: torch.cat([parts[0], torch.zeros_like(parts[0]), parts[1]]),
                          lambda t, cfg: list(t.chunk(3))[::2])


def tower_fields(hf: dict) -> dict:
    """AudioConfig fields of an audio_config (the tower's shape; pooling, stacking and projector are the family's)."""
    sizes = {ours: next((hf[k] for k in names if k in hf), _DEFAULTS[ours]) for ours, names in _SIZES.items()}
    return dict(**sizes, n_mels=hf.get("num_mel_bins", 128), n_positions=hf.get("max_source_positions", 1500),
                act=read_activation(hf, "audio tower", "activation_function", "gelu"))


def tower_hf(a: AudioConfig, model_type: str, names: int) -> dict:
    """The audio_config transformers builds `a`'s tower from, its sizes under names 0 (Whisper's) or 1."""
    sizes = {hf[names]: getattr(a, ours) for ours, hf in _SIZES.items()}
    return dict(model_type=model_type, **sizes, num_mel_bins=a.n_mels, max_source_positions=a.n_positions,
                activation_function=hf_activation(a.act), scale_embedding=False)


def tower_rules(a: AudioConfig, stem: str = "stem.", final: str = "layer_norm") -> list[Rule]:
    """The tower's tensors: Whisper's conv1, conv2 (ours under `stem`; the stored sinusoids there too), blocks and
    final LayerNorm (`final`: Qwen2.5-Omni's ln_post, whose chunked tower computes its sinusoids)."""
    ours, wb = "audio.tower.", ("weight", "bias")
    rules = [Rule.of(f"{TOWER}conv{n}.{w}", f"{ours}{stem}conv{n}.{w}") for n in (1, 2) for w in wb]
    if stem:
        rules += [Rule.of(TOWER + "embed_positions.weight", ours + "stem.positions")]
    rules += [Rule.of(f"{TOWER}{final}.{w}", f"{ours}norm.{w}") for w in wb]
    for i in range(a.n_layers):
        hf, block = f"{TOWER}layers.{i}.", f"{ours}blocks.{i}."
        rules += [Rule.of(tuple(f"{hf}self_attn.{p}_proj.weight" for p in "qkv"), f"{block}attn.qkv_proj.weight",
                          "audio_qkv"),
                  Rule.of((f"{hf}self_attn.q_proj.bias", f"{hf}self_attn.v_proj.bias"), f"{block}attn.qkv_proj.bias",
                          "audio_qv_bias")]
        rules += [Rule.of(f"{hf}{name}.{w}", f"{block}{mine}.{w}") for name, mine in _BLOCK.items() for w in wb]
    return rules


def canonical_name(name: str) -> str:
    """transformers' saved names (audio_tower.*, multi_modal_projector.*, language_model.model.*) as its modules'."""
    return "model." + name if name.startswith(("audio_tower.", "multi_modal_projector.")) else text_name(name)


def text_config(hf: dict, text_type: str, defaults: dict) -> ModelConfig:
    """The text model of an audio-language config, read by its text family (`defaults`: what the wrapper's config
    class assumes for fields a published text_config leaves out)."""
    text = {"model_type": text_type, **defaults, **(hf.get("text_config") or {})}
    if text["model_type"] != text_type:
        raise LlmarchError(f"{hf['model_type']} with a {text['model_type']!r} text model is not supported; "
                           f"supported: {text_type}")
    return FAMILIES[text_type].to_config({**text, "_name_or_path": hf.get("_name_or_path") or hf["model_type"]})


def text_hf(cfg: ModelConfig, text_type: str) -> dict:
    """text_config's inverse: the text model's config as its family writes it, without architectures."""
    text = FAMILIES[text_type].from_config(cfg.replace(audio=None, hf_model_type=text_type))
    text.pop("architectures", None)
    return text


def audio_of(cfg: ModelConfig, model_type: str) -> AudioConfig:
    if cfg.audio is None:
        raise LlmarchError(f"model_type {model_type} needs an audio tower (config audio)")
    return audio_config(cfg.audio)
