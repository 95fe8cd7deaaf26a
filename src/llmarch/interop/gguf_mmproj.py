"""llama.cpp's vision projector files (`mmproj-*.gguf`, written by its convert_hf_to_gguf.py --mmproj and read by
its mtmd library, tools/mtmd/clip.cpp): a CLIP-style tower and a projector, `clip.*` metadata (clip-impl.h's KEY_*)
and `v.*` / `mm.*` tensors, beside a text model's GGUF file. Read here onto the text model as the vision part of the
Hugging Face family the projector type names (`clip.projector_type`: PROJECTORS), so the model is the one from_hf
builds from that family's checkpoint: the same vision config, modules and rules (their tensor names mapped to
llama.cpp's by the `gguf` package's own table, TensorNameMap for MODEL_ARCH.MMPROJ), no second tower. The text model
keeps its config; the tower's and projector's tensors are read through the family's rules. The image processor's
settings (size, mean, std) come from the metadata as a preprocessor_config.json the tokenizer carries, with the
tokens the family's prompt layout names (vision/prompts.py). An audio projector file (clip.has_audio_encoder:
Qwen2-Audio's, Voxtral's; gguf_mmproj_audio.py) is read the same way as the family's audio tower
(Projector.modality)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field as dataclass_field, replace
from pathlib import Path
from typing import Callable

import torch

from ..errors import LlmarchError, first_and_count
from ..registry import Registry
from .gguf import dequantized, open_gguf, unpermuted
from .gguf_kernels import QuantizeAsRead, file_scheme
from .gguf_archs import Meta, field
from . import gguf_mmproj_audio as audio, gguf_mmproj_internvl as internvl, gguf_mmproj_pixtral as pixtral
from .gguf_mmproj_qwen import JOINS, QWEN3_JOINS, mrope_section, qwen3_vision, qwen_out, qwen_processor, \
    qwen_vision

PROJECTORS: Registry = Registry("mmproj projector type")
TOKEN_IDS = {"vision": "image_token_id", "audio": "audio_token_id"}  # the tower config's field of its token's id
GELU = {True: "gelu_tanh", False: "quick_gelu"}  # clip.use_gelu: ggml_gelu (tanh form) or CLIP's quick GELU


@dataclass(frozen=True)
class Projector:
    """One clip.projector_type: the Hugging Face family it is read as, and what the metadata and text model give."""
    hf_model_type: str
    # the tower's config fields from the clip.* metadata (VisionConfig's, or AudioConfig's for an audio encoder;
    # the token id is added)
    tower: Callable[[Meta], dict]
    image_token: str  # the text token whose positions take the tower's features (its id from the text vocabulary)
    processor: Callable[[Meta], dict]  # preprocessor_config.json but an image's mean and std: its type, sizes
    tokens: dict = dataclass_field(default_factory=dict)  # tokenizer_config.json's tokens the prompt layout names
    config: Callable[[int], dict] = lambda image_token_id: {}  # more text-config fields, from the image token's id
    # (GGUF name regex, GGUF -> Hugging Face values, back): what llama.cpp's converter changed (Gemma's 1 + g gains)
    fixes: tuple = ()
    text_type: str = ""  # the text model's own family, which to_gguf writes (gguf_mmproj_out.py)
    # the clip.* keys the converter writes (its set_gguf_parameters) from the model's ModelConfig, beside
    # has_vision_encoder, projector_type and the image mean and std; None: read only (gguf_mmproj_out.py)
    out: Callable[[object, dict], dict] | None = None
    # (Hugging Face name regex, the names of its parts (llama.cpp's or Hugging Face's; of the name and the file's
    # Meta, None when written), how they join, how the converter splits it): a tensor the converter wrote in pieces
    # (Qwen2-VL's qkv as q, k, v; its Conv3d patch kernel as one Conv2d per frame) or under its own name
    joins: tuple = ()
    text_config: Callable[[object], dict] = lambda reader: {}  # text-config fields from the text model's GGUF file
    # (tensor, token): a tensor of the file that is the text model's embedding row of the token (Pixtral's
    # [IMG_BREAK]): not read, written from the text model
    held: tuple = ()
    permuted_qk: bool = False  # the tower's q and k rows permuted as LLaMA's by the converter (Pixtral's)
    modality: str = "vision"  # the encoder (clip.has_{modality}_encoder, clip.{modality}.*): vision or audio


def _vit(meta: Meta) -> dict:
    """The ViT fields every CLIP-style tower writes (clip.vision.*), its parts from which tensors are there."""
    get = meta.get
    return dict(width=get("vision.embedding_length"), n_layers=get("vision.block_count"),
                n_heads=get("vision.attention.head_count"), ffn_hidden=get("vision.feed_forward_length"),
                act=GELU[bool(field(meta.reader, "clip.use_gelu", False))], image_size=get("vision.image_size"),
                patch_size=get("vision.patch_size"),
                norm_eps=float(f"{get('vision.attention.layer_norm_epsilon'):.6g}"),  # float32 as written
                patch_bias=meta.has("v.patch_embd.bias"), class_token=meta.has("v.class_embd"),
                pre_norm=meta.has("v.pre_ln.weight"), post_norm=meta.has("v.post_ln.weight"))


def vit_out(cfg, processor: dict) -> dict:
    """_vit's keys beyond the sizes every converter writes (gguf_mmproj_out.py), as the CLIP-style towers' write
    them (Gemma3VisionModel's, SmolVLMModel's)."""
    from ..vision.config import vision_config

    v = vision_config(cfg.vision)
    if v.act not in GELU.values():
        raise LlmarchError(f"llama.cpp's CLIP tower uses GELU or quick GELU; this tower's act is {v.act!r}")
    return {"clip.use_gelu": v.act == "gelu_tanh", "clip.vision.attention.layer_norm_epsilon": float(v.norm_eps)}


def _pooled(vision: dict) -> int:
    """Gemma 3's pooling factor: patches per side over features per side."""
    return vision["image_size"] // vision["patch_size"] // round(vision["pool_tokens"] ** 0.5)


def _gemma3(meta: Meta) -> dict:
    """Gemma 3's (clip.cpp build_siglip with the GEMMA3 projector): the patch grid average-pooled by
    projector.scale_factor (llama.cpp's default 4: 64 x 64 patches to 16 x 16 features)."""
    v = _vit(meta)
    side = v["image_size"] // v["patch_size"] // meta.get("vision.projector.scale_factor", 4)
    return dict(v, projector="pool_norm_linear", projector_bias=False, pool_tokens=side * side)


def _square(meta: Meta) -> dict:
    """The size of an image processor that resizes every image to the tower's square (mtmd's fixed-size one)."""
    return {"height": meta.get("vision.image_size"), "width": meta.get("vision.image_size")}


PROJECTORS.register("gemma3")(Projector(
    "gemma3", _gemma3, "<image_soft_token>",
    lambda meta: dict(image_processor_type="Gemma3ImageProcessor", resample=2, size=_square(meta)),
    tokens=dict(boi_token="<start_of_image>", eoi_token="<end_of_image>"),  # mtmd.cpp's img_beg, img_end
    config=lambda token: dict(bidirectional_token=token),  # mtmd decodes an image's tokens non-causally
    # Gemma3VisionModel.modify_tensors adds 1 to the projector's norm gain
    fixes=((r"^mm\.soft_emb_norm\.weight$", lambda t: t - 1, lambda t: t + 1),), text_type="gemma3_text",
    out=lambda cfg, processor: dict(vit_out(cfg, processor),
                                    **{"clip.vision.projector.scale_factor": _pooled(cfg.vision)})))


def _idefics3(meta: Meta) -> dict:
    """Idefics3's and SmolVLM's (clip.cpp build_siglip with the IDEFICS3 projector): a tower of images up to its size,
    positions bucketed (NaViT's), post-normed, the patch grid pixel-shuffled by projector.scale_factor, one matrix."""
    return dict(_vit(meta), position_buckets=True, projector="pixel_shuffle", projector_bias=False,
                shuffle_factor=meta.get("vision.projector.scale_factor", 2))


PROJECTORS.register("idefics3")(Projector(
    "idefics3", _idefics3, "<image>",
    # Idefics3ImageProcessor: the longest edge to preproc_image_size, then tiles of the tower's size and a global
    # image (SmolVLMModel.set_gguf_parameters writes size.longest_edge as preproc_image_size)
    lambda meta: dict(image_processor_type="Idefics3ImageProcessor", resample=1, do_image_splitting=True,
                      size={"longest_edge": meta.get("vision.preproc_image_size", meta.get("vision.image_size"))},
                      max_image_size={"longest_edge": meta.get("vision.image_size")}),
    text_type="llama", out=lambda cfg, processor: dict(
        vit_out(cfg, processor), **{"clip.vision.projector.scale_factor": cfg.vision["shuffle_factor"],
                                    "clip.vision.preproc_image_size": processor["size"]["longest_edge"]})))


for _kind, _family, _windowed in (("qwen2vl_merger", "qwen2_vl", False), ("qwen2.5vl_merger", "qwen2_5_vl", True)):
    PROJECTORS.register(_kind)(Projector(
        _family, qwen_vision(_windowed), "<|image_pad|>", qwen_processor, joins=JOINS, text_config=mrope_section,
        text_type=_family + "_text", out=qwen_out(_windowed)))

PROJECTORS.register("qwen3vl_merger")(Projector(
    "qwen3_vl", qwen3_vision, "<|image_pad|>", qwen_processor, joins=QWEN3_JOINS, text_config=mrope_section,
    text_type="qwen3_vl_text"))

PROJECTORS.register("pixtral")(Projector("mistral3", pixtral.vision, "[IMG]", pixtral.processor, text_type="mistral",
                                         held=pixtral.HELD, permuted_qk=True, out=pixtral.out))


PROJECTORS.register("internvl")(Projector("internvl", internvl.vision, "<IMG_CONTEXT>", internvl.processor,
                                          tokens=internvl.TOKENS, joins=internvl.JOINS, text_type="qwen2",
                                          out=internvl.out))


for _kind, _family in (("qwen2a", "qwen2_audio"), ("voxtral", "voxtral")):
    PROJECTORS.register(_kind)(Projector(_family, audio.audio(_kind), audio.TOKENS[_kind], audio.processor,
                                         joins=audio.JOINS, fixes=audio.FIXES, modality="audio"))


def _projector(meta: Meta) -> Projector:
    kind = field(meta.reader, "clip.vision.projector_type") or field(meta.reader, "clip.projector_type")
    if kind not in PROJECTORS:
        raise LlmarchError(f"{meta.path}: mmproj projector type {kind!r} is not supported; supported: "
                           f"{', '.join(PROJECTORS.names())}")
    return PROJECTORS[kind]


def _clip_meta(path) -> Meta:
    reader = open_gguf(path)
    if field(reader, "general.architecture") != "clip" or not (field(reader, "clip.has_vision_encoder", False) or
                                                                 field(reader, "clip.has_audio_encoder", False)):
        raise LlmarchError(f"{path} is not a vision projector file (general.architecture clip with a vision or "
                           f"audio encoder: llama.cpp's mmproj); it is {field(reader, 'general.architecture')!r}")
    return Meta(reader, "clip", path)


def _token_id(text_path, token: str) -> int:
    """The id of `token` in the text model's GGUF vocabulary."""
    tokens = field(open_gguf(text_path), "tokenizer.ggml.tokens") or []
    if token not in tokens:
        raise LlmarchError(f"{text_path}: the vocabulary has no {token} token, whose positions take the images of "
                           "this projector (is the mmproj for another model?)")
    return tokens.index(token)


class MMProjTensors:
    """The text model's tensors (by the family's Hugging Face names) and the mmproj file's, the interface
    hf.build_from reads: names(), file(name), shape/dtype/read/read_into."""

    def __init__(self, text: dict[str, torch.Tensor], meta: Meta, hf_names: list[str], projector: Projector):
        import gguf

        self.text, self.meta, self.fixes = text, meta, projector.fixes
        self.heads = meta.get("vision.attention.head_count") if projector.permuted_qk else None
        name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, meta.get(f"{projector.modality}.block_count"))
        self.to_gguf, self.joined = {}, {}  # Hugging Face name -> its GGUF tensors' names; -> how they join

        def found(name: str):
            return name if meta.has(name) else next(filter(meta.has, gguf_names(name_map, name)), None)

        for hf in (name for name in hf_names if name not in text):
            join = next((j for j in projector.joins if re.search(j[0], hf)), None)
            parts = [found(part) for part in (join[1](hf, meta) if join else [hf])]
            if all(parts):
                self.to_gguf[hf] = tuple(parts)
                if join:
                    self.joined[hf] = join[2]
        unread = sorted(set(meta.tensors) - {name for parts in self.to_gguf.values() for name in parts})
        unread = [name for name in unread if name not in projector.held[:1]]
        if unread:
            raise LlmarchError(f"{meta.path}: mmproj tensor {first_and_count(unread)} has no place in a "
                               f"{projector.hf_model_type} model")

    def names(self) -> set[str]:
        return set(self.text) | set(self.to_gguf)

    def file(self, name: str):
        return self, name

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self.text:
            return tuple(self.text[name].shape)
        if name in self.joined or any(re.search(p, g) for p, _, _ in self.fixes for g in self.to_gguf[name]):
            return tuple(self.read(name).shape)
        return tuple(int(n) for n in reversed(self.meta.tensors[self.to_gguf[name][0]].shape))

    def dtype(self, name: str) -> torch.dtype:
        return self.text[name].dtype if name in self.text else torch.float32

    def read(self, name: str) -> torch.Tensor:
        if name in self.text:
            return self.text[name]
        parts = [self._part(gguf_name) for gguf_name in self.to_gguf[name]]
        return self.joined[name](parts) if name in self.joined else parts[0]

    def _part(self, gguf_name: str) -> torch.Tensor:
        w = dequantized(self.meta.tensors[gguf_name], self.meta.path)
        for pattern, fix, _ in self.fixes:
            if re.search(pattern, gguf_name):
                w = fix(w)
        if self.heads and re.search(r"\.attn_[qk]\.(weight|bias)$", gguf_name):
            w = unpermuted(w, self.heads)
        return w

    def read_into(self, name: str, out: torch.Tensor) -> None:
        out.copy_(self.read(name))


def gguf_names(name_map, hf: str):
    """llama.cpp's names for a Hugging Face tensor name of transformers 5's layout (model.vision_tower.*), tried as
    the converter reads the published layouts (vision_tower.vision_model.*; Gemma 3's mm_input_projection_weight)."""
    bare = hf.removeprefix("model.")
    for name in (hf, bare, bare.replace("vision_tower.", "vision_tower.vision_model.", 1)):
        name = re.sub(r"_weight$", ".weight", name)
        if (found := name_map.get_name(name, try_suffixes=(".weight", ".bias"))) is not None:
            yield found


def with_mmproj(text_model, text_path, mmproj_path, device=None, kernels: bool = False):
    """The text model read from text_path with the tower and projector of mmproj_path: a model of the projector's
    Hugging Face family (its config the text model's with `vision` added). kernels: the text model's matrices,
    where the file's types allow, on llmarch's int4/int8 kernels as from_gguf_kernels puts them (the dequantized
    values give the file's codes back: gguf_kernels.file_codes), the tower and projector (llama.cpp's F32/F16) in
    float."""
    from .hf import FAMILIES, build_from
    from .mapping import expand, export_state
    from ..vision.config import check_vision

    meta = _clip_meta(mmproj_path)
    projector = _projector(meta)
    token = _token_id(text_path, projector.image_token)
    text_cfg = text_model.config
    tower = {projector.modality: dict(projector.tower(meta), **{TOKEN_IDS[projector.modality]: token})}
    cfg = text_cfg.replace(**tower, hf_model_type=projector.hf_model_type, **projector.config(token),
                           **projector.text_config(open_gguf(text_path)))
    width = meta.get(f"{projector.modality}.projection_dim", None)
    if width is not None and width != cfg.d_model:
        raise LlmarchError(f"{mmproj_path} projects {'images' if projector.modality == 'vision' else 'audio'} to "
                           f"width {width}; the text model {text_path} is {cfg.d_model} wide (the mmproj is for "
                           "another model)")
    check_vision(cfg)
    family = FAMILIES[cfg.hf_model_type]
    rules = family.rules_for(cfg)
    text = export_state(text_model.state_dict(), rules, cfg)
    hf_names = [name for rule in expand(rules, cfg) for name in rule.hf]
    scheme = file_scheme(open_gguf(text_path)) if kernels else None
    take = None if scheme is None else QuantizeAsRead(scheme, text_path)
    model = build_from(cfg, family, MMProjTensors(text, meta, hf_names, projector), Path(mmproj_path), None, device,
                       None if take is None else lambda m, name, t: not name.startswith("vision.") and take(m, name, t))
    if take is not None:
        model.quantization = replace(scheme, int8_layers=tuple(take.int8_layers)) if take.int8_layers else scheme
    return model


def mmproj_side_files(mmproj_path, side_files: dict[str, bytes]) -> dict[str, bytes]:
    """A GGUF tokenizer's side files with the image processor the mmproj describes (preprocessor_config.json: its
    image size, mean and std) and the tokens its prompt layout names (in tokenizer_config.json)."""
    meta = _clip_meta(mmproj_path)
    projector = _projector(meta)
    processor = projector.processor(meta)
    if projector.modality == "vision":
        processor.update(image_mean=[float(x) for x in meta.get("vision.image_mean")],
                         image_std=[float(x) for x in meta.get("vision.image_std")])
    config = json.loads(side_files.get("tokenizer_config.json", b"{}"))
    return {**side_files, "preprocessor_config.json": json.dumps(processor).encode(),
            "tokenizer_config.json": json.dumps({**config, **projector.tokens}).encode()}
