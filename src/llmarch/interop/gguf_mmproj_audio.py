"""Qwen2-Audio's and Voxtral's mmproj files (`qwen2a`, `voxtral`) as llama.cpp writes them (convert_hf_to_gguf.py's
conversion/ultravox.py, WhisperEncoderModel and VoxtralWhisperEncoderModel, `--mmproj` of the audio-language
checkpoint) and reads them (tools/mtmd/models/whisper-enc.cpp, clip.cpp): the Whisper encoder of audio/tower.py
(clip.audio.*, a.* tensors: conv1d.1/2 with their biases stored as columns, position_embd of max_source_positions
rows, blocks with q and v biases and no key bias, post_ln) and the family's projector, renamed by the converter as
audio.multi_modal_projector.* (mm.a.fc: Qwen2-Audio's linear with a bias, frames average-pooled in pairs before
post_ln; mm.a.mlp.1/2: Voxtral's MLP without biases, projector.stack_factor frames side by side). clip.cpp's GELU is
the exact (erf) one here, as transformers'. llama.cpp's mtmd cuts audio into 30 s clips of Whisper's log-mel
frames, computed by its own code (mtmd-audio.cpp), llmarch's by WhisperFeatureExtractor's (data/log_mel.py)."""
from __future__ import annotations

from .gguf_archs import Meta

TOKENS = {"qwen2a": "<|AUDIO|>", "voxtral": "[AUDIO]"}  # the families' audio tokens (Qwen2AudioProcessor's, mistral's)
_LAYOUTS = {  # what only the family has (audio/config.py's fields; interop/qwen2_audio.py's and voxtral.py's)
    "qwen2a": dict(pool=2, masked=True, stack=1, projector="linear", projector_bias=True),
    "voxtral": dict(pool=1, masked=False, projector="mlp", projector_bias=False, projector_act="gelu"),
}


def audio(kind: str):
    """The AudioConfig fields of a `kind` file: the tower's from the clip.audio.* metadata, its positions from the
    table's rows, the layout the family's (Voxtral's stack the file's stack_factor)."""

    def fields(meta: Meta) -> dict:
        get = meta.get
        stack = {"stack": get("audio.projector.stack_factor")} if kind == "voxtral" else {}
        return dict(width=get("audio.embedding_length"), n_layers=get("audio.block_count"),
                    n_heads=get("audio.attention.head_count"), ffn_hidden=get("audio.feed_forward_length"),
                    n_mels=get("audio.num_mel_bins"), n_positions=meta.rows("a.position_embd.weight"),
                    norm_eps=float(f"{get('audio.attention.layer_norm_epsilon'):.6g}"),  # float32 as written
                    **_LAYOUTS[kind], **stack)
    return fields


def processor(meta: Meta) -> dict:
    """WhisperFeatureExtractor's preprocessor_config.json (16 kHz, 30 s clips) of the file's mel bins."""
    return dict(feature_extractor_type="WhisperFeatureExtractor", feature_size=meta.get("audio.num_mel_bins"),
                sampling_rate=16000, hop_length=160, n_fft=400, chunk_length=30)


# the converter's names: the projector under audio. (WhisperEncoderModel.filter_tensors), the stem's biases as
# (width, 1) columns (modify_tensors' unsqueeze): (Hugging Face name regex, its name as the converter read it, one
# part taken as it is, its split)
JOINS = ((r"^model\.multi_modal_projector\.", lambda hf, meta: ["audio." + hf.removeprefix("model.")],
          lambda parts: parts[0], lambda t: [t]),)
FIXES = ((r"^a\.conv1d\.\d\.bias$", lambda t: t.squeeze(-1), lambda t: t.unsqueeze(-1)),)
