"""Linear layers over quantized weights, on torch's own weight-only kernels (no dequantize-then-matmul on CPU):
- Int8Linear: y = (x W_q^T) * s per output channel, `aten._weight_int8pack_mm(x, W_q int8 (N, K), s (N,))`
  (from INT8_ROWS rows, a GEMM on W_q cast to the compute dtype, exact, then the scales);
- Int4Linear: groups of G input columns, W = (q - 8) s + z, `aten._weight_int4pack_mm_for_cpu(x, packed, G,
  sz (K/G, N, 2))`, the codes packed by `aten._convert_weight_to_int4pack_for_cpu` into the kernel's own tiles.
  On CUDA (compute capability 8.0 on, bf16), tinygemm's `aten._weight_int4pack_mm(x, packed, G, sz)` over
  `aten._convert_weight_to_int4pack`'s tiles (as gpt-fast and torchao's int4 weight-only layout), same sz.
Both kernels need the activations in the scales' dtype; on this build they run 10-200x faster with bf16
activations than fp32 ones (docs/quantization.md), so the layers compute in the scheme's compute dtype (bf16 by
default) and return the input's dtype. Where no kernel holds a layer (int4 in fp32 on CUDA; a device with
neither), its weights are dequantized per call: correct, not fast. int8 on CUDA takes the GEMM on the codes
cast to the compute dtype (torch's int8 kernel has a CUDA build too; benchmarks/quant_kernels.py times both,
eager and compiled, but no GPU has run it yet).

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


def _cuda_convert(pairs: torch.Tensor, inner_k_tiles: int) -> torch.Tensor:
    return torch.ops.aten._convert_weight_to_int4pack(pairs, inner_k_tiles)


def _cuda_mm(x: torch.Tensor, packed: torch.Tensor, group_size: int, scale_zeros: torch.Tensor) -> torch.Tensor:
    return torch._weight_int4pack_mm(x, packed, group_size, scale_zeros)


def _cuda_pack(codes: torch.Tensor, inner_k_tiles: int) -> torch.Tensor:
    """codes (N, K) in [0, 15] on CUDA -> tinygemm's tiles, int32 (N/8, K/(16 t), 32, t/2). Its input is
    (N, K/2) uint8 with column 2j in the high nibble (the opposite of pack_nibbles' order; torch's and
    torchao's tests pack so)."""
    pairs = (codes[:, ::2].to(torch.uint8) << 4) | codes[:, 1::2].to(torch.uint8)
    return _cuda_convert(pairs.contiguous(), inner_k_tiles)


def int4_layout(shape: tuple[int, int], device: torch.device, group_size: int,
                dtype: torch.dtype) -> tuple[str | None, int]:
    """Whose kernel holds an (N, K) int4 weight on `device` with scales of `dtype`, and (CUDA) in how many inner K
    tiles: ("cpu", 1) on a CPU; ("cuda", 8, 4 or 2) where tinygemm can (bf16 only, compute capability 8.0 on:
    its tensor-core tiles; N a multiple of 8, K of 32, groups of 32 to 256); else (None, 0), the nibbles."""
    N, K = shape
    if device.type == "cpu":
        return "cpu", 1
    if (device.type != "cuda" or dtype != torch.bfloat16 or N % 8 or group_size not in (32, 64, 128, 256)
            or torch.cuda.get_device_capability(device)[0] < 8):
        return None, 0
    inner = next((t for t in (8, 4, 2) if K % (16 * t) == 0), 0)
    return ("cuda" if inner else None), inner


def _flat(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # cast and lay out: one op; `to` returns x itself when the dtype is x's already, so then contiguous() lays
    # out a transposed input (Mamba's and Hyena's (B, C, T) activations), which the kernels refuse
    return x.reshape(-1, x.shape[-1]).to(dtype, memory_format=torch.contiguous_format).contiguous()


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
    `packed`, in the tiles of the kernel of the device it is on (`tiles`: "cpu", (N, K/2) uint8; "cuda", int32
    (N/8, K/(16 t), 32, t/2)), else (None) the state dict's nibbles, and `scale_zeros` (K/G, N, 2). Moved to
    another device, a layer repacks its codes for that device's kernel."""

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
        self.tiles: str | None = None  # whose kernel's tiles `packed` holds: "cpu", "cuda" or None (nibbles)

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
        dtype = self.scale_zeros.dtype
        self.tiles, inner = int4_layout(tuple(codes.shape), codes.device, self.group_size, dtype)
        if self.tiles == "cpu":
            self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), inner)
        elif self.tiles == "cuda":
            self.packed = _cuda_pack(codes, inner)
        else:
            self.packed = pack_nibbles(codes)
        self.scale_zeros = torch.stack([scales, zeros], dim=-1).transpose(0, 1).to(dtype).contiguous()

    def codes(self) -> torch.Tensor:
        """The codes (N, K) in [0, 15]. From the tiles where tiles.py reads them, else through the kernel itself:
        the identity matrix times the weights dequantized with scale 1 and zero 8 is exactly q^T (small integers,
        exact in bf16, the kernels' fast dtype)."""
        if self.packed.device.type == "meta":
            return torch.empty(self.out_features, self.in_features, dtype=torch.uint8, device="meta")
        if self.tiles is None:
            return unpack_nibbles(self.packed)
        if self.tiles == "cpu" and tiles.readable(self.out_features):
            return tile_codes(self.packed, 0, self.in_features)
        K, G = self.in_features, self.group_size
        unit = torch.tensor([1.0, 8.0], dtype=torch.bfloat16, device=self.packed.device)
        return self._rows_of_eye(0, K, unit.expand(K // G, self.out_features, 2).contiguous()).round().to(torch.uint8)

    def _rows_of_eye(self, start: int, stop: int, scale_zeros: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """W[:, start:stop] (N, stop - start) through the kernel, with these scales and zeros: rows start..stop
        of the identity times W^T (as costly as a (stop - start)-token forward), `chunk` rows of it at a time (a
        whole identity of a 14336-wide layer would be 411 MB in bf16)."""
        mm = _cuda_mm if self.tiles == "cuda" else torch.ops.aten._weight_int4pack_mm_for_cpu
        parts = []
        for first in range(start, stop, chunk):
            n = min(chunk, stop - first)
            eye = torch.zeros(n, self.in_features, dtype=scale_zeros.dtype, device=self.packed.device)
            rows = torch.arange(n, device=self.packed.device)
            eye[rows, rows + first] = 1
            parts.append(mm(eye, self.packed, self.group_size, scale_zeros))
        return torch.cat(parts).t()

    def dequantized(self) -> torch.Tensor:
        sz = self.scale_zeros.transpose(0, 1)
        return int4_dequantize(self.codes(), sz[..., 0], sz[..., 1])

    def product(self, x: torch.Tensor) -> torch.Tensor:
        """x (M, K) in the compute dtype -> x W^T (M, N)."""
        b = self._buffers  # not nn.Module's attribute fallback (as layers/linear.py): paid per layer and token
        if self.tiles == "cpu" and x.device.type == "cpu":
            return torch._weight_int4pack_mm_for_cpu(x, b["packed"], self.group_size, b["scale_zeros"])
        if self.tiles == "cuda" and x.shape[0] <= self.in_features:
            return _cuda_mm(x, b["packed"], self.group_size, b["scale_zeros"])
        if self.tiles == "cuda":
            # tinygemm's time grows with the rows (it is built for decoding's few), and its tiles have no reader
            # here: past K rows (a long prompt, QLoRA's forward) the layer reads its weights through it as K rows
            # of the identity, then runs one GEMM; a heuristic, with the break-even unmeasured (gpu.sh)
            return F.linear(x, self._rows_of_eye(0, self.in_features, b["scale_zeros"]))
        return F.linear(x, self.dequantized().to(x.dtype))

    def columns(self, start: int, stop: int) -> torch.Tensor:
        """W[:, start:stop] dequantized, (N, stop - start) in the compute dtype; start and stop whole groups (or
        stop = K). From the nibbles, or the CPU tiles where tiles.py reads them; otherwise through the kernel."""
        dtype, G = self.scale_zeros.dtype, self.group_size
        if self.tiles == "cuda" or self.tiles == "cpu" and not tiles.readable(self.out_features):
            return self._rows_of_eye(start, stop, self.scale_zeros)
        sz = self.scale_zeros[start // G:(stop + G - 1) // G].transpose(0, 1)  # (N, groups, 2)
        codes = (tile_codes(self.packed, start, stop) if self.tiles == "cpu"
                 else unpack_nibbles(self.packed[:, start // 2:stop // 2]))
        return int4_dequantize(codes, sz[..., 0], sz[..., 1]).to(dtype)

    def _apply(self, fn, recurse=True):
        """Module.to and the like. A move to another device repacks the codes for that device's kernel (tiles
        are one kernel's own, and the CUDA ones can only be read on CUDA): read here, packed there; so does a
        cast that changes which kernel holds the layer (tinygemm takes bf16 scales only)."""
        before, dtype = self.packed.device, self.scale_zeros.dtype
        after = fn(torch.empty(0, dtype=dtype, device=before))  # where fn sends this layer's scales
        shape, G = (self.out_features, self.in_features), self.group_size
        if before.type == "meta" or after.device == before and \
                int4_layout(shape, after.device, G, after.dtype)[0] == self.tiles:
            return super()._apply(fn, recurse)
        codes = self.codes()
        super()._apply(fn, recurse)
        sz = self.scale_zeros.transpose(0, 1)
        self.set_codes(codes.to(after.device), sz[..., 0], sz[..., 1])
        return self

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
        # onto this layer's device (a CPU state dict into a layer on CUDA); a layer on meta takes the tensors'
        device = None if self.packed.device.type == "meta" else self.packed.device
        codes, scales, zeros = (state_dict[prefix + n].to(device) for n in ("qweight", "scales", "zeros"))
        self.set_codes(unpack_nibbles(codes), scales, zeros)
        if self.bias is not None:
            self.bias = state_dict[prefix + "bias"].to(device)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, int4, "
                f"group_size={self.group_size}, {self.scale_zeros.dtype}")
