from unittest.mock import patch

import torch
import torch.nn.functional as F
from torch import nn

from llmarch import generate
from llmarch.layers.split_linear import SplitLinear
from llmarch.transforms import for_cpu_decoding, transposed_weight_layout

from conftest import tiny


def test_transposed_layout_keeps_values_and_outputs_and_moves_only_widening_weights():
    model = tiny("gpt-tiny")
    x = torch.randint(0, 97, (2, 9))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logits = model(x).logits
    transposed_weight_layout(model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert (model(x).logits - logits).abs().max() < 1e-5
    block = model.blocks[0]
    assert block.attn.qkv_proj.weight.t().is_contiguous() and block.mlp.up.weight.t().is_contiguous()
    assert model.lm_head.weight.t().is_contiguous()  # tied: the embedding now reads the same transposed tensor
    assert block.mlp.down.weight.is_contiguous() and block.attn.o_proj.weight.is_contiguous()


def _one_row_matches_linear(linear: nn.Linear, split: SplitLinear | None = None) -> None:
    """SplitLinear's split path (a single row, two threads) gives F.linear's values for this weight layout."""
    split = split or SplitLinear.from_linear(linear)
    x = torch.randn(1, 1, linear.in_features)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with patch.object(F, "linear", side_effect=AssertionError("took nn.Linear's path")), torch.no_grad():
            y = split(x)
    finally:
        torch.set_num_threads(threads)
    assert y.shape == (1, 1, linear.out_features)
    assert (y - linear(x)).abs().max() < 1e-5


def test_split_linear_computes_one_row_on_the_split_path_for_both_layouts():
    torch.manual_seed(0)
    for n_in, n_out, bias in ((64, 192, True), (256, 64, False), (96, 96, True)):
        linear = nn.Linear(n_in, n_out, bias=bias)
        _one_row_matches_linear(linear)  # (out, in), as built
        linear.weight.data = linear.weight.data.t().contiguous().t()
        _one_row_matches_linear(linear)  # (in, out), as transposed_weight_layout stores widening weights
    split = SplitLinear.from_linear(linear)  # one module, whose weight is given new storage in the other layout
    _one_row_matches_linear(linear, split)
    with torch.no_grad():
        linear.weight.data = torch.randn(linear.out_features, linear.in_features)
    _one_row_matches_linear(linear, split)
    linear = nn.Linear(64, 192)  # split-K with a bias: the product adds a laid-out copy of the bias
    linear.weight.data = linear.weight.data.t().contiguous().t()
    split = SplitLinear.from_linear(linear)
    _one_row_matches_linear(linear, split)
    with torch.no_grad():  # an optimizer step writes the bias in place: the copy follows it
        linear.bias.add_(1.0)
    _one_row_matches_linear(linear, split)
    split.double()  # .to() and the like drop the view, so it holds no old storage
    assert "_split" not in split.__dict__
    linear = nn.Linear(64, 32)
    split = SplitLinear.from_linear(linear)
    with torch.no_grad():  # several rows: nn.Linear's own path, bitwise
        x = torch.randn(3, 64)
        assert torch.equal(split(x), linear(x))
    split(torch.randn(1, 64)).sum().backward()  # with autograd on, one row trains the weight as nn.Linear does
    assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0


def test_split_linear_compiles_as_one_graph_on_two_threads():
    """Under torch.compile a one-row call never reaches the BLAS's one-core product (SmolLM2 fp32 compiled ran at
    0.64x its eager speed that way on the AMD EPYC), nor traces the thread check (dynamo cannot trace
    torch.get_num_threads: `generate --compile` of one prompt on a multi-core CPU once failed): over nn.Linear's
    (out, in) layout it is inductor's own loop of dot products, no matmul call at all; over the transposed
    layout, the split product as `baddbmm`, which inductor leaves to the BLAS."""
    from torch._inductor.utils import run_and_get_code

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for n_in, n_out, bias, transposed in ((64, 32, True, False), (64, 32, False, False),
                                              (32, 96, False, True), (32, 96, True, True)):
            linear = nn.Linear(n_in, n_out, bias=bias)
            if transposed:
                linear.weight.data = linear.weight.data.t().contiguous().t()
            split = SplitLinear.from_linear(linear)
            with torch.no_grad():
                x = torch.randn(1, 1, n_in)
                y, code = run_and_get_code(torch.compile(split, fullgraph=True, dynamic=False), x)
            assert y.shape == (1, 1, n_out) and (y - linear(x)).abs().max() < 1e-5
            code = "\n".join(code)
            assert ("extern_kernels.baddbmm" in code) == transposed and "extern_kernels.mm" not in code, code
            assert "extern_kernels.addmm" not in code and "extern_kernels.bmm" not in code, code
    finally:
        torch.set_num_threads(threads)


def test_for_cpu_decoding_keeps_weights_ties_and_greedy_tokens():
    model = tiny("gpt-tiny")
    ref = tiny("gpt-tiny")
    x = torch.randint(0, 97, (1, 6))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for_cpu_decoding(model, split=True)
    assert all(type(m) is not nn.Linear for m in model.modules())
    assert isinstance(model.lm_head, SplitLinear) and model.lm_head.weight is model.embed.weight
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(before[k], after[k]) for k in before)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the split path needs two threads; CI may run with one
    try:
        assert torch.equal(generate(model, x, max_new_tokens=20), generate(ref, x, max_new_tokens=20))
    finally:
        torch.set_num_threads(threads)


def test_for_cpu_decoding_leaves_the_model_alone_where_the_split_does_not_pay():
    model = tiny("gpt-tiny")
    layouts = {name: (p.data_ptr(), p.stride()) for name, p in model.named_parameters()}
    for_cpu_decoding(model, split=False)
    assert not any(isinstance(m, SplitLinear) for m in model.modules())
    assert {name: (p.data_ptr(), p.stride()) for name, p in model.named_parameters()} == layouts


def test_a_model_streamed_from_memory_gets_the_transposed_layout_without_the_split():
    from llmarch import transforms

    model, ref = tiny("gpt-tiny"), tiny("gpt-tiny")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert transforms.linear_bytes(model) == 4 * sum(m.weight.numel() for m in linears)
    with patch.object(transforms, "STREAMED_BYTES", transforms.linear_bytes(model) - 1):
        for_cpu_decoding(model, split=False)
    assert not any(isinstance(m, SplitLinear) for m in model.modules())
    widening = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features > m.in_features]
    assert widening and all(m.weight.t().is_contiguous() for m in widening)
    x = torch.randint(0, 97, (1, 6))
    assert torch.equal(generate(model, x, max_new_tokens=20), generate(ref, x, max_new_tokens=20))


def test_a_model_in_a_process_group_keeps_its_layout():  # DDP's replicas, FSDP's shards
    model = tiny("gpt-tiny")
    layouts = {name: (p.data_ptr(), p.stride()) for name, p in model.named_parameters()}
    with patch("torch.distributed.is_initialized", return_value=True):
        for_cpu_decoding(model, split=True)
    assert not any(isinstance(m, SplitLinear) for m in model.modules())
    assert {name: (p.data_ptr(), p.stride()) for name, p in model.named_parameters()} == layouts


def test_split_pays_is_measured_once_per_thread_count_and_never_on_one_thread():
    from llmarch.layers import split_linear

    threads = torch.get_num_threads()
    calls = []
    with patch.object(split_linear, "_probe", side_effect=lambda: calls.append(1) or True), \
            patch.dict(split_linear._PAYS, clear=True):
        try:
            torch.set_num_threads(1)
            assert split_linear.split_pays() is False and calls == []
            torch.set_num_threads(2)
            assert split_linear.split_pays() is True and split_linear.split_pays() is True and calls == [1]
        finally:
            torch.set_num_threads(threads)
    with torch.no_grad():  # the probe itself runs both paths on real weights and says which won
        assert split_linear._probe(copies=1, rounds=1) in (True, False)
