"""Linear layers over quantized weights, on torch's own weight-only kernels (no dequantize-then-matmul on CPU):
- Int8Linear: y = (x W_q^T) * s per output channel, `aten._weight_int8pack_mm(x, W_q int8 (N, K), s (N,))`
  (from INT8_ROWS rows, a GEMM on W_q cast to the compute dtype, exact, then the scales);
- Int4Linear: groups of G input columns, W = (q - 8) s + z, `aten._weight_int4pack_mm_for_cpu(x, packed, G,
  sz (K/G, N, 2))`, the codes packed by `aten._convert_weight_to_int4pack_for_cpu` into the kernel's own tiles.
Both kernels need the activations in the scales' dtype; on this build they run 10-200x faster with bf16
activations than fp32 ones (docs/quantization.md), so the layers compute in the scheme's compute dtype (bf16 by
default) and return the input's dtype. On a device without the kernel (the int4 tiles are the CPU build's), the
weights are dequantized per call: correct, not fast.

Neither kernel has a derivative; the layers pass gradients to their input through grad.py (QLoRA's frozen base).

Shapes: x (..., K) -> (..., N). A checkpoint stores the int4 codes in a portable form, two per byte (`qweight`
(N, K/2), column 2j in the low nibble), with `scales` and `zeros` (N, K/G); the kernel's tiles exist only in
memory, converted on load and back on save."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from . import tiles
from .grad import product
from .tiles import tile_codes
from .rtn import int4_dequantize, pack_nibbles, unpack_nibbles

INT4_ROWS = 16  # the int4 CPU kernel packs output rows in tiles of 16: N must be a multiple
# the CPU int8 kernel reads rows in blocks of 16: with in_features not a multiple of 16 it gave garbage or crashed
# the process (torch 2.13, K = 4 to 28 but 16), so such layers (Mamba's dt projection from a rank of 8) multiply
# by their dequantized weight instead
INT8_K = 16
# the int8 kernel's time grows with the rows as a one-row product's would; from about 16-24 rows a GEMM on the
# weight cast to the compute dtype beats it, 2x at 32 rows and 5x at 128 (a prompt, a perplexity window,
# QLoRA's forward: SmolLM2's 576x1536 at 128 rows, 2-core Xeon, bf16: 0.26 ms against 1.3), with the cast a
# transient copy of one layer's weight
INT8_ROWS = 32
# an LM head's largest outputs recomputed in fp32 (Int8Linear.exact_top): the kernels return bf16, whose step at
# a logit of 16-32 is 0.125, so near-ties became exact ties and greedy decoding took the lower id (SmolLM2 in int8
# parted from fp32's tokens at the 2nd new token with bf16 logits, at the 5th, a 0.008 tie, with exact ones)
EXACT_TOP, EXACT_TOP_ROWS = 8, 64


def _flat(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1]).to(dtype, memory_format=torch.contiguous_format)  # cast and lay out: one op


class Int8Linear(nn.Module):
    """int8 weights per output channel (state: weight int8 (N, K), scales (N,), bias (N,) or none)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype, device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.empty(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("scales", torch.empty(out_features, dtype=dtype, device=device))
        self.register_buffer("bias", torch.empty(out_features, device=device) if bias else None)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype) -> Int8Linear:
        from .rtn import int8_rtn

        return cls.from_codes(*int8_rtn(weight.detach()), bias, dtype)

    @classmethod
    def from_codes(cls, codes: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None,
                   dtype: torch.dtype) -> Int8Linear:
        """A layer of codes int8 (N, K) and scales (N,) some method already found (GPTQ)."""
        new = cls(codes.shape[1], codes.shape[0], bias is not None, dtype, device=codes.device)
        new.weight.copy_(codes)
        new.scales.copy_(scales)
        if bias is not None:
            new.bias.copy_(bias.detach())
        return new

    def dequantized(self) -> torch.Tensor:
        return self.weight.float() * self.scales.float()[:, None]

    def product(self, x: torch.Tensor) -> torch.Tensor:
        """x (M, K) in the scales' dtype -> x W^T (M, N). (torch._weight_*: the op's own binding, a microsecond
        cheaper per call than its torch.ops.aten packet, paid 7 times per layer of a decoded token.)"""
        b = self._buffers  # not nn.Module's attribute fallback (as layers/linear.py): paid per layer and token
        if x.device.type == "cpu" and self.in_features % INT8_K == 0 and x.shape[0] < INT8_ROWS:
            return torch._weight_int8pack_mm(x, b["weight"], b["scales"])
        # many rows, no kernel, or a width it cannot take: int8 values are exact in the compute dtype, so the
        # product on them, then each output column's scale
        return F.linear(x, b["weight"].to(x.dtype)) * b["scales"]

    def columns(self, start: int, stop: int) -> torch.Tensor:
        """W[:, start:stop] dequantized, (N, stop - start) in the scales' dtype."""
        return self.weight[:, start:stop].to(self.scales.dtype) * self.scales[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self._buffers
        y = product(self, _flat(x, b["scales"].dtype))
        if self.exact_top and y.dtype != x.dtype and y.shape[0] <= EXACT_TOP_ROWS and y.shape[1] > EXACT_TOP:
            y = self._exact_top(y.to(x.dtype), x.reshape(-1, self.in_features))
        y = y.to(x.dtype).view(*x.shape[:-1], self.out_features)
        return y if b["bias"] is None else y + b["bias"].to(x.dtype)

    exact_top = False  # quant.apply sets it on an LM head (decoding's few rows; EXACT_TOP above)

    def _exact_top(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """y (M, N) with its EXACT_TOP largest entries per row replaced by x W^T in x's dtype (fp32)."""
        idx = top_indices(y, EXACT_TOP)  # (M, k)
        rows = self.weight[idx].to(x.dtype)  # (M, k, K): k rows of int8 weights per input row
        exact = (rows @ x[:, :, None]).squeeze(-1) * self.scales.to(x.dtype)[idx]
        return y.scatter(-1, idx, exact)

    def extra_repr(self) -> str:
        top = f", its {EXACT_TOP} largest outputs in fp32" if self.exact_top else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, int8, {self.scales.dtype}{top}"


def top_indices(y: torch.Tensor, k: int, chunk: int = 128) -> torch.Tensor:
    """The indices (M, k) of each row's k largest entries of y (M, N), through chunk maxima: every one of them lies
    in one of the k chunks of largest maximum, so two small top-k's replace one over the whole row (a vocabulary of
    49,152: topk 70 us on a 2-core CPU, this 27)."""
    M, N = y.shape
    if N % chunk or N // chunk <= k:
        return y.topk(k, -1).indices
    chunks = y.view(M, N // chunk, chunk)
    best = chunks.amax(-1).topk(k, -1).indices  # (M, k)
    inside = chunks.gather(1, best[..., None].expand(M, k, chunk)).reshape(M, k * chunk).topk(k, -1).indices
    return best.gather(1, inside // chunk) * chunk + inside % chunk


class Int8Embedding(nn.Module):
    """An embedding table in int8 per row (state: weight int8 (V, C), scales (V,) fp32): a lookup reads one row
    and one scale, so no kernel is needed, and the table (for a small model's large vocabulary, the largest
    tensor) takes a quarter of its fp32 bytes."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.register_buffer("weight", torch.empty(num_embeddings, embedding_dim, dtype=torch.int8, device=device))
        self.register_buffer("scales", torch.empty(num_embeddings, device=device))

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding) -> Int8Embedding:
        from .rtn import int8_rtn

        new = cls(embedding.num_embeddings, embedding.embedding_dim, device=embedding.weight.device)
        codes, scales = int8_rtn(embedding.weight.detach())
        new.weight.copy_(codes)
        new.scales.copy_(scales)
        return new

    def dequantized(self) -> torch.Tensor:
        """The table (V, C) in fp32."""
        return self.weight.float() * self.scales.float()[:, None]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (...) -> (..., C) fp32
        return F.embedding(ids, self.weight).float() * self.scales[ids].unsqueeze(-1)


class Int4Linear(nn.Module):
    """int4 weights in groups (state dict: qweight uint8 (N, K/2), scales and zeros (N, K/G), bias). In memory:
    `packed` (N, K/2) uint8, in the CPU kernel's tiles on CPU (else the state dict's nibbles), and `scale_zeros`
    (K/G, N, 2)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, group_size: int, dtype: torch.dtype,
                 device=None):
        super().__init__()
        if in_features % group_size or out_features % INT4_ROWS:
            raise LlmarchError(f"int4 needs in_features ({in_features}) divisible by the group size ({group_size}) "
                               f"and out_features ({out_features}) by {INT4_ROWS}")
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        device = torch.device(device or "cpu")
        self.register_buffer("packed", torch.empty(out_features, in_features // 2, dtype=torch.uint8, device=device))
        self.register_buffer("scale_zeros", torch.empty(in_features // group_size, out_features, 2, dtype=dtype,
                                                        device=device))
        self.register_buffer("bias", torch.empty(out_features, device=device) if bias else None)
        self.cpu_tiles = False  # whether `packed` holds the CPU kernel's tiles (else plain nibbles)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None, group_size: int, dtype: torch.dtype,
                    method: str = "int4") -> Int4Linear:
        from .hqq import int4_hqq
        from .rtn import int4_rtn

        codes, scales, zeros = (int4_hqq if method == "int4-hqq" else int4_rtn)(weight.detach(), group_size)
        return cls.from_codes(codes, scales, zeros, bias, group_size, dtype)

    @classmethod
    def from_codes(cls, codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, bias: torch.Tensor | None,
                   group_size: int, dtype: torch.dtype) -> Int4Linear:
        """A layer of codes (N, K), scales and zeros (N, K/G) some method already found (GPTQ)."""
        new = cls(codes.shape[1], codes.shape[0], bias is not None, group_size, dtype, device=codes.device)
        new.set_codes(codes, scales, zeros)
        if bias is not None:
            new.bias.copy_(bias.detach())
        return new

    def set_codes(self, codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor) -> None:
        """codes (N, K) in [0, 15], scales and zeros (N, K/G): into the in-memory form for this device."""
        self.cpu_tiles = codes.device.type == "cpu"
        if self.cpu_tiles:
            self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), 1)
        else:
            self.packed = pack_nibbles(codes)
        self.scale_zeros = torch.stack([scales, zeros], dim=-1).transpose(0, 1).to(self.scale_zeros.dtype).contiguous()

    def codes(self) -> torch.Tensor:
        """The codes (N, K) in [0, 15]. From the CPU tiles, read back through the kernel itself: the identity
        matrix times the weights dequantized with scale 1 and zero 8 is exactly q^T (small integers, exact in
        bf16, the kernel's fast dtype)."""
        if self.packed.device.type == "meta":
            return torch.empty(self.out_features, self.in_features, dtype=torch.uint8, device="meta")
        if not self.cpu_tiles:
            return unpack_nibbles(self.packed)
        if tiles.readable(self.out_features):
            return tile_codes(self.packed, 0, self.in_features)
        K, G = self.in_features, self.group_size
        unit = torch.tensor([1.0, 8.0], dtype=torch.bfloat16).expand(K // G, self.out_features, 2).contiguous()
        eye = torch.eye(K, dtype=torch.bfloat16)
        return torch.ops.aten._weight_int4pack_mm_for_cpu(eye, self.packed, G, unit).t().round().to(torch.uint8)

    def dequantized(self) -> torch.Tensor:
        sz = self.scale_zeros.transpose(0, 1)
        return int4_dequantize(self.codes(), sz[..., 0], sz[..., 1])

    def product(self, x: torch.Tensor) -> torch.Tensor:
        """x (M, K) in the compute dtype -> x W^T (M, N)."""
        if self.cpu_tiles and x.device.type == "cpu":
            b = self._buffers  # not nn.Module's attribute fallback (as layers/linear.py): paid per layer and token
            return torch._weight_int4pack_mm_for_cpu(x, b["packed"], self.group_size, b["scale_zeros"])
        return F.linear(x, self.dequantized().to(x.dtype))

    def columns(self, start: int, stop: int) -> torch.Tensor:
        """W[:, start:stop] dequantized, (N, stop - start) in the compute dtype; start and stop whole groups (or
        stop = K). From the nibbles, or the CPU tiles where tiles.py reads them; otherwise through the kernel
        itself: rows start..stop of the identity times W^T."""
        dtype, G = self.scale_zeros.dtype, self.group_size
        if self.cpu_tiles and not tiles.readable(self.out_features):
            rows = torch.arange(stop - start)
            eye = torch.zeros(stop - start, self.in_features, dtype=dtype)
            eye[rows, rows + start] = 1
            return torch.ops.aten._weight_int4pack_mm_for_cpu(eye, self.packed, G, self.scale_zeros).t()
        sz = self.scale_zeros[start // G:(stop + G - 1) // G].transpose(0, 1)  # (N, groups, 2)
        codes = (tile_codes(self.packed, start, stop) if self.cpu_tiles
                 else unpack_nibbles(self.packed[:, start // 2:stop // 2]))
        return int4_dequantize(codes, sz[..., 0], sz[..., 1]).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self._buffers
        y = product(self, _flat(x, b["scale_zeros"].dtype))
        y = y.to(x.dtype).view(*x.shape[:-1], self.out_features)
        return y if b["bias"] is None else y + b["bias"].to(x.dtype)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        sz = self.scale_zeros.transpose(0, 1)
        destination[prefix + "qweight"] = pack_nibbles(self.codes())
        destination[prefix + "scales"] = sz[..., 0].contiguous()
        destination[prefix + "zeros"] = sz[..., 1].contiguous()
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        names = ["qweight", "scales", "zeros"] + (["bias"] if self.bias is not None else [])
        missing = [prefix + n for n in names if prefix + n not in state_dict]
        if missing:
            missing_keys.extend(missing)
            return
        self.set_codes(unpack_nibbles(state_dict[prefix + "qweight"]), state_dict[prefix + "scales"],
                       state_dict[prefix + "zeros"])
        if self.bias is not None:
            self.bias = state_dict[prefix + "bias"]

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, int4, "
                f"group_size={self.group_size}, {self.scale_zeros.dtype}")
