"""Construction of every model kind from a config, in one place: the class a config builds, a fresh model,
the same body under a new head, and a model's stacks of blocks with the config each was built from."""
from __future__ import annotations

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..config import ModelConfig
from ..errors import LlmarchError, first_and_count
from .byte_latent import ByteLatentLM
from .drafter import DrafterLM
from .encoder_decoder import EncoderDecoderLM
from .perceiver import PerceiverLM
from .transformer import TransformerLM


def model_class(cfg: ModelConfig) -> type:
    if cfg.patch_stacks is not None:
        return ByteLatentLM
    if cfg.n_latents:
        return PerceiverLM
    if cfg.draft_target_width:
        return DrafterLM
    return EncoderDecoderLM if cfg.is_encoder_decoder else TransformerLM


def build_model(cfg: ModelConfig, device: str | torch.device | None = None) -> TransformerLM:
    with torch.device(device or "cpu"):
        return model_class(cfg)(cfg)


class _NoInit(TorchFunctionMode):
    """Drops the initialisers (torch.nn.init's, and the in-place tensor methods they and module constructors call)
    that run on meta tensors: there they compute nothing,
    yet the first of them (nn.Embedding's normal_) goes through torch's Python references and imports
    torch._dynamo on the way, 1.1 s of every checkpoint load on the 2-core VM."""

    SKIP = {torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.zero_, torch.Tensor.fill_,
            torch.Tensor.erfinv_, torch.Tensor.clamp_, torch.Tensor.copy_, torch.Tensor.mul_, torch.Tensor.add_}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")  # nn.init's functions take it by keyword
        skip = func in self.SKIP or getattr(func, "__module__", None) == "torch.nn.init"
        if skip and isinstance(target, torch.Tensor) and target.is_meta:  # a real tensor keeps its values
            return target
        return func(*args, **kwargs)


def empty_model(cfg: ModelConfig) -> TransformerLM:
    """cfg's model on the meta device with no initialiser run: shapes only, for a checkpoint to fill
    (checkpoint.assemble)."""
    with torch.device("meta"), _NoInit():
        return model_class(cfg)(cfg)


def stacks(model) -> dict[str, tuple[nn.Module, ModelConfig]]:
    """Stack name ("" for a one-stack model, else "encoder" and "decoder") -> (the stack of blocks, the config
    it was built from)."""
    cfg = model.config
    if cfg.patch_stacks is not None or cfg.n_latents:  # a byte-latent model's four, a Perceiver IO model's latent stack
        return model.stacks()
    if cfg.is_encoder_decoder:
        return {"encoder": (model.encoder, cfg.stack_config("encoder")),
                "decoder": (model.decoder, cfg.stack_config("decoder"))}
    return {"": (model, cfg)}


def with_head(model: TransformerLM, head: str, n_labels: int = 2, **overrides) -> TransformerLM:
    """A model of the same body (embeddings, blocks, final norm: weights shared, not copied) with a fresh
    `head` (layers/heads.py), e.g. a pretrained masked LM turned into a classifier for fine-tuning."""
    if model.config.is_encoder_decoder:
        raise LlmarchError("with_head: classifier heads are for decoder-only and encoder-only models")
    cfg = model.config.replace(head=head, n_labels=n_labels, **overrides)
    device = model.embed.weight.device
    new = build_model(cfg, device)
    body = {k: v for k, v in model.state_dict().items() if not k.startswith(("lm_head.", "head_transform."))}
    if model.config.head != head or model.config.n_labels != n_labels:  # a different head starts afresh
        body = {k: v for k, v in body.items() if not k.startswith(("pooler.", "classifier."))}
    missing, _ = new.load_state_dict(body, strict=False, assign=True)
    new_head = ("pooler.", "classifier.", "lm_head.", "head_transform.")
    if any(not k.startswith(new_head) for k in missing):
        raise LlmarchError(f"cannot move the body onto the new head: {first_and_count(missing)} missing")
    if cfg.tied_head:
        new.lm_head.weight = new.embed.weight
    return new
