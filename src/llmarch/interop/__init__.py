"""Hugging Face interop: one small mapping table per `model_type`, driving import and export."""
from .mapping import export_state, import_state

__all__ = ["export_state", "import_state"]
