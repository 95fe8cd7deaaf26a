"""generate_text (generate/text.py): prompts in, text out; streamed pieces are the same text as it arrives."""
import pytest

import llmarch
from llmarch import LlmarchError
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.generate import generate_text

from conftest import tiny


def test_streamed_pieces_are_the_text_generated_after_the_prompt():
    model, tok = tiny(vocab_size=257), ByteTokenizer()
    full = generate_text(model, tok, ["def f"], 12)[0]
    pieces: list[str] = []
    generate_text(model, tok, ["def f"], 12, stream=pieces.append)
    assert full.startswith("def f") and len(full) > len("def f")
    # the streamed text may hold back a final incomplete multi-byte character, nothing else
    assert full[len("def f"):].startswith("".join(pieces)) and "".join(pieces)


def test_a_batch_gives_one_text_per_prompt_and_streams_one_prompt_only():
    model, tok = tiny(vocab_size=257), ByteTokenizer()
    texts = generate_text(model, tok, ["a", "bc"], 4)
    assert [t[:len(p)] for t, p in zip(texts, ["a", "bc"])] == ["a", "bc"]
    with pytest.raises(LlmarchError, match="one prompt"):
        generate_text(model, tok, ["a", "bc"], 4, stream=print)
    with pytest.raises(LlmarchError, match="beam"):
        generate_text(model, tok, ["a"], 4, num_beams=2, stream=print)


def test_an_encoder_decoder_source_ends_in_one_eos(monkeypatch):
    """T5's and BART's tokenizer.json append </s> themselves: the source must not get a second one (transformers
    feeds one; a doubled one changed T5's output), nor a seq2seq training example."""
    import importlib

    from llmarch.data import ByteTokenizer
    from llmarch.train.seq2seq import _encode

    class Appending(ByteTokenizer):
        def encode(self, t):
            return super().encode(t) + [self.eos_id]

    text = importlib.import_module("llmarch.generate.text")  # the package re-exports a function of that name
    seen = []
    monkeypatch.setattr(text, "generate", lambda model, encoded, *a, **k: seen.extend(encoded) or encoded)
    model = llmarch.build("t5-tiny", vocab_size=257, d_model=32, n_heads=2, n_layers=1, n_decoder_layers=1)
    for tok in (ByteTokenizer(), Appending()):
        seen.clear()
        text.generate_text(model, tok, ["ab"], 2)
        assert seen == [[97, 98, 256]]
        assert _encode(tok, [("ab", "c")], 16) == [([97, 98, 256], [99, 256])]


def test_streamed_and_unstreamed_output_print_the_prompt_alike(tmp_path, capsys):
    """A prompt with a special token (a chat template's): streaming printed it spelled out, --no-stream as the
    tokenizer decodes it (without it); both now print the latter."""
    import torch

    from llmarch.checkpoint import save_model
    from llmarch.cli import main
    from llmarch.data.tokenizer import train_bpe

    torch.manual_seed(0)
    save_model(llmarch.build("llama-tiny", vocab_size=320, n_layers=1, context_length=64), tmp_path / "m")
    train_bpe(["abc def ghi\n" * 40], vocab_size=300).save(tmp_path / "m")
    outputs = []
    for extra in ([], ["--no-stream"]):
        assert main(["generate", "--checkpoint", str(tmp_path / "m"), "--prompt", "abc<|endoftext|>def",
                     "--max-new-tokens", "4", "--temperature", "0", *extra]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and "<|endoftext|>" not in outputs[0]
