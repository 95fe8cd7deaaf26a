"""Parts of every model, one concept a module, chosen by name from these registries."""
from .attention import ATTENTION, Attention
from .ffn import FFNS
from .hooks import HookPoint
from .norms import NORMS
from .positions import POSITIONS
from .ssm import MIXERS
from . import hyena, mamba, mamba2  # noqa: F401  (register the mixers)

__all__ = ["ATTENTION", "Attention", "FFNS", "HookPoint", "MIXERS", "NORMS", "POSITIONS"]
