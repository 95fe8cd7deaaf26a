"""Parts of every model, one concept a module, chosen by name from these registries."""
from .attention import ATTENTION, Attention
from .ffn import FFNS
from .hooks import HookPoint
from .norms import NORMS
from .positions import POSITIONS

__all__ = ["ATTENTION", "Attention", "FFNS", "HookPoint", "NORMS", "POSITIONS"]
