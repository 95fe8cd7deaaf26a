"""VisionConfig.resampler: Idefics2's connector (Lauren\u00e7on et al. 2024, "What matters when building
vision-language models?", \u00a73.1 and \u00a74.2: a perceiver resampler pools each image to a fixed number of
visual tokens), as a plain dict of these fields in ModelConfig.vision, checked here before anything is built. The
module is perceiver.py's. Imports nothing of llmarch's but its errors and fields.py, so config.py may read it."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LlmarchError
from .fields import check_numbers, check_positive, read_fields


@dataclass(frozen=True)
class ResamplerConfig:
    latents: int  # learned latent queries, the image tokens one image fills (resampler_n_latents)
    depth: int  # perceiver layers (resampler_depth)
    n_heads: int  # query heads of each layer's cross-attention (resampler_n_heads)
    head_dim: int  # (resampler_head_dim)
    kv_heads: int  # key and value heads, shared by n_heads / kv_heads query heads each (num_key_value_heads)
    proj_hidden: int  # the modality projection's gated MLP width (transformers takes the text's intermediate_size)
    proj_act: str = "silu"  # its activation (the text config's hidden_act)
    act: str = "silu"  # the perceiver layers' gated MLP activation (their width is 4 x the text width)
    eps: float = 1e-6  # the perceiver's RMSNorms


def resampler_config(data: dict, acts) -> ResamplerConfig:
    """data as a ResamplerConfig, every field checked; `acts`: the activation names there are."""
    if not isinstance(data, dict):
        raise LlmarchError(f"vision resampler must be a mapping of resampler fields, got {data!r}")
    r = read_fields(ResamplerConfig, data, "vision resampler")
    check_positive(r, ("latents", "depth", "n_heads", "head_dim", "kv_heads", "proj_hidden"))
    if r.n_heads % r.kv_heads:
        raise LlmarchError(f"vision resampler n_heads {r.n_heads} must divide by kv_heads {r.kv_heads}")
    if r.act not in acts or r.proj_act not in acts:
        raise LlmarchError(f"vision resampler act {r.act!r}, proj_act {r.proj_act!r}: activations are "
                           f"{', '.join(acts)}")
    check_numbers(r, ("eps",), "vision resampler")
    return r
