"""Model facts from the config and the built model: parameters, FLOPs, memory."""
from .accounting import model_facts

__all__ = ["model_facts"]
