"""Synthetic long-range tasks, as used to compare sequence mixers by what they can do rather than how fast
they run (H3, Fu et al. 2023, §3.1; Hyena, Poli et al. 2023, §4.1; Mamba, Gu & Dao 2023, §4.1):

- recall, associative recall: pairs k_1 v_1 ... k_n v_n, then one key again; the next token must be its
  value. Keys and values come from disjoint vocabularies, keys distinct within a sequence. Solving it needs
  a lookup of a token seen anywhere earlier (what induction heads do).
- copy, selective copying: n data tokens at random positions among blanks in a prefix of L, then a
  separator; the model must output the data tokens in order. Solving it needs to remember content and
  ignore filler, which fixed-stride patterns and time-invariant convolutions cannot.

Each batch is (inputs (N, T), targets (N, T)) for next-token prediction, with targets IGNORE (-100) except at
the answers, so accuracy is exact match over answer tokens. Token ids: recall keys 0..K-1, values K..K+V-1;
copy blank 0, separator 1, data 2..."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import LlmarchError, check_fields
from .batching import IGNORE

TASKS = ("recall", "copy")


# the fields each task reads (the CLI refuses another's: an option that changes nothing is a mistake)
TASK_FIELDS = {"recall": ("pairs", "keys", "values"), "copy": ("length", "data_tokens", "data_vocab")}


@dataclass
class SyntheticTask:
    name: str = "recall"  # recall or copy (the positional argument)
    pairs: int = 8  # recall: key-value pairs per sequence
    keys: int = 16  # recall: key vocabulary
    values: int = 16  # recall: value vocabulary
    length: int = 64  # copy: the prefix of data and blanks
    data_tokens: int = 8  # copy: tokens to copy
    data_vocab: int = 8  # copy: their vocabulary

    def validate(self) -> None:
        if self.name not in TASKS:
            raise LlmarchError(f"unknown task {self.name!r}; choose one of: {', '.join(TASKS)}")
        check_fields(self, positive=TASK_FIELDS[self.name])
        if self.name == "recall" and not 0 < self.pairs <= self.keys:
            raise LlmarchError(f"recall needs 0 < pairs <= keys (distinct keys), got {self.pairs} and {self.keys}")
        if self.name == "copy" and not 0 < self.data_tokens <= self.length:
            raise LlmarchError(f"copy needs 0 < data_tokens <= length, got {self.data_tokens} and {self.length}")

    @property
    def vocab_size(self) -> int:
        return self.keys + self.values if self.name == "recall" else 2 + self.data_vocab

    @property
    def seq_len(self) -> int:
        """Input length (the last token is only ever a target)."""
        return 2 * self.pairs + 1 if self.name == "recall" else self.length + self.data_tokens

    def batch(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        self.validate()
        seqs, answer_from = (self._recall if self.name == "recall" else self._copy)(n, rng)
        x, y = seqs[:, :-1], seqs[:, 1:].copy()
        y[:, : answer_from - 1] = IGNORE  # only the answers are predicted
        return torch.from_numpy(x), torch.from_numpy(y)

    def _recall(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        keys = np.argsort(rng.random((n, self.keys)), axis=1)[:, : self.pairs]  # distinct keys per row
        values = self.keys + rng.integers(0, self.values, (n, self.pairs))
        seqs = np.empty((n, 2 * self.pairs + 2), dtype=np.int64)
        seqs[:, 0:-2:2], seqs[:, 1:-2:2] = keys, values
        pick = rng.integers(0, self.pairs, n)
        seqs[:, -2], seqs[:, -1] = keys[np.arange(n), pick], values[np.arange(n), pick]
        return seqs, seqs.shape[1] - 1

    def _copy(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        L, m = self.length, self.data_tokens
        data = 2 + rng.integers(0, self.data_vocab, (n, m))
        where = np.sort(np.argsort(rng.random((n, L)), axis=1)[:, :m], axis=1)  # m distinct positions, in order
        seqs = np.zeros((n, L + 1 + m), dtype=np.int64)
        np.put_along_axis(seqs[:, :L], where, data, axis=1)
        seqs[:, L] = 1
        seqs[:, L + 1:] = data
        return seqs, L + 1
