"""Attention kinds, chosen by `ModelConfig.attention` from ATTENTION_KINDS: which keys each query attends to
and how (kind.py has the protocol). One file a kind; adding one is a new file and its import below."""
from .kind import ATTENTION_KINDS, AttentionKind, cached_kv, windowed_kinds
from . import full, sliding_window, strided, block_sparse, longformer, lsh, linear, performer, chunked  # noqa: F401
from . import disentangled  # noqa: F401
from . import local, transient_global  # noqa: F401
from . import differential, lightning, qsa  # noqa: F401
from . import global_local  # noqa: F401
from . import dynamic_mask  # noqa: F401
from . import bigbird, nystrom, yoso  # noqa: F401
from . import relative_logits  # noqa: F401
from . import ngram  # noqa: F401
from . import xl_relative  # noqa: F401
from . import merged  # noqa: F401
from . import reformer  # noqa: F401
from . import mra  # noqa: F401

__all__ = ["ATTENTION_KINDS", "AttentionKind", "cached_kv", "windowed_kinds"]
