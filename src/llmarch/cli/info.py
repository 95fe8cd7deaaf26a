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


def add_parsers(sub) -> None:
    p = sub.add_parser("info", help="parameter count, FLOPs and KV-cache size of a model")
    p.add_argument("model", help="preset name, .json/.yaml config, Hugging Face directory or its config.json, "
                                 "llmarch checkpoint or run directory")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: %(default)s)")
    p.add_argument("--dtype", default="bf16", help="element type for KV-cache bytes (default: %(default)s)")
    model_overrides(p)
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> None:
    from ..analysis import model_facts

    cfg = _config(args.model).replace(**collect(args, ModelConfig, only_set=True))
    facts = model_facts(cfg, args.dtype)
    if args.json:
        print(json.dumps(facts))
        return
    layers = f"{cfg.n_layers}+{cfg.n_decoder_layers} (encoder+decoder)" if cfg.is_encoder_decoder else cfg.n_layers
    heads = f", {cfg.n_heads} heads ({cfg.n_kv_heads} kv)" if cfg.attention_layers else ""
    if not heads and MIXERS[cfg.mixer].score_dims(cfg):  # another mixer with heads (latent attention)
        heads = f", {cfg.n_heads} heads"
    ffn = f"ffn {cfg.ffn} {cfg.ffn_hidden}" if cfg.ffn != "none" else "no ffn"
    print(f"{cfg.name}: {layers} layers, d_model {cfg.d_model}{heads}, {ffn}, {cfg.norm} ({cfg.norm_placement}), "
          f"positions {cfg.positions}, vocab {cfg.vocab_size}, context {cfg.context_length}"
          + (f", block {cfg.block}" if cfg.block != "sequential" else "")
          + (f", mixer {_mixers(cfg)}" if len(cfg.attention_layers) < cfg.n_layers else "")
          + (f", {cfg.n_experts} experts (top-{cfg.experts_per_token})" if cfg.n_experts else ""))
    print(f"parameters:               {facts['parameters']:,}")
    if facts["active_parameters"] != facts["parameters"]:
        print(f"active parameters:        {facts['active_parameters']:,} "
              f"({cfg.experts_per_token} of {cfg.n_experts} experts per token)")
    print(f"non-embedding parameters: {facts['non_embedding_parameters']:,}")
    print(f"training FLOPs per token: {facts['flops_per_token']:,}")
    if facts["kv_cache_bytes_per_token"]:
        notes = _notes(cfg, lambda mixer: mixer.cache_note())
        notes = f"{args.dtype}; {notes}" if notes else args.dtype
        print(f"KV-cache bytes per token: {facts['kv_cache_bytes_per_token']:,} ({notes})")
    if facts["state_bytes_per_sequence"]:
        print(f"state bytes per sequence: {facts['state_bytes_per_sequence']:,} "
              f"({_notes(cfg, lambda mixer: mixer.state_note(args.dtype))})")


def _config(model: str) -> ModelConfig:
    from ..interop.hf import hf_model_config, is_hf_config, read_hf_config  # the package registers the families
    from ..presets import PRESETS, resolve
    from ..rundir import CONFIG, resolve_checkpoint

    path = Path(model)
    if model in PRESETS:
        return resolve(model)
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
    from ..models.build import build_model, stacks

    notes = [note(block.seq_mixer) for stack, _ in stacks(build_model(cfg, device="meta")).values()
             for block in stack.blocks]
    return "; ".join(dict.fromkeys(note for note in notes if note))
