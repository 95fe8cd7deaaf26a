"""Qwen2-VL's and Qwen2.5-VL's mmproj files (`qwen2vl_merger`, `qwen2.5vl_merger`) as llama.cpp writes them
(convert_hf_to_gguf.py's conversion/qwenvl.py, Qwen2VLVisionModel) and reads them (tools/mtmd/models/qwen2vl.cpp,
clip.cpp): the tower of vision/qwen_tower.py with its qkv split into q, k, v and its Conv3d patch kernel into one Conv2d
per frame (v.patch_embd.weight, .weight.1), read back joined; the merger as mm.0, mm.2; Qwen2.5-VL's full-attention
blocks as n_wa_pattern (each pattern-th block), its window llama.cpp's 112 pixels where the file names none; the
text model's M-RoPE sections from its own file (qwen2vl's rope.dimension_sections). Images as clip.cpp takes them:
any size, rounded to whole merged patches, between 8 and 4096 merged tokens (set_limit_image_tokens)."""
from __future__ import annotations

import torch

from ..errors import LlmarchError
from ..vision.qwen_config import TOWER, qwen_vision_config
from .gguf_archs import Meta, field

MIN_TOKENS, MAX_TOKENS = 8, 4096  # clip.cpp's set_limit_image_tokens for Qwen2(.5)-VL
WINDOW = 112  # clip.cpp's attn_window_size where clip.vision.window_size is absent (Qwen2.5-VL's window_size)
IMAGE_SIZE = 560  # the image size Qwen2VLVisionModel writes where the vision config names none


def _rows(meta: Meta, name: str) -> int:
    return int(meta.tensors[name].shape[-1])


def qwen_vision(windowed: bool):
    """The tower's fields: Qwen2-VL's LayerNorm and QuickGELU MLP, or (windowed) Qwen2.5-VL's RMSNorm, SwiGLU and
    windows. Widths from the tensors (the converter writes Qwen2-VL's merger width as feed_forward_length)."""

    def vision(meta: Meta) -> dict:
        get, n_layers = meta.get, meta.get("vision.block_count")
        fields = dict(tower=TOWER, width=get("vision.embedding_length"), n_layers=n_layers,
                      n_heads=get("vision.attention.head_count"), ffn_hidden=_rows(meta, "v.blk.0.ffn_up.weight"),
                      out_width=_rows(meta, "mm.2.weight"), ffn="swiglu" if windowed else "quick_gelu",
                      norm="rmsnorm" if windowed else "layernorm", patch_size=get("vision.patch_size"),
                      merge_size=get("vision.spatial_merge_size", 2))
        if windowed:
            pattern = get("vision.n_wa_pattern")
            fields.update(window_size=get("vision.window_size", WINDOW),
                          full_layers=[i for i in range(n_layers) if (i + 1) % pattern == 0])
        return fields
    return vision


def qwen_out(windowed: bool):
    """The keys Qwen2VLVisionModel.set_gguf_parameters writes beyond the sizes: Qwen2-VL's merger width as
    feed_forward_length, Qwen2.5-VL's SiLU and n_wa_pattern (its full-attention blocks evenly spaced); the image size
    its default (clip.cpp reads none for these types) and the blocks' norm eps transformers' fixed 1e-6."""

    def out(cfg, processor: dict) -> dict:
        v = qwen_vision_config(cfg.vision)
        keys = {"clip.vision.image_size": IMAGE_SIZE, "clip.vision.attention.layer_norm_epsilon": float(v.norm_eps)}
        if not windowed:
            return {**keys, "clip.vision.feed_forward_length": v.out_width}
        pattern = v.full_layers[0] + 1 if v.full_layers else 0
        if v.full_layers != list(range(pattern - 1, v.n_layers, pattern)) or v.window_size != WINDOW:
            raise LlmarchError(f"llama.cpp's qwen2.5vl_merger takes full-attention blocks evenly spaced, each "
                               f"n_wa_pattern-th, and windows of {WINDOW} pixels; this tower's are {v.full_layers}, "
                               f"{v.window_size}")
        return {**keys, "clip.use_silu": True, "clip.vision.n_wa_pattern": pattern}
    return out


def qwen_processor(meta: Meta) -> dict:
    """Qwen2VLImageProcessor with clip.cpp's bounds on merged tokens (bicubic, as clip.cpp resizes)."""
    side = meta.get("vision.patch_size") * meta.get("vision.spatial_merge_size", 2)
    return dict(image_processor_type="Qwen2VLImageProcessor", resample=3, patch_size=meta.get("vision.patch_size"),
                merge_size=meta.get("vision.spatial_merge_size", 2), temporal_patch_size=2,
                min_pixels=MIN_TOKENS * side * side, max_pixels=MAX_TOKENS * side * side)


def mrope_section(reader) -> dict:
    """The text model's M-RoPE sections (its file's rope.dimension_sections, the first three)."""
    arch = field(reader, "general.architecture")
    sections = field(reader, f"{arch}.rope.dimension_sections")
    if sections is None:
        raise LlmarchError(f"a Qwen-VL projector needs a text model with M-RoPE (a qwen2vl or qwen3vl GGUF file); "
                           f"this text model is {arch!r}, without rope.dimension_sections")
    # Qwen3-VL's sections interleaved (llama.cpp's IMROPE for its qwen3vl architectures), Qwen2-VL's in runs
    return dict(mrope_section=[int(s) for s in list(sections)[:3]], mrope_interleaved=arch.startswith("qwen3vl"))


# the converter's splits (Qwen2VLVisionModel.modify_tensors), joined back: (Hugging Face name regex, its parts'
# names (of the name and the file's metadata), how they join, how the converter splits it)
PATCH = (r"patch_embed\.proj\.weight$", lambda hf, meta: ["v.patch_embd.weight", "v.patch_embd.weight.1"],
         lambda frames: torch.stack(frames, dim=2), lambda kernel: kernel.unbind(2))
JOINS = ((r"\.attn\.qkv\.(weight|bias)$", lambda hf, meta: [hf.replace(".qkv.", f".{p}.") for p in "qkv"],
          lambda parts: torch.cat(parts), lambda qkv: qkv.chunk(3)), PATCH)


def _deepstack_layers(meta: Meta) -> list[int]:
    return [i for i, on in enumerate(meta.get("vision.is_deepstack_layers", [])) if on]


def qwen3_vision(meta: Meta) -> dict:
    """Qwen3-VL's tower (Qwen3VLVisionModel's file): LayerNorms and a tanh-GELU MLP with biases (the file's
    layer_norm_epsilon is the text model's, which the tower does not use: transformers' 1e-6), a patch bias, a
    learned square of grid positions (v.position_embd's rows), DeepStack mergers after the blocks
    is_deepstack_layers flags."""
    get = meta.get
    return dict(tower=TOWER, width=get("vision.embedding_length"), n_layers=get("vision.block_count"),
                n_heads=get("vision.attention.head_count"), ffn_hidden=_rows(meta, "v.blk.0.ffn_up.weight"),
                out_width=_rows(meta, "mm.2.weight"), ffn="gelu_tanh", norm="layernorm",
                patch_size=get("vision.patch_size"), merge_size=get("vision.spatial_merge_size", 2), patch_bias=True,
                grid_positions=int(meta.tensors["v.position_embd.weight"].shape[-1]),
                deepstack_layers=_deepstack_layers(meta))


def _qwen3_name(hf: str, meta: Meta) -> list[str]:
    """The converter's own names of Qwen3-VL's mergers (Qwen3VLVisionModel.modify_tensors): the merger's norm as
    v.post_ln, its fc1 and fc2 as mm.0 and mm.2; the k-th DeepStack merger under the index of its block."""
    part, w = hf.rsplit(".", 2)[-2:]
    fc = {"norm": "norm", "linear_fc1": "fc1", "linear_fc2": "fc2"}[part]
    if ".deepstack_merger_list." in hf:
        k = int(hf.split(".deepstack_merger_list.")[1].split(".")[0])
        return [f"v.deepstack.{_deepstack_layers(meta)[k]}.{fc}.{w}"]
    return [{"norm": "v.post_ln", "fc1": "mm.0", "fc2": "mm.2"}[fc] + f".{w}"]


QWEN3_JOINS = (PATCH, (r"\.(merger|deepstack_merger_list\.\d+)\.(norm|linear_fc[12])\.(weight|bias)$", _qwen3_name,
                       lambda parts: parts[0], lambda t: [t]))
