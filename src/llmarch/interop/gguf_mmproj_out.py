"""A vision-language model's llama.cpp files: its text model alone (which to_gguf writes as the text family's file)
and its vision projector file (mmproj, read by gguf_mmproj.py and by llama.cpp's mtmd): the clip.* metadata as
llama.cpp's convert_hf_to_gguf.py --mmproj writes it (MmprojModel.set_gguf_parameters and the projector's class,
Gemma3VisionModel), the tower's and projector's tensors through the family's rules under the `gguf` package's names
(TensorNameMap for MODEL_ARCH.MMPROJ), in F32, with the converter's changes (gguf_mmproj.Projector.fixes)."""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import LlmarchError
from .gguf_mmproj import GELU, PROJECTORS, Projector, gguf_names
from .gguf_writer import write_out


def projector_of(cfg) -> tuple[str, Projector]:
    """The mmproj projector type a model of `cfg` is written as (PROJECTORS' entry of its family)."""
    kinds = [kind for kind in PROJECTORS if PROJECTORS[kind].hf_model_type == cfg.hf_model_type]
    if cfg.vision is None or not kinds:
        raise LlmarchError(f"an mmproj file is written for a vision-language model of family "
                           f"{', '.join(PROJECTORS[k].hf_model_type for k in PROJECTORS)}; this model is "
                           f"{cfg.hf_model_type!r}{'' if cfg.vision is None else ' with images'}")
    if not PROJECTORS[kinds[0]].written:  # not a CLIP-style tower (Qwen2-VL's split tensors, Pixtral's): read only
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


def to_mmproj(model, path: str | Path, side_files: dict[str, bytes]) -> None:
    """Write the model's tower and projector as an F32 mmproj file at `path`; side_files: its tokenizer's (the
    image processor's preprocessor_config.json gives the mean and std)."""
    import gguf

    from ..vision.config import vision_config
    from ..vision.preprocess import image_processor_config, processor_for
    from .hf import FAMILIES
    from .mapping import export_state

    cfg = model.config
    kind, projector = projector_of(cfg)
    v = vision_config(cfg.vision)
    if v.act not in GELU.values():
        raise LlmarchError(f"llama.cpp's CLIP tower uses GELU or quick GELU; this tower's act is {v.act!r}")
    mean, std = processor_for(image_processor_config(side_files, "the tokenizer")).mean_std
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.MMPROJ, v.n_layers)
    tensors = {}
    for hf, t in export_state(model.state_dict(), FAMILIES[cfg.hf_model_type].more_rules(cfg), cfg).items():
        name = next(gguf_names(name_map, hf), None)
        if name is None:
            raise LlmarchError(f"llama.cpp's mmproj has no tensor for {hf}")
        for pattern, _, fix in projector.fixes:
            t = fix(t) if re.search(pattern, name) else t
        tensors[name] = t.detach().float().contiguous().numpy()
    w = gguf.GGUFWriter(str(path), "clip")
    w.add_string("general.type", "mmproj")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_string("clip.projector_type", kind)
    w.add_bool("clip.use_gelu", v.act == "gelu_tanh")
    vision = {"projection_dim": cfg.d_model, "image_size": v.image_size, "patch_size": v.patch_size,
              "embedding_length": v.width, "feed_forward_length": v.ffn_hidden, "block_count": v.n_layers,
              "attention.head_count": v.n_heads, **projector.metadata(v)}
    for key, value in vision.items():
        w.add_uint32(f"clip.vision.{key}", value)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", v.norm_eps)
    w.add_array("clip.vision.image_mean", list(mean))
    w.add_array("clip.vision.image_std", list(std))
    write_out(w, tensors)
