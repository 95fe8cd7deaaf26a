import copy

import pytest
import torch
import torch.nn.functional as F

import llmarch
from llmarch.cli import main
from llmarch import LlmarchError
from llmarch.quant import Int4Linear, Int8Linear, quantize, weight_bytes
from llmarch.quant.experts import QuantExperts
from llmarch.quant.hqq import int4_hqq
from llmarch.quant.linear import Int8Embedding
from llmarch.transforms import for_cpu_decoding
from llmarch.quant.rtn import int4_dequantize, int4_rtn, pack_nibbles, unpack_nibbles

from conftest import tiny


def decisive(model):
    """A random model whose next token is clear (logits far apart), so greedy decoding is a fair test."""
    with torch.no_grad():
        model.lm_head.weight.mul_(30)
    return model


def dequantized_copy(model, q):
    """The full-precision model with each quantized weight replaced by its dequantized values."""
    ref, layers = copy.deepcopy(model), dict(q.named_modules())
    for name, module in ref.named_modules():
        if isinstance(layers.get(name), (Int8Linear, Int4Linear)):
            module.weight = torch.nn.Parameter(layers[name].dequantized())
        elif isinstance(layers.get(name), QuantExperts):
            module.w_in.data = torch.stack([lin.dequantized() for lin in layers[name].w_in])
            module.down.data = torch.stack([lin.dequantized() for lin in layers[name].down])
    return ref


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def test_kernels_equal_the_dequantized_weights_in_fp32():
    torch.manual_seed(0)
    w, b, x = torch.randn(48, 128), torch.randn(48), torch.randn(2, 3, 128)
    q8 = Int8Linear.from_weight(w, b, torch.float32)
    torch.testing.assert_close(q8(x), F.linear(x, q8.dequantized(), b), atol=1e-4, rtol=1e-5)
    assert (q8.dequantized() - w).abs().max() <= w.abs().amax(1).max() / 254 + 1e-6
    for method in ("int4", "int4-hqq"):
        q4 = Int4Linear.from_weight(w, b, 32, torch.float32, method)
        torch.testing.assert_close(q4(x), F.linear(x, q4.dequantized(), b), atol=1e-4, rtol=1e-5)
    codes, scales, zeros = int4_rtn(w, 32)
    q4 = Int4Linear.from_weight(w, None, 32, torch.float32)
    assert torch.equal(q4.codes(), codes)  # read back from the kernel's tiles exactly
    assert torch.equal(unpack_nibbles(pack_nibbles(codes)), codes)
    assert (int4_dequantize(codes, scales, zeros) - w).abs().max() <= (scales.max() / 2) * 1.001


def test_hqq_fits_the_weights_better_than_round_to_nearest():
    torch.manual_seed(0)
    w = torch.distributions.StudentT(3.0).sample((256, 256))  # heavy tails, as trained weights have
    err = {name: (int4_dequantize(*fn(w, 64)) - w).abs().mean() for name, fn in (("rtn", int4_rtn), ("hqq", int4_hqq))}
    assert err["hqq"] < err["rtn"]


@pytest.mark.parametrize("method,group,tol", [("int8", 64, 0.03), ("int4", 32, 0.15), ("int4-hqq", 32, 0.15)])
def test_quantized_logits_close_to_full_precision(method, group, tol):
    model = tiny(vocab_size=128)
    ids = torch.randint(0, 128, (2, 24))
    ref = logits(model, ids)
    q = quantize(copy.deepcopy(model), method, group)
    assert not any(type(m) is torch.nn.Linear for m in q.modules())
    rel = (logits(q, ids) - ref).norm() / ref.norm()
    assert rel < tol
    assert weight_bytes(q) < weight_bytes(model)


def test_every_tiny_preset_quantizes_and_decodes():
    """Every family's linear layers (and experts) quantized, with fp32 activations too: Mamba's, Hyena's and
    Griffin's transposed (B, C, T) inputs once reached the kernels, which refuse them, as they were."""
    from llmarch.presets import PRESETS

    for name in [k for k in PRESETS if k.endswith("-tiny")]:
        torch.manual_seed(0)
        model = llmarch.build(name, vocab_size=128).eval()
        ids = torch.randint(0, 128, (1, 12))
        extra = dict(decoder_input_ids=ids[:, :4]) if model.config.is_encoder_decoder else {}
        for method in ("int8", "int4") if name in ("mamba-tiny", "hyena-tiny", "griffin-tiny") else ("int8",):
            q = quantize(copy.deepcopy(model), method, 32, compute_dtype="float32")
            assert not any(type(m) is torch.nn.Linear for m in q.modules()), name
            with torch.no_grad():
                ref, out = model(ids, **extra).logits, q(ids, **extra).logits
            assert (out - ref).norm() / ref.norm() < (0.1 if method == "int8" else 0.3), (name, method)
            if model.config.causal and not model.config.is_encoder_decoder:
                assert llmarch.generate(q, ids[:, :4], max_new_tokens=3, temperature=0).shape == (1, 7)


def test_a_bitnet_model_is_refused():
    """BitNet's online BitLinear rounds its weights and activations as it runs: int8 layers in its place gave logits
    110% (relative) away, silently."""
    model = llmarch.build("llama-tiny", n_layers=1, vocab_size=128, bitlinear="online", sub_norm=True, ffn="relu2_glu")
    with pytest.raises(LlmarchError, match="BitLinear"):
        quantize(model, "int8")


def test_int8_embeddings():
    model = tiny(vocab_size=128)
    ids = torch.randint(0, 128, (2, 24))
    ref = logits(model, ids)
    q = quantize(copy.deepcopy(model), "int8", embeddings=True)
    assert isinstance(q.embed, Int8Embedding) and q.embed.weight.dtype == torch.int8
    assert (logits(q, ids) - ref).norm() / ref.norm() < 0.03
    with pytest.raises(LlmarchError, match="embeddings=True needs head=True"):
        quantize(copy.deepcopy(model), "int8", head=False, embeddings=True)


def test_int8_greedy_tokens_equal_full_precision():
    model = decisive(tiny(vocab_size=128))
    prompt = torch.tensor([[5, 17, 33, 2]])
    want = llmarch.generate(model, prompt, max_new_tokens=24, temperature=0)
    got = llmarch.generate(quantize(copy.deepcopy(model), "int8"), prompt, max_new_tokens=24, temperature=0)
    assert torch.equal(got, want)


def test_moe_experts_are_quantized_per_expert():
    model = tiny("mixtral-tiny", vocab_size=128)
    ids = torch.randint(0, 128, (2, 12))
    q = quantize(copy.deepcopy(model), "int4", 32, compute_dtype="float32")
    experts = next(m for m in q.modules() if isinstance(m, QuantExperts))
    n = model.config.n_experts
    assert len(experts.w_in) == n and isinstance(experts.down[0], Int4Linear)
    assert experts.w_in[0].in_features == model.config.d_model
    ref = dequantized_copy(model, q)
    torch.testing.assert_close(logits(q, ids), logits(ref, ids), atol=1e-4, rtol=1e-4)
    out = llmarch.generate(quantize(copy.deepcopy(model), "int8"), ids[:1, :4], max_new_tokens=6, temperature=0)
    assert out.shape == (1, 10)


def test_quantized_checkpoint_round_trip(tmp_path):
    from llmarch.quant import Scheme
    from llmarch.quant.checkpoint import save_quantized

    model = tiny(vocab_size=128)
    ids = torch.randint(0, 128, (2, 10))
    for method in ("int8", "int4"):
        q = quantize(copy.deepcopy(model), method, 32, embeddings=method == "int4")
        save_quantized(q, Scheme(method, 32, embeddings=method == "int4"), tmp_path / method)
        loaded = llmarch.load(tmp_path / method)
        assert loaded.quantization.method == method
        assert torch.equal(logits(loaded, ids), logits(q, ids))
        assert weight_bytes(loaded) == weight_bytes(q)


@pytest.fixture
def checkpoint(tmp_path):
    from llmarch.checkpoint import save_model
    from llmarch.data.tokenizer import ByteTokenizer

    folder = tmp_path / "fp32"
    save_model(decisive(tiny(vocab_size=257, d_model=96, n_heads=4)), folder)
    ByteTokenizer().save(folder)
    return folder


def test_cli_quantize_then_generate_and_eval(checkpoint, tmp_path, capsys, corpus):
    for method, extra in (("int8", []), ("int4-hqq", []), ("int4-gptq", ["--calibration-tokens", "512"]),
                          ("int8-gptq", ["--calibration-tokens", "512"])):
        out = tmp_path / method
        group = ["--group-size", "32"] if method.startswith("int4") else []
        assert main(["quantize", "--checkpoint", str(checkpoint), "--method", method, *group,
                     *extra, "--out", str(out)]) == 0
        assert "MiB ->" in capsys.readouterr().out
        assert (out / "quantization.json").is_file()
        assert main(["generate", "--checkpoint", str(out), "--prompt", "def ", "--max-new-tokens", "8",
                     "--temperature", "0"]) == 0
        assert capsys.readouterr().out.startswith("def ")
    assert main(["generate", "--checkpoint", str(checkpoint), "--prompt", "def ", "--max-new-tokens", "8",
                 "--temperature", "0"]) == 0
    full = capsys.readouterr().out
    assert main(["generate", "--checkpoint", str(tmp_path / "int8"), "--prompt", "def ", "--max-new-tokens", "8",
                 "--temperature", "0"]) == 0
    assert capsys.readouterr().out == full  # int8: the same greedy tokens
    assert main(["eval", "--checkpoint", str(tmp_path / "int8"), "--data", corpus, "--json"]) == 0
    capsys.readouterr()
    # to GGUF: the float parameters the file holds are counted, not the quantized model's norms and embeddings
    float_count = sum(p.numel() for p in llmarch.load(checkpoint).parameters())
    assert main(["convert", "--to-gguf", str(tmp_path / "int4-hqq"), "--out", str(tmp_path / "q.gguf")]) == 0
    assert f"{float_count:,} parameters" in capsys.readouterr().out


@pytest.mark.parametrize("args,text", [
    (("--method", "int4", "--group-size", "64"), "group size 64 does not divide the width 96"),
    (("--method", "int4", "--group-size", "48"), "group_size must be one of"),
    (("--method", "int5"), "invalid choice: 'int5'"),
    (("--method", "int4-gptq", "--group-size", "32", "--calibration-tokens", "0"), "must be at least 1, got 0"),
    (("--method", "int4", "--group-size", "32", "--calibration-tokens", "64"), "is for --method int4-gptq"),
    (("--method", "int8", "--group-size", "48"), "--group-size is for the int4 methods"),  # was written as is
])
def test_cli_quantize_bad_input_is_one_line_and_writes_nothing(checkpoint, tmp_path, capsys, args, text):
    out = tmp_path / "q"
    try:
        code = main(["quantize", "--checkpoint", str(checkpoint), *args, "--out", str(out)])
    except SystemExit as e:  # the option parser's errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and text in err, err
    assert not out.exists()


def _linear_inputs(model, ids) -> dict:
    """Each nn.Linear's inputs (rows, K) on ids, by name."""
    X, handles = {}, []

    def keep(name):
        def hook(module, args, output):
            X[name] = args[0].reshape(-1, args[0].shape[-1])
        return hook

    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            handles.append(m.register_forward_hook(keep(name)))
    with torch.no_grad():
        model(ids)
    for h in handles:
        h.remove()
    return X


@pytest.mark.parametrize("method,rtn_method,layer", [("int4-gptq", "int4", Int4Linear),
                                                     ("int8-gptq", "int8", Int8Linear)])
def test_gptq_beats_round_to_nearest_on_every_layer_and_checkpoints(tmp_path, method, rtn_method, layer):
    from llmarch.quant import Scheme
    from llmarch.quant.checkpoint import save_quantized

    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", n_layers=2, vocab_size=512).eval()
    ids = torch.randint(0, 512, (4, 64))
    X = _linear_inputs(model, ids)
    rtn = quantize(copy.deepcopy(model), rtn_method, 64, compute_dtype="float32")
    gptq = quantize(copy.deepcopy(model), method, 64, compute_dtype="float32", calibration=ids)
    layers = [n for n, m in gptq.named_modules() if isinstance(m, layer)]
    assert "lm_head" in layers and len(layers) == 2 * 4 + 1
    for name in layers:  # ||X W^T - X W_q^T|| on the calibration inputs (block 1's as the full model gives them)
        w = model.get_submodule(name).weight
        err = {k: (X[name] @ (w - q.get_submodule(name).dequantized()).T).norm() for k, q in
               (("rtn", rtn), ("gptq", gptq))}
        assert err["gptq"] < 0.9 * err["rtn"], (name, err)
    save_quantized(gptq, Scheme(method, 64, compute_dtype="float32"), tmp_path)
    loaded = llmarch.load(tmp_path)
    assert isinstance(loaded.blocks[0].mlp.down, layer) and loaded.quantization.method == method
    with torch.no_grad():  # one sequence: the kernels are slow with fp32 activations
        torch.testing.assert_close(loaded(ids[:1]).logits, gptq(ids[:1]).logits)
        ref = model(ids[:1]).logits
        assert (gptq(ids[:1]).logits - ref).norm() < (rtn(ids[:1]).logits - ref).norm()
    with pytest.raises(LlmarchError, match="needs calibration text"):
        quantize(copy.deepcopy(model), method, 64)


def test_gptq_calibrates_on_the_training_split():
    from llmarch.data import ByteTokenizer
    from llmarch.data.dataset import load_data
    from llmarch.quant.gptq import calibration_ids

    tok = ByteTokenizer()
    ids = calibration_ids(tok, 300, 128)
    assert ids.shape == (2, 128)
    train = load_data(None, tok).train.astype("<i4").tobytes()
    assert all(row.numpy().astype("<i4").tobytes() in train for row in ids)
    with pytest.raises(LlmarchError, match="at least 1"):
        calibration_ids(tok, 0, 128)


@pytest.mark.parametrize("method", ["int4-gptq", "int8-gptq"])
def test_gptq_fits_each_moe_expert_on_the_tokens_routed_to_it(method):
    """Each expert's input and down projections are fitted on what the router sent it in the calibration pass
    (block 0's: the original model's own inputs), with less error on those inputs than round-to-nearest."""
    from llmarch.quant.rtn import int4_rtn, int8_rtn

    model = tiny("mixtral-tiny", vocab_size=128)
    ids = torch.randint(0, 128, (2, 32))
    seen = []
    moe = model.blocks[0].mlp.experts
    handle = moe.register_forward_hook(lambda m, args, out: seen.append(args))
    with torch.no_grad():
        model(ids)
    handle.remove()
    x, _, routed = seen[0]
    q = quantize(copy.deepcopy(model), method, 32, compute_dtype="float32", calibration=ids)
    fitted = q.blocks[0].mlp.experts
    assert isinstance(fitted, QuantExperts)

    def rtn(w):
        if method == "int4-gptq":
            return int4_dequantize(*int4_rtn(w, 32))
        codes, scales = int8_rtn(w)
        return codes.float() * scales.float()[:, None]

    def dequantized(layer):
        return layer.dequantized() if method == "int4-gptq" else layer.weight.float() * layer.scales.float()[:, None]

    for e in range(moe.down.shape[0]):
        xe = x[(routed == e).any(-1)]
        if len(xe) < 4:
            continue
        he = moe._hidden(F.linear(xe, moe.w_in[e]))
        for w, layer, inputs in ((moe.w_in[e], fitted.w_in[e], xe), (moe.down[e], fitted.down[e], he)):
            with torch.no_grad():
                err = (inputs @ (w - dequantized(layer)).T).norm()
                assert err < 0.95 * (inputs @ (w - rtn(w)).T).norm()
    assert torch.isfinite(logits(q, ids)).all()


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_layer_error_below_round_to_nearest(act_order):
    from llmarch.quant.gptq import int4_gptq

    torch.manual_seed(0)
    X = (torch.randn(2048, 256) @ torch.randn(256, 256) * 0.1 + torch.randn(256)) * torch.rand(256) * 3
    W = torch.randn(64, 256)
    for G in (32, 256):  # groups inside a 128-column block, and a group wider than one
        codes, scales, zeros = int4_gptq(W, X.T @ X, G, act_order)
        assert codes.max() <= 15 and scales.shape == zeros.shape == (64, 256 // G)
        err = (X @ (W - int4_dequantize(codes, scales, zeros)).T).norm()
        assert err < 0.7 * (X @ (W - int4_dequantize(*int4_rtn(W, G))).T).norm()


def test_int8_gptq_layer_error_below_round_to_nearest_in_the_int8_format():
    from llmarch.quant.gptq import int8_gptq

    torch.manual_seed(0)
    X = (torch.randn(2048, 256) @ torch.randn(256, 256) * 0.1 + torch.randn(256)) * torch.rand(256) * 3
    W = torch.randn(64, 256)
    for dtype in (torch.float32, torch.bfloat16):  # the scales as the layer stores them
        codes, scales = int8_gptq(W, X.T @ X, dtype)
        rtn = Int8Linear.from_weight(W, None, dtype)
        assert codes.dtype == torch.int8 and codes.abs().max() <= 127 and scales.dtype == dtype
        torch.testing.assert_close(scales, rtn.scales)  # the same scales: GPTQ moves only the codes
        err = (X @ (W - codes.float() * scales.float()[:, None]).T).norm()
        assert err < 0.6 * (X @ (W - rtn.dequantized()).T).norm()


def test_int8_layers_narrower_than_the_kernels_blocks_still_multiply_right():
    """torch's CPU int8 kernel needs in_features % 16 == 0 (with K = 8 or 24 it returned garbage or crashed):
    such a layer multiplies by its dequantized weight instead, to the same values."""
    from llmarch.quant import Int8Linear

    torch.manual_seed(0)
    for k in (8, 24, 32):
        linear = torch.nn.Linear(k, 40)
        q = Int8Linear.from_weight(linear.weight, linear.bias, torch.bfloat16)
        x = torch.randn(3, k)
        with torch.no_grad():
            want = torch.nn.functional.linear(x, q.dequantized(), linear.bias)
            assert (q(x) - want).abs().max() < 0.02 * want.abs().max()


def test_an_int8_head_gives_its_largest_logits_in_fp32():
    """The int8 kernel returns bf16 (a step of 0.125 at logits of 16-32: near-ties became ties, which greedy broke
    by id); an int8 LM head recomputes each row's 8 largest outputs in fp32 from its int8 rows, which equal the
    dequantized head's product, while the rest keep the kernel's rounding. top_indices finds topk's indices."""
    from llmarch.quant.linear import EXACT_TOP, top_indices

    torch.manual_seed(0)
    for N in (49152, 1000):
        y = torch.randn(3, N)
        assert torch.equal(top_indices(y, 8).sort(-1).values, y.topk(8, -1).indices.sort(-1).values)
    model = tiny("llama-tiny", vocab_size=1024, d_model=64)
    q = quantize(copy.deepcopy(model), "int8")
    assert q.lm_head.exact_top and not q.blocks[0].attn.qkv_proj.exact_top
    h = torch.randn(2, 1, 64) * 4
    with torch.no_grad():
        got = q.lm_head(h)[:, 0]
        want = h[:, 0] @ q.lm_head.dequantized().t()
        top = want.topk(EXACT_TOP, -1).indices
        assert (got.gather(-1, top) - want.gather(-1, top)).abs().max() <= 1e-5 * want.abs().max()
        assert (got - want).abs().max() > 1e-3 * want.abs().max()  # the others in bf16
        assert torch.equal(got.argmax(-1), want.argmax(-1))
        many = q.lm_head(torch.randn(1, 100, 64))  # a prompt's every position (eval): the kernel's alone
    assert many.shape == (1, 100, 1024)


def test_a_quantized_latent_attention_model_decodes_with_its_up_projection_in_float():
    """MLA's absorbed decoding multiplies by kv_b_proj's weight as a matrix (W^UK into the query, W^UV into the
    output): quantization leaves that layer in float, so an int8 or int4 DeepSeek decodes (it raised a dtype
    error), the rest of its linear layers quantized."""
    model = llmarch.build("deepseek-tiny", vocab_size=97, d_model=32, n_layers=2, n_heads=2, n_kv_heads=2,
                          kv_lora_rank=16, q_lora_rank=None, expert_hidden=16, context_length=32).eval()
    ids = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(0))
    full = llmarch.generate(model, ids, max_new_tokens=4)
    # decoding may have split its layers over the cores (for_cpu_decoding, where split_pays measures that it
    # pays: the test was flaky with the machine's load): the kept layer stays kept either way
    for_cpu_decoding(model, split=True)
    for method in ("int8", "int4"):
        q = quantize(copy.deepcopy(model), method, 32)
        assert type(q.blocks[0].attn.kv_b_proj).__name__ == "SplitLinear"  # float, as split for decoding
        assert isinstance(q.blocks[0].attn.q_proj, (Int8Linear, Int4Linear))
        assert llmarch.generate(q, ids, max_new_tokens=4).shape == full.shape


def test_int8_many_rows_take_a_gemm_on_the_cast_weight_and_agree_with_the_kernel(monkeypatch):
    """From INT8_ROWS rows (a prompt, a perplexity window) an Int8Linear multiplies by its weight cast to the
    compute dtype and scales after (the kernel's time grows with the rows); what it returns agrees with the
    one-row kernel's rows and with the dequantized weight's product, to bf16 precision."""
    from llmarch.quant.linear import INT8_ROWS

    torch.manual_seed(0)
    layer = Int8Linear.from_weight(torch.randn(48, 64), torch.randn(48), torch.bfloat16)
    x = torch.randn(INT8_ROWS + 8, 64)
    kernel, calls = torch._weight_int8pack_mm, []
    monkeypatch.setattr(torch, "_weight_int8pack_mm", lambda *a: calls.append(a[0].shape[0]) or kernel(*a))
    many = layer(x)
    assert calls == []
    rows = torch.cat([layer(x[i:i + 1]) for i in range(x.shape[0])])
    exact = x @ layer.dequantized().T + layer.bias
    assert ((many - exact).norm() / exact.norm()) < 5e-3
    assert ((many - rows).norm() / exact.norm()) < 5e-3
    assert calls == [1] * x.shape[0]


@pytest.mark.parametrize("method, group, head", [("int8", None, True), ("int4", 32, False), ("int4", 32, True)])
def test_a_quantized_model_exports_to_gguf_as_the_float_model_it_stands_for(tmp_path, method, group, head):
    """to_gguf of a quantized model (a quantized checkpoint, a QLoRA result) writes its dequantized weights, as
    to_hf does; it had left int4 layers out and written int8 codes as weights (exit 0, an unreadable or wrong
    file). A quantized copy of a tied head goes out untied."""
    from llmarch.data import ByteTokenizer
    from llmarch.interop.gguf_writer import to_gguf

    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", vocab_size=272, n_layers=2, d_model=64, n_heads=4, n_kv_heads=2,
                          ffn_hidden=128, context_length=64, tie_embeddings=True).eval()
    q = quantize(copy.deepcopy(model), method, group, head=head, compute_dtype="float32")
    to_gguf(q, tmp_path / "q.gguf", "f32", ByteTokenizer())
    back = llmarch.from_gguf(tmp_path / "q.gguf")
    assert back.config.tie_embeddings == (not head)
    ids = torch.randint(0, 256, (1, 16))
    with torch.no_grad():
        want, got = q(ids).logits, back(ids).logits
    assert (want - got).abs().max() <= 1e-4 * want.abs().max()
