"""Speculative decoding with prompt lookup (generate/speculative.py): greedy output identical to plain greedy
decoding, drafts taken from the context, and models it cannot rewind refused."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.generate import generate
from llmarch.generate.speculative import lookup, prompt_lookup_generate
from llmarch.models import TransformerLM
from llmarch.presets import resolve


def tiny(preset="llama-tiny", **over):
    torch.manual_seed(0)
    return TransformerLM(resolve(preset, **{"vocab_size": 64, "n_layers": 2, "context_length": 96, **over}))


def test_lookup_takes_what_followed_the_last_ngram():
    assert lookup([1, 2, 3, 9, 9, 1, 2, 3], 2) == [9, 9]
    assert lookup([5, 1, 7, 4, 1], 3) == [7, 4, 1]  # a 1-gram when no longer one recurs
    assert lookup([1, 2, 3], 4) == []


@pytest.mark.parametrize("num_draft", [1, 4, 8])
def test_same_tokens_as_greedy(num_draft):
    model = tiny(d_model=64, n_heads=4, n_kv_heads=2, ffn_hidden=128)
    g = torch.Generator().manual_seed(3)
    span = torch.randint(0, 64, (6,), generator=g).tolist()
    prompts = [span * 4, torch.randint(0, 64, (10,), generator=g).tolist(), [5]]
    for prompt in prompts:
        stats = {}
        got = prompt_lookup_generate(model, prompt, 40, num_draft, stats=stats)
        assert got == generate(model, [prompt], 40)[0]
        assert stats["steps"] <= 40 and stats["accepted"] <= stats["drafted"]


def test_eos_and_the_context_end_the_output():
    model = tiny(d_model=64, n_heads=4, n_kv_heads=2, ffn_hidden=128)
    plain = generate(model, [[1, 2, 3]], 20)[0]
    eos = plain[8]
    assert prompt_lookup_generate(model, [1, 2, 3], 20, 4, eos_id=eos) == generate(model, [[1, 2, 3]], 20,
                                                                                     eos_id=eos)[0]
    assert len(prompt_lookup_generate(model, [1] * 90, 50, 4)) == 96


def test_recurrent_states_are_refused():
    with pytest.raises(LlmarchError, match="rewinds"):
        prompt_lookup_generate(tiny("mamba-tiny"), [1, 2], 4, 2)


def test_generate_and_the_command(tmp_path):
    import contextlib
    import io

    from llmarch.cli import main
    from llmarch.checkpoint import save_model
    from llmarch.data.tokenizer import ByteTokenizer

    model = tiny(vocab_size=257, d_model=64, n_heads=4, n_kv_heads=2, ffn_hidden=128)
    assert generate(model, [[1, 2, 1, 2, 1]], 12, prompt_lookup=3) == generate(model, [[1, 2, 1, 2, 1]], 12)
    with pytest.raises(LlmarchError, match="greedy"):
        generate(model, [[1, 2]], 4, temperature=0.5, prompt_lookup=3)
    save_model(model, tmp_path)
    ByteTokenizer().save(tmp_path)
    outs = []
    for extra in ([], ["--prompt-lookup", "4"]):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(["generate", "--checkpoint", str(tmp_path), "--prompt", "abcabcabc", "--temperature", "0",
                         "--max-new-tokens", "16", *extra]) == 0
        outs.append(buf.getvalue())
    assert outs[0] == outs[1] and outs[0].startswith("abcabcabc")
    err = io.StringIO()  # without --temperature 0: the default 0.8 named, before the checkpoint loads
    with contextlib.redirect_stderr(err):
        assert main(["generate", "--checkpoint", str(tmp_path / "none"), "--prompt", "a", "--prompt-lookup", "4"]) == 2
    assert "pass --temperature 0 (it is 0.8; the default is 0.8)" in err.getvalue()
