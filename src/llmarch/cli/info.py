"""`llmarch info`: a model's parameter count, FLOPs per token and decode-state sizes, from its config."""
from __future__ import annotations

import json

from ..layers.mixer import MIXERS
from .options import model_config, model_overrides


def add_parsers(sub) -> None:
    p = sub.add_parser("info", help="parameter count, FLOPs and KV-cache size of a model")
    p.add_argument("model", help="preset name or .json/.yaml config")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: %(default)s)")
    p.add_argument("--dtype", default="bf16", help="element type for KV-cache bytes (default: %(default)s)")
    model_overrides(p)
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> None:
    from ..analysis import model_facts

    cfg = model_config(args)
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
          + (f", mixer {_mixers(cfg)}" if cfg.mixer != "attention" else "")
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


def _mixers(cfg) -> str:
    attn = cfg.attention_layers
    if not attn:
        return cfg.mixer
    return f"{cfg.mixer} (attention in layers {', '.join(map(str, attn))})"


def _notes(cfg, note) -> str:
    """Each distinct note(mixer) of the model's mixers (their states or caches in their own words)."""
    from ..models.build import build_model, stacks

    notes = [note(block.seq_mixer) for stack, _ in stacks(build_model(cfg, device="meta")).values()
             for block in stack.blocks]
    return "; ".join(dict.fromkeys(note for note in notes if note))
