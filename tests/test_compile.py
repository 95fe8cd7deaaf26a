import torch
import llmarch

from conftest import tiny


def test_decode_step_compiles_whole_graph_over_the_static_cache():
    """The static KV cache lets torch.compile capture a decode step as one graph (fullgraph=True fails on
    any graph break), reused at every position without recompiling."""
    model = tiny(n_layers=1)
    x = torch.randint(0, 97, (1, 12))
    full = model(x).logits
    model.setup_cache(1, 12)
    step = torch.compile(lambda tok, pos: model(tok, input_pos=pos).logits, fullgraph=True, dynamic=False)
    with torch.no_grad():
        model(x[:, :8], input_pos=torch.arange(8))
        outs = [step(x[:, t:t + 1], torch.tensor([t])) for t in range(8, 12)]
    model.clear_cache()
    assert (torch.cat(outs, 1) - full[:, 8:]).abs().max() < 1e-5


def test_generate_with_the_compiled_decode_step_matches_eager():
    """generate(compile=True) decodes with one fixed-shape compiled graph over its cache (CUDA graphs on CUDA):
    the same tokens as eager decoding, for plain and left-padded prompts, and a second call
    with other lengths reuses the compiled step."""
    import llmarch

    model = tiny(n_layers=1).eval()
    prompts = [[5, 6, 7, 8, 9], [1, 2, 3]]
    eager = llmarch.generate(model, prompts, max_new_tokens=6)
    assert llmarch.generate(model, prompts, max_new_tokens=6, compile=True) == eager
    step = model.__dict__["_compiled_decode_step"]
    ids = torch.randint(0, 97, (2, 4))
    assert torch.equal(llmarch.generate(model, ids, max_new_tokens=3, compile=True),
                       llmarch.generate(model, ids, max_new_tokens=3))
    assert model.__dict__["_compiled_decode_step"] is step


def test_compiled_decode_of_a_mixture_of_experts_matches_eager():
    """An MoE model's decode step compiles as one graph too (its experts meet tokens through gathered
    weights under compile: no data-dependent shapes) and decodes the tokens eager decoding does."""
    import llmarch

    model = llmarch.build("mixtral-tiny", n_layers=1, vocab_size=97, d_model=64, n_heads=4, n_kv_heads=2,
                          context_length=32).eval()
    prompts = [[5, 6, 7, 8, 9], [1, 2, 3]]
    assert llmarch.generate(model, prompts, max_new_tokens=6, compile=True) == llmarch.generate(
        model, prompts, max_new_tokens=6)


def test_compiled_decode_of_a_mamba_stack_matches_eager():
    """The recurrent step (conv and SSM states updated in place) compiles as one fixed-shape graph (fullgraph)
    and generates the eager tokens."""
    import llmarch
    from llmarch.config import ModelConfig
    from llmarch.models import TransformerLM

    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, mixer="mamba", ffn="none",
                                      norm="rmsnorm", positions="none", context_length=48, ssm_state=8)).eval()
    ids = torch.randint(0, 64, (2, 10))
    eager = llmarch.generate(model, ids, max_new_tokens=12)
    assert torch.equal(llmarch.generate(model, ids, max_new_tokens=12, compile=True), eager)


def test_a_compiled_step_attends_over_a_power_of_two_cache_not_the_whole_context():
    """The compiled step reads its whole cache every token: a long-context model caches only the next power of
    two from 256 of what the call needs, so a few graphs serve every length and no token reads 8k slots."""
    from llmarch.generate.decode import compiled_cache_len

    assert [compiled_cache_len(t, 8192) for t in (1, 192, 256, 257, 5000, 8192)] == [256, 256, 256, 512, 8192, 8192]
    assert compiled_cache_len(100, 128) == 128  # never past the context
    model = tiny(n_layers=1, context_length=2048).eval()
    seen = []
    model.setup_cache = lambda batch, max_len, **kw: seen.append(max_len) or type(model).setup_cache(
        model, batch, max_len, **kw)
    ids = torch.randint(0, 97, (1, 300))
    import llmarch

    assert torch.equal(llmarch.generate(model, ids, max_new_tokens=4, compile=True),
                       llmarch.generate(model, ids, max_new_tokens=4))
    assert seen == [512, 304]  # compiled, then eager (exactly the call's length)


def test_chat_with_the_compiled_step_replies_as_eager():
    """`llmarch chat --compile`: a conversation's greedy replies, turn after turn, are the eager ones, and the
    compiled step is built once and kept for the next reply."""
    from llmarch.data.tokenizer import ByteTokenizer
    from llmarch.serve.terminal import Conversation

    model, tok = tiny(n_layers=1, vocab_size=257).eval(), ByteTokenizer()
    eager = Conversation(model, tok, max_tokens=5, temperature=0)
    compiled = Conversation(model, tok, max_tokens=5, temperature=0, compile=True)
    first = compiled.reply("hi", lambda text: None)
    step = model.__dict__["_compiled_decode_step"]
    assert first == eager.reply("hi", lambda text: None)
    assert compiled.reply("ok", lambda text: None) == eager.reply("ok", lambda text: None)
    assert model.__dict__["_compiled_decode_step"] is step


def test_a_compiled_training_step_after_generate(monkeypatch):
    """generate decodes in inference mode; a table RoPE caches for later calls (positions._half_signs) was then an
    inference tensor, and a compiled training step that saved it for backward failed ("Inference tensors cannot
    be saved for backward": `llmarch bench --compile true` on any RoPE model, which decodes before it trains)."""
    import torch.nn.functional as F

    from llmarch.layers import positions

    monkeypatch.setattr(positions, "_SIGNS", {})  # as in a fresh process: the first table made by generate
    model = tiny(vocab_size=96, n_layers=1)
    ids = torch.randint(0, 96, (2, 10), generator=torch.Generator().manual_seed(0))
    llmarch.generate(model, ids[:1, :4], max_new_tokens=2)
    model.train()
    logits = torch.compile(lambda x: model(x).logits)(ids)
    F.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_one_query_attention_compiled_equals_sdpa():
    """In a compiled graph on a CPU, one query per head is computed as products and sums inductor fuses
    (attention._one_query), not torch's fused kernel: the same values as that kernel gives eagerly, for grouped
    KV heads, each mask form SDPA reads (none, bool per row, float per head), and a scale of its own."""
    from llmarch.layers.attention import sdpa_attention

    torch.manual_seed(0)
    B, H, G, S, D = 2, 6, 2, 9, 8
    q, k, v = torch.randn(B, H, 1, D), torch.randn(B, G, S, D), torch.randn(B, G, S, D)
    rows = torch.ones(B, 1, 1, S, dtype=torch.bool)
    rows[0, ..., :3] = False  # a left-padded row
    heads = torch.randn(B, H, 1, S)
    for mask, scale in ((None, None), (rows, None), (heads, 0.3), (rows[:1], None)):
        eager = sdpa_attention(q, k, v, mask, False, 0.0, None, scale=scale)
        fn = torch.compile(lambda q, k, v: sdpa_attention(q, k, v, mask, False, 0.0, None, scale=scale),
                           fullgraph=True, dynamic=False)
        from torch._inductor.utils import run_and_get_code

        compiled, code = run_and_get_code(fn, q, k, v)
        assert "scaled_dot_product" not in "\n".join(code).replace("cpp_fused__scaled_dot_product", "")
        assert (compiled - eager).abs().max() < 1e-5


def test_compiled_decode_with_the_split_layers_matches_eager(monkeypatch):
    """Where one-row products run split over two cores (forced here: split_pays measures the machine), the
    compiled step of one row reads every weight in nn.Linear's (out, in) layout with inductor's own dot
    products, eager decoding and a compiled batch the transposed layout: a grouped-query model decodes a prompt
    and a left-padded batch to the same tokens each way, switching layouts between calls."""
    import llmarch.transforms as transforms
    from llmarch.layers.split_linear import SplitLinear

    monkeypatch.setattr(transforms, "split_pays", lambda: True)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = tiny("llama-tiny", n_kv_heads=2).eval()
        prompts, prompt = [[5, 6, 7, 8, 9], [1, 2, 3]], [[4, 5, 6, 7]]
        eager, alone = (llmarch.generate(model, p, max_new_tokens=6) for p in (prompts, prompt))
        up = model.blocks[0].mlp.gate_up
        assert isinstance(up, SplitLinear) and up.weight.t().is_contiguous()  # laid out for the eager split
        assert llmarch.generate(model, prompt, max_new_tokens=6, compile=True) == alone
        assert up.weight.is_contiguous()  # and now for the compiled step's dot products
        assert llmarch.generate(model, prompts, max_new_tokens=6, compile=True) == eager
        assert up.weight.t().is_contiguous()  # a batch: the BLAS's product, on the eager layout
        assert llmarch.generate(model, prompt, max_new_tokens=6, compile=True) == alone
        assert llmarch.generate(model, prompts, max_new_tokens=6) == eager
    finally:
        torch.set_num_threads(threads)


def test_a_model_changed_between_compiled_decodings_is_traced_anew():
    """The steps after a decoding's first run under only the guards that tell the step's graphs apart (compiled.py);
    the first runs under all of them, so a model changed between two calls (here its dtype, and a forward hook
    that changes the logits) decodes as eager decoding does, not through the old graph."""
    model = tiny(n_layers=1).eval()
    ids = torch.randint(0, 97, (1, 5))
    llmarch.generate(model, ids, max_new_tokens=4, compile=True)
    model.double()
    assert torch.equal(llmarch.generate(model, ids, max_new_tokens=8, compile=True),
                       llmarch.generate(model, ids, max_new_tokens=8))
    handle = model.blocks[0].register_forward_hook(lambda mod, args, out: out * -1.0)
    try:
        hooked = llmarch.generate(model, ids, max_new_tokens=8)
        assert torch.equal(llmarch.generate(model, ids, max_new_tokens=8, compile=True), hooked)
    finally:
        handle.remove()
    assert not torch.equal(hooked, llmarch.generate(model, ids, max_new_tokens=8))
