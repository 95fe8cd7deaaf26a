"""int4 on CUDA: tinygemm's kernel (aten._weight_int4pack_mm) over its own tiles (quant/linear.py). The first test
runs anywhere: it stands a reference for the two CUDA ops (tinygemm's documented input: column 2j in the high
nibble; W = (q - 8) s + z, sz (K/G, N, 2)) in for them on the CPU, and checks what llmarch builds around them:
the nibble order it packs, the codes and columns read back through the kernel, the checkpoint form. The others
need a CUDA device of compute capability 8.0 on and are skipped without one."""
import pytest
import torch

import llmarch
from conftest import tiny
from llmarch.quant import linear, quantize
from llmarch.quant.linear import Int4Linear
from llmarch.quant.rtn import int4_dequantize, int4_rtn

CUDA = torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device of compute capability 8.0 on (tinygemm)")


def reference_mm(x, pairs, group_size, scale_zeros):
    """What tinygemm computes, from its input form (N, K/2) uint8 with column 2j in the high nibble."""
    codes = torch.stack([pairs >> 4, pairs & 15], dim=-1).reshape(pairs.shape[0], -1)
    sz = scale_zeros.transpose(0, 1)
    return (x.float() @ int4_dequantize(codes, sz[..., 0], sz[..., 1]).t()).to(x.dtype)


def test_the_cuda_layout_packs_reads_back_and_saves_what_tinygemm_expects(monkeypatch):
    # tinygemm's rule as int4_layout has it, bf16 only, with this CPU standing for the CUDA device
    monkeypatch.setattr(linear, "int4_layout",
                        lambda shape, device, group_size, dtype: ("cuda", 8) if dtype == torch.bfloat16 else (None, 0))
    monkeypatch.setattr(linear, "_cuda_convert", lambda pairs, inner: pairs)
    monkeypatch.setattr(linear, "_cuda_mm", reference_mm)
    torch.manual_seed(0)
    w = torch.randn(64, 256)
    codes, scales, zeros = int4_rtn(w, 32)
    layer = Int4Linear.from_weight(w, None, 32, torch.bfloat16)
    assert layer.tiles == "cuda"
    expected = int4_dequantize(codes, scales.bfloat16(), zeros.bfloat16())  # the layer keeps bf16 scales
    assert torch.equal(layer.codes(), codes)
    assert torch.allclose(layer.columns(64, 128).float(), expected[:, 64:128], atol=1e-2)
    for rows in (3, 300):  # past K rows, one GEMM on the weights read through the kernel
        x = torch.randn(rows, 256)
        ref = x @ expected.t()
        assert (layer(x) - ref).norm() / ref.norm() < 5e-3  # bf16 activations and outputs (2-3e-3 here)

    # a cast off bf16 repacks as nibbles (dequantized per call), back onto bf16 as tiles again, the codes unchanged
    layer.float()
    assert layer.tiles is None and torch.equal(layer.codes(), codes)
    layer.bfloat16()
    assert layer.tiles == "cuda" and torch.equal(layer.codes(), codes)
    assert layer.to("meta").packed.device.type == "meta"
    layer = Int4Linear.from_weight(w, None, 32, torch.bfloat16)
    state = layer.state_dict()  # the portable form, whatever the tiles
    monkeypatch.undo()
    on_cpu = Int4Linear(256, 64, False, 32, torch.bfloat16)
    on_cpu.load_state_dict(state)
    assert on_cpu.tiles == "cpu" and torch.equal(on_cpu.codes(), codes)


@needs_cuda
def test_int4_on_cuda_runs_on_tinygemm_and_matches_the_dequantized_weights():
    torch.manual_seed(0)
    w = torch.randn(256, 512, device="cuda")
    layer = Int4Linear.from_weight(w, None, 64, torch.bfloat16)
    codes, scales, zeros = int4_rtn(w, 64)
    assert layer.tiles == "cuda" and torch.equal(layer.codes(), codes)
    for rows in (4, 600):  # tinygemm; past K rows, a GEMM on the weights read through it
        x = torch.randn(rows, 512, device="cuda")
        ref = x @ int4_dequantize(codes, scales.bfloat16(), zeros.bfloat16()).t()
        assert (layer(x) - ref).norm() / ref.norm() < 5e-3  # bf16 activations and outputs


@needs_cuda
def test_an_int4_model_moves_between_cpu_and_cuda_repacking_its_codes():
    model = quantize(tiny(vocab_size=128), "int4", 32)
    layers = [m for m in model.modules() if isinstance(m, Int4Linear)]
    before = [m.codes() for m in layers]
    ids = torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(0))
    logits = model(ids).logits
    model.cuda()
    assert all(m.tiles == "cuda" for m in layers)
    assert all(torch.equal(m.codes().cpu(), c) for m, c in zip(layers, before))
    moved = model(ids.cuda()).logits.cpu()
    assert (moved - logits).norm() / logits.norm() < 1e-2
    tokens = llmarch.generate(model, ids.cuda(), max_new_tokens=6)
    assert torch.equal(llmarch.generate(model, ids.cuda(), max_new_tokens=6, compile=True), tokens)
    model.cpu()
    assert all(m.tiles == "cpu" for m in layers) and all(torch.equal(m.codes(), c) for m, c in zip(layers, before))
