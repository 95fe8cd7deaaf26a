"""Model facts from the config and the built model (parameters, FLOPs, memory), and looking inside a model
through its hook points (caches, hooks, logit lens, patching, ablation, probes)."""
from .accounting import model_facts
from .hooks import (ablate_heads, hook_points, linear_probe, logit_lens, patch_residual, run_with_cache,
                    run_with_hooks)

__all__ = ["ablate_heads", "hook_points", "linear_probe", "logit_lens", "model_facts", "patch_residual",
           "run_with_cache", "run_with_hooks"]
