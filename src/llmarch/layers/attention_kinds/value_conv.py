"""The depthwise convolution over each head's values that Nystromformer (Xiong et al. 2021, §4: a skip connection
of the values) and YOSO (Zeng et al. 2021, the reference code's conv_window) add to their attention's output:
kernel k (value_conv, odd) along the sequence, one kernel per head shared by the head's dims, no bias, zeros past
the ends; kept on the attention layer as `conv` (H, 1, k, 1), the layout transformers stores."""
from __future__ import annotations

from torch import nn

from ...errors import LlmarchError


def check_value_conv(cfg, kind: str) -> None:
    k = cfg.value_conv
    if k < 0 or k and k % 2 == 0:
        raise LlmarchError(f"attention={kind!r}: value_conv must be odd or 0 (no convolution), got {k}")


def value_conv_modules(cfg) -> dict[str, nn.Module]:
    k, H = cfg.value_conv, cfg.n_heads
    return {"conv": nn.Conv2d(H, H, (k, 1), padding=(k // 2, 0), bias=False, groups=H)} if k else {}
