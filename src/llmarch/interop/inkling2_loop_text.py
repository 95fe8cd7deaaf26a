"""Thinking Machines' Inkling 2 Loop, its text model (`model_type: inkling2_loop_text`, transformers'
Inkling2LoopForCausalLM; also read from the multimodal `inkling2_loop`, whose vision tower is not read): Inkling 2
(inkling2_text.py, whose parts and names it keeps) with its middle layers looped (recurrence 'loop' with
loop_message_rank; layers/recurrence.py, layers/loop_messages.py):
- layers loop_layer_index_start .. loop_layer_index_end - 1 (loop_prelude, loop_coda; both at block boundaries of
  the attention residuals) run loop_num_passes times (loop_count), each pass with its own KV cache and convolution
  histories (transformers' cache_offset: an invocation's own decode state), each restarting from the stack of block
  sums the earlier layers left;
- in the passes after the first, looped layer l reads four messages retrieved from the previous pass's block sums by
  learned queries (`message_input.query` (L, 4, C): the checkpoint's middle_cycle_cross_pass_queries, the queries' and
  FFN's of each layer, and middle_cycle_cross_pass_kv_queries, the keys' and values'), mixed into its queries',
  keys', values' and FFN's inputs by gates of rank loop_gate_rank (`controllers.{attn,k,v,mlp}`: down_weight,
  forget_weight, gain_weight); its sliding layers then project queries, keys and values from three inputs too."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from . import inkling2_text as ink
from .hf import FAMILIES, Family
from .mapping import JOINS, Rule

_GATES = {"attn": "q", "k": "k", "v": "v", "mlp": "mlp"}  # the checkpoint's controllers -> our message_gates
_WEIGHTS = {"down_weight": "down", "forget_weight": "forget", "gain_weight": "gain"}


def _join_queries(parts: list[torch.Tensor], cfg) -> torch.Tensor:
    """middle_cycle_cross_pass_queries (2L, C), [query, mlp] of each looped layer, and ..._kv_queries (2L, C),
    [key, value] -> (L, 4, C): query, key, value, mlp (transformers' Inkling2LoopMergeMessageQueries)."""
    qm, kv = parts[0].unflatten(0, (-1, 2)), parts[1].unflatten(0, (-1, 2))
    return torch.cat([qm[:, :1], kv, qm[:, 1:]], dim=1)


def _split_queries(t: torch.Tensor, cfg) -> list[torch.Tensor]:
    return [t[:, [0, 3]].flatten(0, 1), t[:, 1:3].flatten(0, 1)]


JOINS["inkling2_loop_queries"] = (_join_queries, _split_queries)
_Q = "model.llm.middle_cycle_cross_pass_"
RULES = [*ink.RULES, Rule.of((_Q + "queries", _Q + "kv_queries"), "recurrence.messages.query", "inkling2_loop_queries")]


def _layer_rules(cfg: ModelConfig) -> list[Rule]:
    """Inkling 2's, and the message gates of the looped layers."""
    out = ink._layer_rules(cfg)
    for i in range(cfg.loop_prelude, cfg.n_layers - cfg.loop_coda):
        for theirs, ours in _GATES.items():
            out += [Rule.of(f"model.llm.layers.{i}.controllers.{theirs}.{w}",
                            f"blocks.{i}.message_gates.{ours}.{o}.weight") for w, o in _WEIGHTS.items()]
    return out


def to_config(hf: dict) -> ModelConfig:
    loop = hf.get("loop_config") or {}  # the original config's names, which transformers reads too
    start, end = loop.get("core_start", hf.get("loop_layer_index_start", 6)), loop.get("core_end", hf.get(
        "loop_layer_index_end", 18))
    passes, rank = loop.get("num_passes", hf.get("loop_num_passes", 3)), loop.get("gate_rank", hf.get(
        "loop_gate_rank", 64))
    n, block = hf["num_hidden_layers"], hf.get("n_layers_per_attn_res_block", 6)
    if not 0 < start < end <= n or start % block or end % block or passes < 1:
        raise LlmarchError(f"inkling2_loop_text: looped layers {start}..{end - 1} of {n} must start after layer 0 and "
                           f"start and end at multiples of n_layers_per_attn_res_block ({block}), with "
                           f"loop_num_passes >= 1 (got {passes})")
    cfg = ink.to_config({**hf, "model_type": "inkling2_text"})
    return cfg.replace(hf_model_type=hf["model_type"], recurrence="loop", loop_prelude=start, loop_coda=n - end,
                       loop_count=passes, loop_message_rank=rank,
                       name=hf.get("_name_or_path") or hf["model_type"])


def _needs(cfg: ModelConfig) -> str | None:
    if cfg.recurrence != "loop" or not cfg.loop_message_rank:
        return "recurrence 'loop' with loop_message_rank (Inkling 2 Loop's messages between passes)"
    return ink.text_needs(cfg)


def from_config(cfg: ModelConfig) -> dict:
    return {**ink.from_config(cfg), "model_type": "inkling2_loop_text", "architectures": ["Inkling2LoopForCausalLM"],
            "loop_layer_index_start": cfg.loop_prelude, "loop_layer_index_end": cfg.n_layers - cfg.loop_coda,
            "loop_num_passes": cfg.loop_count, "loop_gate_rank": cfg.loop_message_rank}


def wrapper_config(hf: dict) -> ModelConfig:
    """The multimodal `inkling2_loop`: its text_config, read as inkling2_loop_text."""
    return to_config({**(hf.get("text_config") or {}), "model_type": "inkling2_loop_text",
                      "_name_or_path": hf.get("_name_or_path"), "quantization_config": hf.get("quantization_config")})


def _wrapper_export(cfg: ModelConfig) -> dict:
    raise LlmarchError("llmarch holds inkling2_loop's text model only; export it with "
                       "hf_model_type='inkling2_loop_text'")


FAMILIES.register("inkling2_loop_text")(Family(RULES, to_config, from_config, stacked_experts=ink.STACKED,
                                               needs=_needs, more_rules=_layer_rules))
FAMILIES.register("inkling2_loop")(Family(RULES, wrapper_config, _wrapper_export, (r"^model\.visual\.",),
                                          stacked_experts=ink.STACKED, needs=_needs, more_rules=_layer_rules))
