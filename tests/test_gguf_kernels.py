"""A GGUF file's Q4_0/Q4_1/Q8_0 matrices kept quantized on llmarch's kernels (interop/gguf_kernels.py)."""
import json

import gguf
import pytest
import torch

import llmarch
from fixtures_gguf import smollm2_gguf  # noqa: F401 (a fixture)
from llmarch.cli import main
from llmarch.interop.gguf import open_gguf
from llmarch.interop.gguf_kernels import expected_scheme, file_scheme
from llmarch.interop.gguf_writer import to_gguf
from llmarch.layers.linear import Linear
from llmarch.quant import Int4Linear, Int8Linear, weight_bytes
from llmarch.quant.linear import Int8Embedding


def llama_cpp_tokens(path, ids: torch.Tensor, n: int = 8) -> list[int]:
    """llama.cpp's greedy continuation of ids (1, T) on the file, n tokens (the test skips without it)."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama.cpp's decode needs llama-cpp-python (make llama-cpp)")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, verbose=False)
    theirs = []
    for t in llm.generate(ids[0].tolist(), top_k=1, temp=0.0):
        theirs.append(t)
        if len(theirs) == n:
            break
    return theirs


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return llmarch.build("llama-tiny", n_layers=2).eval()


@pytest.mark.parametrize("dtype,method", [("q8_0", "int8"), ("q4_1", "int4"), ("q4_k", "int4"), ("q5_0", "int8"),
                                          ("q6_k", "int8"), ("f32", None), ("f16", None)])
def test_the_files_types_choose_the_scheme(tiny, tmp_path, dtype, method):
    path = tmp_path / f"m.{dtype}.gguf"
    to_gguf(tiny, path, dtype)
    scheme = file_scheme(open_gguf(path))
    assert (scheme and scheme.method) == method
    model = llmarch.from_gguf(path, kernels=True)
    linears = [m for m in model.modules() if isinstance(m, (Int8Linear, Int4Linear, torch.nn.Linear))]
    kind = {"int8": Int8Linear, "int4": Int4Linear}.get(method, Linear)  # llmarch's float one
    assert linears and all(type(m) is kind for m in linears)
    ids = torch.randint(0, tiny.config.vocab_size, (1, 24))
    with torch.no_grad():
        ref, got = llmarch.from_gguf(path)(ids).logits, model(ids).logits
    if method is None:
        assert torch.equal(ref, got)
    else:  # int8 per channel re-quantized from Q8_0's blocks, int4 the Q4_1 codes, in bf16: close, not equal
        assert 0 < (ref - got).abs().max() < 0.05 * ref.abs().max()


def test_generate_decodes_a_gguf_on_the_kernels(tiny, tmp_path, capsys):
    """`llmarch generate` on a Q8_0 file decodes on the int8 kernels: what from_gguf(kernels=True) gives."""
    from llmarch.data.tokenizer import train_bpe
    from llmarch.generate.text import generate_text
    from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer

    tok = train_bpe(["def main():\n    return 12345\n" * 40, "class Foo:\n    pass\n" * 40], vocab_size=300)
    path = tmp_path / "m.q8_0.gguf"
    to_gguf(tiny, path, "q8_0", tok)
    want = generate_text(llmarch.from_gguf(path, kernels=True), checkpoint_tokenizer(path), ["def main"], max_new_tokens=8,
                         temperature=0)[0]
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(path), "--prompt", "def main", "--max-new-tokens", "8",
                 "--temperature", "0"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == want.strip() and out != "def main"  # something decoded


def test_smollm2_q4_1_runs_on_int4_with_the_files_codes(smollm2_gguf):  # noqa: F811
    """SmolLM2's Q4_1 matrices become int4 groups of 32 whose values are the file's (up to the bf16 rounding of
    its fp16 scales), its Q8_0 embedding (tied head) int8 per row; it still answers."""
    from llmarch.generate.text import generate_text
    from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer

    model = llmarch.from_gguf(smollm2_gguf, kernels=True)
    assert model.quantization.method == "int4" and model.quantization.group_size == 32
    assert isinstance(model.embed, Int8Embedding) and model.quantization.head_int8
    assert isinstance(model.lm_head, Int8Linear)  # as the file holds its (tied) head: Q8_0, not Q4_1
    layer = model.blocks[0].mlp.down
    assert isinstance(layer, Int4Linear)
    t = next(t for t in gguf.GGUFReader(smollm2_gguf).tensors if t.name == "blk.0.ffn_down.weight")
    file_values = torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).copy()).float()
    ours = layer.dequantized().float()
    assert ours.shape == file_values.shape
    assert (ours - file_values).abs().max() <= 2 ** -7 * file_values.abs().max()
    prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    text = generate_text(model, checkpoint_tokenizer(smollm2_gguf), [prompt], max_new_tokens=12, temperature=0)[0]
    assert "Paris" in text.split("assistant")[-1], text


def test_head_int8_survives_a_quantized_checkpoint(tiny, tmp_path):
    """quantize(..., head_int8=True): int4 layers, an int8 head, and the same modules and logits after
    save_quantized and load."""
    import copy

    from llmarch.quant import quantize
    from llmarch.quant.checkpoint import load_quantized, save_quantized

    q = quantize(copy.deepcopy(tiny), "int4", 32, head_int8=True)
    assert isinstance(q.lm_head, Int8Linear) and isinstance(q.blocks[0].attn.qkv_proj, Int4Linear)
    save_quantized(q, q.quantization, tmp_path / "q")
    back = load_quantized(tmp_path / "q")
    assert isinstance(back.lm_head, Int8Linear) and back.quantization.head_int8
    ids = torch.randint(0, tiny.config.vocab_size, (1, 10))
    with torch.no_grad():
        assert torch.equal(q(ids).logits, back(ids).logits)


def test_quantized_as_read_equals_quantized_after_loading(tiny, tmp_path):
    """from_gguf(kernels=True) quantizes each layer as it is read (no fp32 model held): the same layers, bit for
    bit, as quantizing the whole dequantized model afterwards; nothing is left on the meta device."""
    from llmarch.quant import quantize

    path = tmp_path / "m.q8_0.gguf"
    to_gguf(tiny, path, "q8_0")
    scheme = file_scheme(open_gguf(path))
    after = quantize(llmarch.from_gguf(path), scheme.method, scheme.group_size, head=scheme.head,
                     embeddings=scheme.embeddings, head_int8=scheme.head_int8)
    as_read = llmarch.from_gguf(path, kernels=True)
    assert not any(t.is_meta for t in [*as_read.parameters(), *as_read.buffers()])
    mine, theirs = as_read.state_dict(), after.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_file_codes_hold_q4_0_and_q4_1_blocks_exactly():
    """The int4 codes, scales and zeros found from a dequantized Q4_0, Q4_1 or mixed matrix give back its values
    exactly. Round-to-nearest between a group's min and max does for Q4_1, but not for a Q4_0 block that does
    not reach q = 15 (it did not before file_codes: 4% of the largest weight off on a tiny LLaMA's Q4_0 file)."""
    from llmarch.interop.gguf_kernels import file_codes
    from llmarch.quant.rtn import int4_dequantize, int4_rtn

    torch.manual_seed(0)
    w = torch.randn(32, 128)
    w[:, :32] *= torch.linspace(-1, 1, 32).sign()  # some blocks whose largest |x| is negative, some positive
    blocks = {}
    for kind in (gguf.GGMLQuantizationType.Q4_0, gguf.GGMLQuantizationType.Q4_1):
        q = gguf.quants.quantize(w.numpy(), kind)
        blocks[kind.name] = torch.from_numpy(gguf.quants.dequantize(q, kind).copy()).reshape(w.shape)
    mixed = torch.cat([blocks["Q4_0"][:, :64], blocks["Q4_1"][:, 64:]], dim=1)
    for name, deq in [*blocks.items(), ("mixed", mixed)]:
        *codes, exact = file_codes(deq, 32)
        assert exact and torch.equal(int4_dequantize(*codes), deq), name
    assert not torch.equal(int4_dequantize(*int4_rtn(blocks["Q4_0"], 32)), blocks["Q4_0"])  # what it mends


def test_file_codes_hold_q4_k_blocks_exactly():
    """Q4_K blocks (written by gguf_kquants.py, read back by the gguf package) whose sub-blocks mostly do not
    reach q = 0 or 15: the codes file_codes finds give the dequantized values again; min-max rounding does not."""
    import numpy as np

    from llmarch.interop.gguf_kernels import file_codes
    from llmarch.interop.gguf_kquants import quantize_q4_k
    from llmarch.quant.rtn import int4_dequantize, int4_rtn

    torch.manual_seed(0)
    w = torch.randn(16, 512)
    w[0, :32] = w[0, :32].abs()  # a sub-block of positive weights: its min is clamped to 0
    blocks = quantize_q4_k(w.numpy())
    assert blocks.shape == (16, 2 * 144) and blocks.dtype == np.uint8
    deq = torch.from_numpy(gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType.Q4_K).copy())
    assert (deq - w).abs().max() < 0.1 * w.abs().max()  # a 4-bit quantization of w
    *codes, exact = file_codes(deq, 32)
    assert exact and (int4_dequantize(*codes) - deq).abs().max() <= 1e-5 * deq.abs().max()
    assert (int4_dequantize(*int4_rtn(deq, 32)) - deq).abs().max() > 1e-3 * deq.abs().max()
    q8 = torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(w.numpy(), gguf.GGMLQuantizationType.Q8_0),
                                                 gguf.GGMLQuantizationType.Q8_0).copy())
    assert not file_codes(q8, 32)[3]  # 8 bits: no int4 codes hold it


def test_a_q4_k_file_runs_on_int4_beside_int8(tmp_path):
    """A Q4_K file whose FFN width (320) is not of whole 256-blocks holds its down projections in Q5_0, as
    llama.cpp falls back: the Q4_K layers go onto int4 with the file's values, the Q5_0 ones onto int8 (the
    scheme's int8_layers), the scheme survives a quantized checkpoint, and llama.cpp decodes the file as llmarch
    does."""
    from llmarch.data.tokenizer import ByteTokenizer
    from llmarch.quant.checkpoint import load_quantized, save_quantized

    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", vocab_size=272, d_model=256, n_layers=2, n_heads=4, n_kv_heads=2,
                          ffn_hidden=320, context_length=64).eval()
    path = tmp_path / "m.q4_k.gguf"
    to_gguf(model, path, "q4_k", ByteTokenizer())
    types = {t.name: t.tensor_type.name for t in open_gguf(path).tensors if len(t.shape) > 1}
    assert types["blk.0.ffn_down.weight"] == "Q5_0" and types["blk.0.ffn_up.weight"] == "Q4_K"
    deq, q = llmarch.from_gguf(path).eval(), llmarch.from_gguf(path, kernels=True)
    assert q.quantization.method == "int4" and q.quantization.int8_layers == ("blocks.0.mlp.down", "blocks.1.mlp.down")
    assert isinstance(q.blocks[0].mlp.down, Int8Linear) and isinstance(q.blocks[0].mlp.gate_up, Int4Linear)
    for name in ("blocks.0.mlp.gate_up", "blocks.1.attn.qkv_proj", "blocks.1.attn.o_proj"):
        want = deq.get_submodule(name).weight
        got = q.get_submodule(name).dequantized().float()
        assert (got - want).abs().max() <= 2 ** -7 * want.abs().max(), name  # the file's values, scales in bf16
    ids = torch.randint(0, 272, (1, 12))
    with torch.no_grad():
        ref, got = deq(ids).logits, q(ids).logits
    assert (ref - got).abs().max() < 0.05 * ref.abs().max()
    save_quantized(q, q.quantization, tmp_path / "q")
    back = load_quantized(tmp_path / "q")
    assert back.quantization == q.quantization and isinstance(back.blocks[1].mlp.down, Int8Linear)
    with torch.no_grad():
        assert torch.equal(back(ids).logits, got)
    assert llama_cpp_tokens(path, ids) == llmarch.generate(deq, ids, max_new_tokens=8)[0, 12:].tolist()


def test_a_row_of_no_whole_blocks_goes_to_int8(tmp_path):
    """A Q4_0 file whose FFN width (48) is no multiple of 32 keeps its down projections F16, as the converter
    does: loading puts them on int8 (named in int8_layers) instead of refusing the group size, and a quantized
    checkpoint of the model loads again (it refused the width 48 before)."""
    from llmarch.quant.checkpoint import load_quantized, save_quantized

    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", vocab_size=272, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                          ffn_hidden=48, context_length=64).eval()
    path = tmp_path / "m.q4_0.gguf"
    to_gguf(model, path, "q4_0")
    assert {t.name: t.tensor_type.name for t in open_gguf(path).tensors}["blk.0.ffn_down.weight"] == "F16"
    q = llmarch.from_gguf(path, kernels=True)
    assert q.quantization.int8_layers == ("blocks.0.mlp.down", "blocks.1.mlp.down")
    assert isinstance(q.blocks[0].mlp.down, Int8Linear) and isinstance(q.blocks[0].mlp.gate_up, Int4Linear)
    save_quantized(q, q.quantization, tmp_path / "q")
    ids = torch.randint(0, 272, (1, 12))
    with torch.no_grad():
        assert torch.equal(load_quantized(tmp_path / "q")(ids).logits, q(ids).logits)


def test_q6_k_and_q4_k_m_files(tmp_path, capsys):
    """Q6_K out (gguf_kquants.quantize_q6_k), read back by the gguf package within 6-bit rounding, and Q4_K_M:
    Q4_K with llama.cpp's choice of Q6_K for the output matrix (here the tied embedding) and for attn_v and
    ffn_down of layers 0, 3, 6 and 7 of 8 (use_more_bits). On the kernels the Q4_K layers are int4 and those
    with Q6_K rows int8; llama.cpp decodes both files to llmarch's tokens."""
    from llmarch.data.tokenizer import ByteTokenizer

    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", vocab_size=272, d_model=256, n_layers=8, n_heads=4, n_kv_heads=2,
                          ffn_hidden=512, context_length=64, tie_embeddings=True).eval()
    ids = torch.randint(0, 272, (1, 12))
    for dtype in ("q6_k", "q4_k_m"):
        path = tmp_path / f"m.{dtype}.gguf"
        to_gguf(model, path, dtype, ByteTokenizer())
        types = {t.name: t.tensor_type.name for t in open_gguf(path).tensors if len(t.shape) > 1}
        if dtype == "q6_k":
            assert set(types.values()) == {"Q6_K"}
        else:
            more = {i for i in range(8) if types[f"blk.{i}.attn_v.weight"] == "Q6_K"}
            assert more == {0, 3, 6, 7} and types["token_embd.weight"] == "Q6_K"
            assert all(types[f"blk.{i}.ffn_down.weight"] == ("Q6_K" if i in more else "Q4_K") for i in range(8))
            assert types["blk.1.attn_q.weight"] == types["blk.1.ffn_up.weight"] == "Q4_K"
        deq = llmarch.from_gguf(path).eval()
        with torch.no_grad():
            want, got = model(ids).logits, deq(ids).logits
        bound = 0.04 if dtype == "q6_k" else 0.1  # 3% and 7% here; Q8_0 0.8%, Q5_0 5.5%, Q4_K 12%
        assert (got - want).abs().max() < bound * want.abs().max(), dtype
        if dtype == "q4_k_m":
            q = llmarch.from_gguf(path, kernels=True)
            assert q.quantization.method == "int4"
            assert set(q.quantization.int8_layers) == {f"blocks.{i}.{part}" for i in (0, 3, 6, 7)
                                                       for part in ("attn.qkv_proj", "mlp.down")}
            assert isinstance(q.blocks[1].mlp.down, Int4Linear) and isinstance(q.blocks[3].mlp.down, Int8Linear)
            # what `llmarch info` reports without loading: the same scheme from the tensor types, the same bytes
            expected = expected_scheme(path)
            assert set(expected.int8_layers) == set(q.quantization.int8_layers)
            assert expected.method == q.quantization.method and expected.head_int8 == q.quantization.head_int8
            assert main(["info", str(path), "--json"]) == 0
            assert json.loads(capsys.readouterr().out)["weight_bytes"] == weight_bytes(q)
        assert llama_cpp_tokens(path, ids) == llmarch.generate(deq, ids, max_new_tokens=8)[0, 12:].tolist(), dtype


def test_an_iq4_nl_file_runs_on_int8_and_as_llama_cpp_reads_it(tmp_path):
    """IQ4_NL's block is Q4_0's (fp16 d and 16 bytes of 4-bit codes) with a non-uniform codebook, w = d k[q]: a Q4_0
    file with its matrices retyped is an IQ4_NL file. llmarch dequantizes it through the gguf package as llama.cpp
    reads it (the same greedy tokens), and on the kernels holds it in int8 (int4's levels are evenly spaced)."""
    import copy

    from llmarch.data.tokenizer import ByteTokenizer
    from llmarch.interop.gguf_file import GGUFFile
    from llmarch.quant.apply import quantize

    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", vocab_size=272, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                          ffn_hidden=128, context_length=64).eval()
    to_gguf(model, tmp_path / "q4_0.gguf", "q4_0", ByteTokenizer())
    data = bytearray((tmp_path / "q4_0.gguf").read_bytes())
    header = GGUFFile(str(tmp_path / "q4_0.gguf")).data_offset
    for t in GGUFFile(str(tmp_path / "q4_0.gguf")).tensors:
        if t.tensor_type.name == "Q4_0":  # the record: name, n_dims, dims, then the type
            name = int.to_bytes(len(t.name), 8, "little") + t.name.encode()
            at = data.index(name, 0, header) + len(name) + 4 + 8 * len(t.shape)
            assert int.from_bytes(data[at:at + 4], "little") == gguf.GGMLQuantizationType.Q4_0
            data[at:at + 4] = int(gguf.GGMLQuantizationType.IQ4_NL).to_bytes(4, "little")
    path = tmp_path / "iq4_nl.gguf"
    path.write_bytes(bytes(data))
    assert {t.tensor_type.name for t in open_gguf(path).tensors if len(t.shape) > 1} == {"IQ4_NL"}
    deq, q = llmarch.from_gguf(path).eval(), llmarch.from_gguf(path, kernels=True)
    assert q.quantization.method == "int8" and isinstance(q.blocks[0].mlp.down, Int8Linear)
    ids = torch.randint(0, 272, (1, 12))
    rtn = quantize(copy.deepcopy(deq), q.quantization)  # int8 round-to-nearest of the file's values
    with torch.no_grad():
        ref, got, q4 = deq(ids).logits, q(ids).logits, llmarch.from_gguf(tmp_path / "q4_0.gguf")(ids).logits
        assert torch.equal(got, rtn(ids).logits)
    assert (ref - got).abs().max() < 0.1 * ref.abs().max()  # int8's re-quantization and bf16
    assert (ref - q4).abs().max() > 0.5 * ref.abs().max()  # the codebook's levels, not Q4_0's
    assert llama_cpp_tokens(path, ids) == llmarch.generate(deq, ids, max_new_tokens=8)[0, 12:].tolist()


def test_q4_k_m_of_a_mixture(tmp_path, capsys):
    """Q4_K_M of an 8-expert model: attn_k and attn_v Q8_0, the experts' ffn_down Q6_K on the layers use_more_bits
    picks (here their 384-wide rows fall back: Q8_0, else Q5_0); `llmarch info` counts each expert's int8 layers
    as loading makes them, to the byte."""
    torch.manual_seed(0)
    model = llmarch.build("mixtral-tiny", n_layers=2, context_length=64).eval()
    path = tmp_path / "m.q4_k_m.gguf"
    to_gguf(model, path, "q4_k_m")
    types = {t.name: t.tensor_type.name for t in open_gguf(path).tensors}
    assert types["blk.0.attn_v.weight"] == types["blk.1.attn_k.weight"] == "Q8_0"
    assert types["blk.1.ffn_down_exps.weight"] == "Q8_0" and types["blk.0.ffn_down_exps.weight"] == "Q5_0"
    assert types["blk.0.ffn_up_exps.weight"] == "Q4_K"
    q = llmarch.from_gguf(path, kernels=True)
    assert set(expected_scheme(path).int8_layers) == set(q.quantization.int8_layers)
    assert "blocks.1.mlp.experts.down.7" in q.quantization.int8_layers
    assert main(["info", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["weight_bytes"] == weight_bytes(q)
