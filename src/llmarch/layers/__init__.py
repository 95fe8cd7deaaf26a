"""Parts of every model, one concept a module, chosen by name from these registries."""
from .attention import ATTENTION, Attention
from .attention_kinds import ATTENTION_KINDS
from .ffn import FFNS
from .hooks import HookPoint
from .norms import NORMS
from .positions import POSITIONS
from .mixer import MIXERS, Mixer
from . import mamba, mamba2, hyena, gated_deltanet, mla, shortconv, rglru, kda, parallel_mixer  # noqa: F401
from . import shared_block  # noqa: F401
from . import moa, no_mixer, mlstm, rwkv  # noqa: F401  (register the mixers)
from . import cca  # noqa: F401
from . import shared_kv  # noqa: F401
from . import mixed_attention  # noqa: F401
from . import fourier  # noqa: F401
from . import bottleneck  # noqa: F401
from . import funnel_attention, funnel  # noqa: F401
from . import reversible  # noqa: F401  (hyper_connection "reversible")
from . import vision_cross  # noqa: F401
from . import rwkv7  # noqa: F401
from . import projection  # noqa: F401
from . import rwkv6  # noqa: F401

__all__ = ["ATTENTION", "ATTENTION_KINDS", "Attention", "Mixer", "FFNS", "HookPoint", "MIXERS", "NORMS", "POSITIONS"]
