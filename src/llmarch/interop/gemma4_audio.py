"""Gemma 4 with its audio (`model_type: gemma4`, Gemma4ForConditionalGeneration with an audio_config; transformers'
Gemma4AudioModel and Gemma4MultimodalEmbedder): the USM Conformer encoder (audio/conformer.py, audio kind
'conformer') over each clip's log-mel frames, its output projected to output_proj_dims, then the embedder (an RMSNorm
without gain and a linear map, projector 'rms_linear') into the text model's width, the features at the audio token's
positions (audio/inputs.py), and Gemma 4's text model (gemma4.py's rules under model.language_model.). The audio
token (and the image and video tokens) read as the padding token by the embeddings (placeholder_ids), as Gemma4Model
looks them up. Registered with the
vision tower's reader as one family by gemma4_whole.py."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from . import gemma4
from .activations import hf_activation, read_activation
from .audio_towers import audio_of
from .mapping import Rule
from .multimodal import text_rules

TOWER, EMBED = "model.audio_tower.", "model.embed_audio."
# Gemma4AudioConfig's fields as AudioConfig's, with transformers' defaults for those a config.json leaves out
FIELDS = {"hidden_size": ("width", 1024), "num_hidden_layers": ("n_layers", 12),
          "num_attention_heads": ("n_heads", 8), "hidden_act": ("act", "silu"),
          "subsampling_conv_channels": ("conv_channels", [128, 32]), "conv_kernel_size": ("conv_kernel", 5),
          "residual_weight": ("residual_weight", 0.5), "attention_chunk_size": ("chunk", 12),
          "attention_context_left": ("context_left", 13), "attention_context_right": ("context_right", 0),
          "attention_logit_cap": ("logit_cap", 50.0), "attention_invalid_logits_value": ("masked_logit", -1e9),
          "use_clipped_linears": ("clipped", True), "rms_norm_eps": ("norm_eps", 1e-6),
          "gradient_clipping": ("clip", 1e10), "output_proj_dims": ("output_dims", 1536)}
# each block's parts: transformers' names and ours; the clipped linears (their weight under .linear, four bounds)
# apart from the plain tensors
_CLIPPED = {"feed_forward{n}.ffw_layer_1": "ffn{n}.up", "feed_forward{n}.ffw_layer_2": "ffn{n}.down",
            "self_attn.q_proj": "attn.q_proj", "self_attn.k_proj": "attn.k_proj", "self_attn.v_proj": "attn.v_proj",
            "self_attn.post": "attn.o_proj", "lconv1d.linear_start": "conv.up", "lconv1d.linear_end": "conv.down"}
_PLAIN = {"feed_forward{n}.pre_layer_norm.weight": "ffn{n}.norm.weight",
          "feed_forward{n}.post_layer_norm.weight": "ffn{n}.post_norm.weight",
          "self_attn.relative_k_proj.weight": "attn.rel_proj.weight",
          "self_attn.per_dim_scale": "attn.per_dim_scale", "lconv1d.depthwise_conv1d.weight": "conv.depthwise.weight",
          "lconv1d.pre_layer_norm.weight": "conv.norm.weight", "lconv1d.conv_norm.weight": "conv.conv_norm.weight",
          "norm_pre_attn.weight": "attn_norm.weight", "norm_post_attn.weight": "attn_post_norm.weight",
          "norm_out.weight": "out_norm.weight"}
_BOUNDS = ("input_min", "input_max", "output_min", "output_max")
# the clip bounds' layout, clip_bound, is gemma4_vision.py's (registered before anything is read)


def audio_fields(hf: dict, token: int) -> dict:
    """An audio_config as audio/config.py's fields (the stem reads subsampling_conv_channels[0] mel bins, as
    transformers sizes it)."""
    ours = {mine: hf.get(theirs, default) for theirs, (mine, default) in FIELDS.items()}
    ours["conv_channels"] = list(ours["conv_channels"])
    ours["act"] = read_activation(hf, "gemma4 audio_config", "hidden_act", "silu")
    return dict(ours, kind="conformer", audio_token_id=token, n_mels=ours["conv_channels"][0],
                ffn_hidden=4 * ours["width"], projector="rms_linear", projector_bias=False,
                projector_eps=ours["norm_eps"])


def to_config(hf: dict) -> ModelConfig:
    text = gemma4.multimodal_config(hf)
    if not hf.get("audio_config"):
        return text
    if (hf.get("text_config") or {}).get("pad_token_id", 0) != 0:
        raise LlmarchError("gemma4 with audio reads the audio token's per-layer inputs as the padding token's, row 0; "
                           "this text_config's pad_token_id is not 0")
    token = hf.get("audio_token_id", gemma4.MEDIA_TOKENS["audio_token_id"])
    return text.replace(audio=audio_fields(hf["audio_config"], token), hf_model_type="gemma4",
                        placeholder_ids=gemma4.placeholder_ids(hf, text.vocab_size))


def from_config(cfg: ModelConfig) -> dict:
    a = audio_of(cfg, "gemma4")
    if a.kind != "conformer" or a.projector != "rms_linear" or a.ffn_hidden != 4 * a.width or a.output_dims == 0 \
            or a.n_mels != a.conv_channels[0] or a.projector_eps != a.norm_eps:
        raise LlmarchError("model_type gemma4 needs a conformer audio tower (FFN 4 x width, an output projection, "
                           "n_mels = conv_channels[0]) and an rms_linear projector at the tower's eps")
    text = gemma4.from_config(cfg.replace(audio=None, placeholder_ids=None, hf_model_type="gemma4_text"))
    text.pop("architectures")
    audio = {theirs: getattr(a, mine) for theirs, (mine, _) in FIELDS.items()}
    audio["hidden_act"] = hf_activation(a.act)
    return dict(model_type="gemma4", architectures=["Gemma4ForConditionalGeneration"], text_config=text,
                audio_config=dict(audio, model_type="gemma4_audio", subsampling_conv_channels=list(a.conv_channels)),
                vision_config=None, audio_token_id=a.audio_token_id, tie_word_embeddings=cfg.tie_embeddings)


def tower_rules(cfg: ModelConfig) -> list[Rule]:
    a = audio_of(cfg, "gemma4")
    ours = "audio.tower."
    stem = TOWER + "subsample_conv_projection."
    rules = [Rule.of(f"{stem}layer{n}.{part}.weight", f"{ours}stem.{part}s.{n}.weight") for n in (0, 1)
             for part in ("conv", "norm")]
    rules += [Rule.of(stem + "input_proj_linear.weight", ours + "stem.proj.weight"),
              Rule.of(TOWER + "output_proj.weight", ours + "out.weight"),
              Rule.of(TOWER + "output_proj.bias", ours + "out.bias"),
              Rule.of(EMBED + "embedding_projection.weight", "audio.projector.proj.weight")]
    for i in range(a.n_layers):
        hf, block = f"{TOWER}layers.{i}.", f"{ours}blocks.{i}."
        for n in (1, 2):
            for theirs, mine in _CLIPPED.items():
                theirs, mine = theirs.format(n=n), mine.format(n=n)
                rules.append(Rule.of(f"{hf}{theirs}.linear.weight", f"{block}{mine}.weight"))
                rules += [Rule.of(f"{hf}{theirs}.{b}", f"{block}{mine}.{b}", "clip_bound")
                          for b in (_BOUNDS if a.clipped else ())]
            rules += [Rule.of(hf + theirs.format(n=n), block + mine.format(n=n)) for theirs, mine in _PLAIN.items()]
    return list({r.ours: r for r in rules}.values())  # the parts without a {n} came twice


def more_rules(cfg: ModelConfig) -> list[Rule]:
    return text_rules(gemma4.qkv_rules(cfg)) + (tower_rules(cfg) if cfg.audio is not None else [])

