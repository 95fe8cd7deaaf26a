"""A vision-language model's llama.cpp files: its text model alone (which to_gguf writes as the text family's file)
and its vision projector file (mmproj, read by gguf_mmproj.py and by llama.cpp's mtmd): the clip.* metadata as
llama.cpp's convert_hf_to_gguf.py --mmproj writes it (MmprojModel.set_gguf_parameters and the projector's class:
Projector.out), the tower's and projector's tensors through the family's rules under the `gguf` package's names
(TensorNameMap for MODEL_ARCH.MMPROJ), in F32, with the converter's changes redone (Projector.fixes; joins split
again, as Qwen2-VL's qkv into q, k, v; Pixtral's q and k rows permuted) and the text-model rows it copies in
(Projector.held: Pixtral's [IMG_BREAK])."""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import LlmarchError
from .gguf_mmproj import PROJECTORS, Projector, gguf_names
from .gguf_writer import permuted, write_out


def projector_of(cfg) -> tuple[str, Projector]:
    """The mmproj projector type a model of `cfg` is written as (PROJECTORS' entry of its family)."""
    kinds = [kind for kind in PROJECTORS if PROJECTORS[kind].hf_model_type == cfg.hf_model_type]
    if cfg.vision is None or not kinds:
        raise LlmarchError(f"an mmproj file is written for a vision-language model of family "
                           f"{', '.join(PROJECTORS[k].hf_model_type for k in PROJECTORS)}; this model is "
                           f"{cfg.hf_model_type!r}{'' if cfg.vision is None else ' with images'}")
    if PROJECTORS[kinds[0]].out is None:
        raise LlmarchError(f"llmarch reads mmproj files of projector type {kinds[0]!r} but does not write them")
    return kinds[0], PROJECTORS[kinds[0]]


def text_model(model):
    """The model's text part alone, as its own family (Gemma 3's gemma3_text): the weights shared, not copied."""
    from ..checkpoint import assemble
    from ..models.build import empty_model

    _, projector = projector_of(model.config)
    cfg = model.config.replace(vision=None, hf_model_type=projector.text_type,
                               **{k: None for k in projector.config(0)})
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("vision.")}
    return assemble(empty_model(cfg), state, None).eval()


def _gguf_name(name_map, hf: str) -> str:
    """llama.cpp's name of a Hugging Face tensor (or a part of one a join names as llama.cpp's: v.*, mm.*)."""
    name = next(gguf_names(name_map, hf), None) or (hf if re.match(r"(v|mm)\.", hf) else None)
    if name is None:
        raise LlmarchError(f"llama.cpp's mmproj has no tensor for {hf}")
    return name


def mmproj_tensors(model, projector: Projector, n_layers: int, n_heads: int) -> dict:
    """The tower's and projector's tensors by llama.cpp's names, as the converter stores them (float32 numpy)."""
    import gguf

    from .hf import FAMILIES
    from .mapping import export_state

    cfg = model.config
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, n_layers)
    tensors = {}
    vision = {k: v for k, v in model.state_dict().items() if k.startswith("vision.")}
    for hf, t in export_state(vision, FAMILIES[cfg.hf_model_type].rules_for(cfg), cfg).items():
        join = next((j for j in projector.joins if re.search(j[0], hf)), None)
        for part, value in zip(*((join[1](hf, None), join[3](t)) if join else ([hf], [t]))):
            name = _gguf_name(name_map, part)
            for pattern, _, fix in projector.fixes:
                value = fix(value) if re.search(pattern, name) else value
            if projector.permuted_qk and re.search(r"\.attn_[qk]\.(weight|bias)$", name):
                value = permuted(value, n_heads)
            tensors[name] = value.detach().float().contiguous().numpy()
    return tensors


def _held(model, projector: Projector, tokenizer) -> dict:
    """The text model's embedding rows the converter copies into the mmproj (Projector.held)."""
    if not projector.held:
        return {}
    name, token = projector.held
    ids = tokenizer.encode(token)
    if not ids or tokenizer.token_text(ids[-1]) != token:
        raise LlmarchError(f"the tokenizer has no {token} token, whose embedding a {projector.hf_model_type} mmproj "
                           "holds")
    return {name: model.embed.weight[ids[-1]].detach().float().contiguous().numpy()}


def _add(w, key: str, value) -> None:
    """One metadata key, of the GGUF type the converter's GGUFWriter.add_* gives a value of its Python type."""
    if isinstance(value, bool):
        w.add_bool(key, value)
    elif isinstance(value, int):
        w.add_uint32(key, value)
    elif isinstance(value, float):
        w.add_float32(key, value)
    elif isinstance(value, str):
        w.add_string(key, value)
    else:
        w.add_array(key, list(value))


def _mean_std(processor: dict) -> tuple[list[float], list[float]]:
    """The image processor's normalization (the converter reads preprocessor_config.json's), its class's defaults
    where the config leaves them out."""
    from ..vision.preprocess import processor_for

    if {"image_mean", "image_std"} <= set(processor):
        pair = processor["image_mean"], processor["image_std"]
    elif (pair := getattr(processor_for(processor), "mean_std", None)) is None:
        raise LlmarchError("the tokenizer's preprocessor_config.json gives no image_mean and image_std, which an "
                           "mmproj file holds")
    return tuple([float(x) for x in (m if isinstance(m, (list, tuple)) else [m] * 3)] for m in pair)


def to_mmproj(model, path: str | Path, tokenizer) -> None:
    """Write the model's tower and projector as an F32 mmproj file at `path`; tokenizer: its own (the image
    processor of its side files gives the mean, std and the projector's preprocessing keys; Pixtral's [IMG_BREAK]
    its id)."""
    import gguf

    from ..vision.preprocess import image_processor_config
    from ..vision.prompt_parts import vision_of

    cfg = model.config
    kind, projector = projector_of(cfg)
    v = vision_of(cfg.vision)
    processor = image_processor_config(tokenizer.side_files, "the tokenizer")
    mean, std = _mean_std(processor)
    sizes = dict(projection_dim=cfg.d_model, image_size=getattr(v, "image_size", 0), patch_size=v.patch_size,
                 embedding_length=v.width, feed_forward_length=v.ffn_hidden, block_count=v.n_layers,
                 **{"attention.head_count": v.n_heads})
    keys = {"general.type": "mmproj", "clip.has_vision_encoder": True, "clip.projector_type": kind,
            **{f"clip.vision.{k}": int(n) for k, n in sizes.items()}, **projector.out(cfg, processor),
            "clip.vision.image_mean": mean, "clip.vision.image_std": std}
    tensors = {**mmproj_tensors(model, projector, v.n_layers, v.n_heads), **_held(model, projector, tokenizer)}
    w = gguf.GGUFWriter(str(path), "clip")
    for key, value in keys.items():
        _add(w, key, value)
    write_out(w, tensors)
