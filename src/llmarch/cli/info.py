"""`llmarch info`: a model's parameter count, FLOPs per token and decode-state sizes, from its config: a
preset, a config file (ours or a Hugging Face config.json), a Hugging Face directory, an llmarch checkpoint or
a run directory. Only the config is read, never the weights."""
from __future__ import annotations

import json
from pathlib import Path

from ..config import ModelConfig
from ..errors import LlmarchError
from .options import collect, model_overrides
from ..layers.mixer import MIXERS
from ..audio.config import audio_config
from ..vision.config import vision_config
from ..vision.gemma4_config import gemma4_vision_config, is_gemma4
from ..vision.mllama_config import is_mllama, mllama_vision_config
from ..vision.pixtral_config import is_pixtral, pixtral_vision_config
from ..vision.qwen_config import is_qwen, qwen_vision_config


def add_parsers(sub) -> None:
    p = sub.add_parser("info", help="parameter count, FLOPs and KV-cache size of a model")
    p.add_argument("model", help="preset name, .json/.yaml config, Hugging Face directory or its config.json, "
                                 "llmarch checkpoint or run directory")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: %(default)s)")
    p.add_argument("--dtype", default="bf16", help="element type of the KV cache and of floating-point weights "
                                                   "(default: %(default)s)")
    p.add_argument("--quantize", help="weight memory as if quantized with this method (int8, int8-gptq, int4, "
                                      "int4-hqq, int4-gptq); a quantized checkpoint reports its own scheme "
                                      "(default: none)")
    p.add_argument("--group-size", type=int, default=64, help="int4 group size for --quantize (default: %(default)s)")
    model_overrides(p)
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> None:
    from ..analysis import model_facts

    from ..interop.gguf import is_gguf, open_gguf

    reader = open_gguf(args.model) if is_gguf(args.model) else None  # a GGUF file's header, read once
    cfg = _config(args.model, reader).replace(**collect(args, ModelConfig, only_set=True))
    facts = model_facts(cfg, args.dtype)
    scheme = _scheme(args)
    on_kernels = reader is not None and scheme is None and args.dtype == "bf16"
    if on_kernels:  # what the decoding commands load: the file's matrices on the int4/int8 kernels, if they hold them
        from ..interop.gguf_kernels import expected_scheme

        scheme = expected_scheme(args.model)
        on_kernels = scheme is not None
    other = "fp32" if on_kernels else args.dtype  # loading keeps the file's float tensors (norms) in fp32
    facts["weight_bytes"] = weight_memory(cfg, scheme, other)
    facts["bytes_per_parameter"] = facts["weight_bytes"] / facts["parameters"]
    gguf = _gguf_tensors(reader) if reader is not None else None
    if gguf is not None:
        facts.update(gguf)
    if args.json:
        print(json.dumps(facts))
        return
    layers = f"{cfg.n_layers}+{cfg.n_decoder_layers} (encoder+decoder)" if cfg.is_encoder_decoder else cfg.n_layers
    kv = max(MIXERS[cfg.layer_mixer(i)].kv_heads(cfg) for i in range(cfg.n_layers))
    heads = f", {cfg.n_heads} heads ({kv} kv)" if kv else ""
    if not heads and MIXERS[cfg.mixer].score_dims(cfg):  # another mixer with heads (latent attention)
        heads = f", {cfg.n_heads} heads"
    ffn = f"ffn {cfg.ffn} {cfg.ffn_hidden}" if cfg.ffn != "none" else "no ffn"
    print(f"{cfg.name}: {layers} layers, d_model {cfg.d_model}{heads}, {ffn}, {cfg.norm} ({cfg.norm_placement}), "
          f"positions {cfg.positions}, vocab {cfg.vocab_size}, context {cfg.context_length}"
          + (f", block {cfg.block}" if cfg.block != "sequential" else "")
          + (f", mixer {_mixers(cfg)}" if len(cfg.attention_layers) < cfg.n_layers else "")
          + (f", {cfg.n_experts} experts (top-{cfg.experts_per_token})" if cfg.n_experts else ""))
    if is_qwen(cfg.vision):
        q = qwen_vision_config(cfg.vision)
        print(f"vision: {q.n_layers}-layer ViT, width {q.width}, images of any size in {q.patch_size}px patches, "
              f"{q.merge_size}x{q.merge_size} merged into each image token (id {q.image_token_id})"
              + ("" if q.video_token_id is None else f"; videos in {q.temporal_patch_size}-frame patches, each "
                 f"merged group a video token (id {q.video_token_id})"))
    elif is_pixtral(cfg.vision):
        p = pixtral_vision_config(cfg.vision)
        print(f"vision: {p.n_layers}-layer Pixtral ViT, width {p.width}, images of any size in {p.patch_size}px "
              f"patches, {p.merge_size}x{p.merge_size} merged into each image token (id {p.image_token_id})")
    elif is_mllama(cfg.vision):
        m = mllama_vision_config(cfg.vision)
        print(f"vision: {m.n_layers}+{m.n_global_layers}-layer (local+global) ViT, width {m.width}, up to "
              f"{m.max_tiles} tiles of {m.image_size}px in {m.patch_size}px patches, read by the cross-attention "
              f"layers from each image token (id {m.image_token_id}) on")
    elif is_gemma4(cfg.vision):
        g = gemma4_vision_config(cfg.vision)
        print(f"vision: {g.n_layers}-layer Gemma 4 ViT, width {g.width}, images of any aspect ratio in "
              f"{g.patch_size}px patches, {g.pooling}x{g.pooling} pooled into each image token (id {g.image_token_id})")
    elif cfg.vision is not None:
        v = vision_config(cfg.vision)
        per = f"AnyRes tiles ({len(v.grid_pinpoints)} grids), tokens by image size" if v.grid_pinpoints else \
            "NaFlex images of any aspect ratio, tokens by image size" if v.naflex else \
            f"{v.tokens_per_image} tokens per image"
        print(f"vision: {v.n_layers}-layer ViT, width {v.width}, {v.image_size}px in {v.patch_size}px patches, "
              f"{v.projector} projector, " + ("held, never run" if v.held else f"{per} (id {v.image_token_id})"))
    if cfg.audio is not None:
        a = audio_config(cfg.audio)
        print(f"audio: {a.summary()}")
    print(f"parameters:               {facts['parameters']:,}")
    if facts["active_parameters"] != facts["parameters"]:
        print(f"active parameters:        {facts['active_parameters']:,} "
              f"({cfg.experts_per_token} of {cfg.n_experts} experts per token)")
    print(f"non-embedding parameters: {facts['non_embedding_parameters']:,}")
    # a byte-latent model's global transformer runs once a patch, whose mean length the count assumes
    patches = f" (per byte, at a mean patch of {cfg.mean_patch_length:g} bytes: --mean-patch-length)" \
        if cfg.patch_stacks is not None else ""
    print(f"training FLOPs per token: {facts['flops_per_token']:,}{patches}")
    what = args.dtype
    if scheme is not None:
        groups = f", groups of {scheme.group_size}" if scheme.int4 else ""
        mixed = f", {len(scheme.int8_layers)} layers int8" if scheme.int8_layers else ""
        what = f"{scheme.method}{groups}{mixed}, other weights {other}"
        if on_kernels:
            what += ": the file's matrices as the decoding commands hold them"
    print(f"weight memory:            {facts['weight_bytes'] / 2**20:,.1f} MiB, "
          f"{facts['bytes_per_parameter']:.3g} bytes per parameter ({what})")
    if gguf is not None:
        kinds = ", ".join(f"{n} {kind}" for kind, n in gguf["file_tensor_types"].items())
        print(f"in the GGUF file:         {gguf['file_weight_bytes'] / 2**20:,.1f} MiB, "
              f"{8 * gguf['file_weight_bytes'] / facts['parameters']:.3g} bits per parameter ({kinds} tensors)"
              + ("" if on_kernels else "; llmarch dequantizes them on load"))
    decodes = cfg.causal or cfg.is_encoder_decoder  # an encoder (BERT, ModernBERT) keeps no decoding cache
    if facts["kv_cache_bytes_per_token"] and decodes:
        notes = _notes(cfg, lambda mixer: mixer.cache_note())
        notes = f"{args.dtype}; {notes}" if notes else args.dtype
        print(f"KV-cache bytes per token: {facts['kv_cache_bytes_per_token']:,} ({notes})")
    if facts["state_bytes_per_sequence"] and decodes:
        print(f"state bytes per sequence: {facts['state_bytes_per_sequence']:,} "
              f"({_notes(cfg, lambda mixer: mixer.state_note(args.dtype))})")


def _scheme(args):
    """The quantization scheme to count weights under: the checkpoint's own, or --quantize's."""
    from ..presets import PRESETS
    from ..quant.scheme import Scheme, is_quantized_dir
    from ..rundir import resolve_checkpoint

    path = Path(args.model)
    if path.is_dir() and args.model not in PRESETS:
        ckpt = resolve_checkpoint(path)
        if is_quantized_dir(ckpt):
            if args.quantize:
                raise LlmarchError(f"{args.model} is quantized already ({Scheme.load(ckpt).method}); "
                                   "--quantize is for a full-precision model")
            return Scheme.load(ckpt)
    if args.quantize:
        return Scheme(method=args.quantize, group_size=args.group_size)
    return None


def _gguf_tensors(reader) -> dict:
    """A GGUF file's tensor bytes and types as stored (read from its header: no tensor is dequantized)."""
    tensors = reader.tensors
    kinds: dict[str, int] = {}
    for t in tensors:
        kinds[t.tensor_type.name] = kinds.get(t.tensor_type.name, 0) + 1
    return {"file_weight_bytes": int(sum(int(t.n_bytes) for t in tensors)), "file_tensor_types": kinds}


def weight_memory(cfg: ModelConfig, scheme, dtype: str) -> int:
    """Bytes the model's weights take in memory, without building them: the model on the meta device (quantized
    by `scheme` if any); a quantized layer's tensors (packed codes, scales, zeros) at their own widths, every other
    weight at `dtype`. Tied weights count once; rotary tables and masks (buffers not saved) are not weights."""
    from ..analysis.accounting import DTYPE_BYTES
    from ..models.build import empty_model
    from ..quant.apply import QUANTIZED_MODULES, own_weights, quantize

    model = empty_model(cfg)
    if scheme is not None:
        quantize(model, scheme)
    sizes = {}  # by tensor identity: meta tensors have no addresses to tell shared ones by
    for module in model.modules():
        quantized = isinstance(module, QUANTIZED_MODULES)
        for t in own_weights(module).values():
            width = t.element_size() if quantized or not t.is_floating_point() else DTYPE_BYTES[dtype]
            sizes[id(t)] = t.numel() * width
    return sum(sizes.values())


def _config(model: str, reader=None) -> ModelConfig:
    """The config of `model`; reader: the open GGUF file when `model` is one (its metadata is the config)."""
    from ..interop.hf import hf_model_config, is_hf_config, read_hf_config  # the package registers the families
    from ..presets import PRESETS, resolve
    from ..rundir import CONFIG, resolve_checkpoint

    path = Path(model)
    if model in PRESETS:
        return resolve(model)
    if reader is not None:  # the metadata only
        from ..interop.gguf import hf_config

        return hf_model_config(hf_config(reader, path), path)
    if is_hf_config(path):
        return hf_model_config(read_hf_config(path), path / "config.json" if path.is_dir() else path)
    if path.is_dir():  # an llmarch checkpoint, or a run directory whose `latest` names one
        return ModelConfig.load(resolve_checkpoint(path) / CONFIG)
    if path.is_file():
        return resolve(path)
    if path.suffix in (".json", ".yaml", ".yml") or "/" in model:
        raise LlmarchError(f"{model} does not exist")
    return resolve(model)  # names the presets


def _mixers(cfg) -> str:
    """The mixers other than attention (set by `mixer` or by layer types), and the layers attention keeps."""
    attn = cfg.attention_layers
    others = ", ".join(dict.fromkeys(m for i in range(cfg.n_layers) if (m := cfg.layer_mixer(i)) != "attention"))
    return others if not attn else f"{others} (attention in layers {', '.join(map(str, attn))})"


def _notes(cfg, note) -> str:
    """Each distinct note(mixer) of the model's mixers (their states or caches in their own words)."""
    from ..models.build import empty_model, stacks

    notes = [note(block.seq_mixer) for stack, _ in stacks(empty_model(cfg)).values()
             for block in stack.blocks]
    return "; ".join(dict.fromkeys(note for note in notes if note))
