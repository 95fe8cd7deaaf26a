"""Sequence mixers side by side (Falcon-H1: TII 2025, "Falcon-H1: A Family of Hybrid-Head Language Models", §2;
Hymba's hybrid heads, Dong et al. 2024, have the same shape): every part reads the same normed input and their
outputs are summed into the residual stream,

    y = sum_j out_j * M_j(in_j * x),

the mixers M_j named by `parallel_mixers` (attention and Mamba-2 by default), in_j and out_j constants
(`parallel_in_multipliers`, `parallel_out_multipliers`: Falcon-H1's muP attention_in/out and ssm_in/out
multipliers; Yang et al. 2022, "Tensor Programs V"), kept out of the weights so that training updates the weights
as the checkpoint's authors did. Each part is a mixer as any other, held under its registry name
(blocks.{i}.mixer.attention.qkv_proj, blocks.{i}.mixer.mamba2.in_proj), and its decode state is the parts' states
together (PartStates): code outside the mixer never learns that there are several."""
from __future__ import annotations

import torch

from ..errors import LlmarchError
from .mixer import MIXERS, Mixer

DEFAULT_PARTS = ("attention", "mamba2")


def parts_of(cfg) -> list[str]:
    return list(cfg.parallel_mixers or DEFAULT_PARTS)


class PartStates:
    """The decode states of a parallel mixer's parts, one per part, moved together (mixer.py's state protocol)."""

    def __init__(self, parts: list):
        self.parts = parts

    @property
    def by_slot(self) -> bool:  # rewinding by slot only where every part can (a recurrent state cannot)
        return all(getattr(s, "by_slot", False) for s in self.parts)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.parts)

    def reorder(self, rows: torch.Tensor) -> None:
        for s in self.parts:
            s.reorder(rows)

    def put_row(self, row: int, src: "PartStates", start: int, length: int) -> None:
        for s, one in zip(self.parts, src.parts):
            s.put_row(row, one, start, length)

    def rows(self, n: int) -> "PartStates":
        return PartStates([s.rows(n) for s in self.parts])

    def shift(self, n: int) -> None:
        for s in self.parts:
            s.shift(n)


def _multipliers(cfg, name: str, n: int) -> list[float]:
    values = getattr(cfg, name)
    if values is None:
        return [1.0] * n
    if len(values) != n or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                                   for v in values):
        raise LlmarchError(f"{name} must be {n} positive numbers, one per part of parallel_mixers, got {values!r}")
    return [float(v) for v in values]


class Composite(Mixer):
    """A mixer made of mixers, whose decode state is theirs together (PartStates): the model sets the whole state,
    and each part held (`state_parts`, in the order of the state's parts) is handed its own share."""

    def state_parts(self) -> list[Mixer]:
        """The parts that read the first len(...) of the state's parts ([] while the mixer is being built)."""
        raise NotImplementedError

    @property
    def cache(self) -> PartStates | None:
        return self.__dict__.get("_states")

    @cache.setter
    def cache(self, states: PartStates | None) -> None:
        self.__dict__["_states"] = states
        for j, part in enumerate(self.state_parts()):
            part.cache = None if states is None else states.parts[j]


@MIXERS.register("parallel")
class Parallel(Composite):
    residual_out = ()  # each part names its own (models/init.residual_projections finds them under their prefix)

    @classmethod
    def check(cls, cfg) -> None:
        names = parts_of(cfg)
        bad = next((n for n in names if n == "parallel" or n not in MIXERS.names()), None)
        if len(names) < 2 or len(set(names)) != len(names) or bad is not None:
            raise LlmarchError(f"parallel_mixers must name two or more different mixers (of: "
                               f"{', '.join(n for n in MIXERS.names() if n != 'parallel')}), got {names!r}")
        for field in ("parallel_in_multipliers", "parallel_out_multipliers"):
            _multipliers(cfg, field, len(names))
        for name in names:
            MIXERS[name].check(cfg)

    @classmethod
    def score_dims(cls, cfg) -> int:
        return sum(MIXERS[name].score_dims(cfg) for name in parts_of(cfg))

    @classmethod
    def kv_heads(cls, cfg) -> int:
        return max(MIXERS[name].kv_heads(cfg) for name in parts_of(cfg))

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        names = parts_of(cfg)
        for name in names:
            self.add_module(name, MIXERS[name](cfg, layer))
        ins = _multipliers(cfg, "parallel_in_multipliers", len(names))
        outs = _multipliers(cfg, "parallel_out_multipliers", len(names))
        # (part, input multiplier, output multiplier), None for a multiplier of 1: no multiply at all
        self._plan = [(n, None if a == 1.0 else a, None if b == 1.0 else b) for n, a, b in zip(names, ins, outs)]
        self.cache = None

    def state_parts(self) -> list[Mixer]:
        return [self._modules[name] for name, _, _ in self.__dict__.get("_plan", ())]

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> PartStates:
        return PartStates([m.new_state(batch, max_len, dtype, device) for m in self.state_parts()])

    def bounded_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> PartStates:
        return PartStates([m.bounded_state(batch, max_len, dtype, device) for m in self.state_parts()])

    def cache_bytes(self, dtype: torch.dtype, max_len: int) -> tuple[int, int]:
        sizes = [m.cache_bytes(dtype, max_len) for m in self.state_parts()]
        return sum(t for t, _ in sizes), sum(s for _, s in sizes)

    def state_note(self, dtype: str) -> str:
        return "; ".join(note for m in self.state_parts() if (note := m.state_note(dtype)))

    def cache_note(self) -> str:
        return "; ".join(note for m in self.state_parts() if (note := m.cache_note()))

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        sub = self._modules
        out = None
        for name, scale_in, scale_out in self._plan:
            y = sub[name](x if scale_in is None else x * scale_in, ctx)
            if scale_out is not None:
                y = y * scale_out
            out = y if out is None else out + y
        return out
