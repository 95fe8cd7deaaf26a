"""Token timestamps from cross-attention (Radford et al. 2022; OpenAI's whisper/timing.py): the decoder's alignment
heads (generation_config alignment_heads, pairs of decoder layer and head) attend to the encoder position being
spoken, so their weights, aligned to the audio frames by dynamic time warping, time each token. As transformers'
WhisperForConditionalGeneration._extract_token_timestamps computes them:
- the weights of each alignment head over the new tokens (a teacher-forced forward over the decoder prompt and the
  tokens; row p: the query of token p, which predicts token p + 1, so the last token has none), cropped to the real
  audio (frames // 2 encoder positions);
- each head's weights standardised per encoder position over the tokens (mean 0, standard deviation 1, biased),
  median-filtered along the positions (width 7, reflected at the edges), averaged over the heads;
- dynamic time warping of minus that matrix, tokens against positions; a token's time: the position where the path
  first reaches it, times 20 ms. The prompt's tokens are at 0; the last token takes its predecessor's time."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import LlmarchError
from .transcribe import STRIDE, TIME_PRECISION

MEDIAN_WIDTH = 7  # transformers' WhisperConfig.median_filter_width; timing.py's medfilt_width


def alignment_heads(gen: dict) -> list[tuple[int, int]]:
    """The generation config's alignment_heads as (decoder layer, head) pairs; refused where it has none."""
    heads = gen.get("alignment_heads")
    if not heads:
        raise LlmarchError("word timestamps need the generation config's alignment_heads (the cross-attention heads "
                           "that follow the audio): this checkpoint has none")
    return [(int(layer), int(head)) for layer, head in heads]


@torch.inference_mode()
def cross_attention_weights(model, features: torch.Tensor, ids: torch.Tensor, heads: Sequence[tuple[int, int]]
                            ) -> torch.Tensor:
    """features (B, channels, frames), decoder input ids (B, T) -> the heads' cross-attention weights
    (B, len(heads), T, S), read through hook_pattern (which runs the explicit softmax only while hooked)."""
    blocks = model.decoder.blocks
    for layer, head in heads:
        if not (0 <= layer < len(blocks) and 0 <= head < blocks[layer].cross_attn.n_heads):
            raise LlmarchError(f"alignment head ({layer}, {head}) is not in this decoder of {len(blocks)} layers "
                               f"of {blocks[0].cross_attn.n_heads} heads")
    seen: dict[int, torch.Tensor] = {}
    handles = [blocks[layer].cross_attn.hook_pattern.register_forward_hook(
        lambda _m, _i, out, layer=layer: seen.__setitem__(layer, out)) for layer in sorted({lr for lr, _ in heads})]
    try:
        device = next(model.parameters()).device
        model(decoder_input_ids=ids.to(device), input_features=features.to(device))
    finally:
        for h in handles:
            h.remove()
    return torch.stack([seen[layer][:, head] for layer, head in heads], dim=1).float()


def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """Median over `width` neighbours along the last dimension, reflected at the edges (a row no longer than
    width // 2 as it is)."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    x = torch.nn.functional.pad(x, (pad, pad, 0, 0), mode="reflect")
    return x.unfold(-1, width, 1).sort()[0][..., pad]


def dtw(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest monotonic path through x (N tokens, M positions) from (0, 0) to (N-1, M-1), each step down,
    right or both -> its token and position indices. Cells of one anti-diagonal are computed together; the costs in
    float32 and the ties broken as transformers' _dynamic_time_warping breaks them (diagonal, then up, then left)."""
    N, M = x.shape
    cost = np.full((N + 1, M + 1), np.inf, dtype=np.float32)
    cost[0, 0] = 0
    trace = np.full((N + 1, M + 1), -1, dtype=np.int8)
    for d in range(2, N + M + 1):
        i = np.arange(max(1, d - M), min(N, d - 1) + 1)
        j = d - i
        c0, c1, c2 = cost[i - 1, j - 1], cost[i - 1, j], cost[i, j - 1]
        t = np.where((c0 < c1) & (c0 < c2), 0, np.where((c1 < c0) & (c1 < c2), 1, 2))
        cost[i, j] = x[i - 1, j - 1] + np.choose(t, [c0, c1, c2])
        trace[i, j] = t
    trace[0, :], trace[:, 0] = 2, 1
    i, j, path = N, M, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        step = trace[i, j]
        i, j = i - (step != 2), j - (step != 1)
    return np.array(path[::-1]).T


def token_timestamps(model, features: torch.Tensor, sequences: Sequence[Sequence[int]], prompt_len: int, gen: dict,
                     frames: Sequence[int] | None = None, pad_id: int | None = None,
                     median_width: int = MEDIAN_WIDTH) -> list[list[float]]:
    """features (B, channels, frames) of one window each; sequences: each row's decoder prompt (prompt_len tokens,
    the same length in every row) and new tokens, as transcribe returns them -> each row's time in seconds for each
    of its tokens. frames: each row's count of real feature frames (the window's weights cropped to frames // 2
    positions), else the whole window. Rows are padded with pad_id (the generation config's pad_token_id, else the
    end of text) to the longest, as a batched generate pads them, since padding enters the standardisation."""
    heads = alignment_heads(gen)
    pad = pad_id if pad_id is not None else gen.get("pad_token_id", gen.get("eos_token_id"))
    pad = pad[0] if isinstance(pad, list) else pad
    longest = max(len(s) for s in sequences)
    ids = torch.tensor([[*s, *[pad] * (longest - len(s))] for s in sequences])
    weights = cross_attention_weights(model, features, ids[:, :-1], heads)[:, :, prompt_len:]  # (B, h, n-1, S)
    times = []
    for b, row in enumerate(weights):
        if frames is not None:
            row = row[..., :max(int(frames[b]) // STRIDE, 1)]
        jumps = _jump_times(row, median_width) if row.shape[1] else [0.0]
        times.append(([0.0] * prompt_len + jumps + jumps[-1:])[:len(sequences[b])])
    return times


def _jump_times(w: torch.Tensor, median_width: int) -> list[float]:
    """One row's heads' weights (h, tokens, positions) -> each token's time: where the path first reaches it."""
    w = (w - w.mean(dim=-2, keepdim=True)) / w.std(dim=-2, keepdim=True, correction=0)
    w = median_filter(w, median_width).mean(dim=0)
    text, time = dtw(-w.double().numpy())
    jumps = np.pad(np.diff(text), (1, 0), constant_values=1).astype(bool)
    return np.float32(time[jumps] * TIME_PRECISION).tolist()
