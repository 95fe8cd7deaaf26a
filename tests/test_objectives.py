"""Masked-LM masking (80/10/10 of 15%, whole words, specials never selected), losses only at selected
positions, and masked-LM training runs."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import llmarch
from llmarch import LlmarchError
from llmarch.data import ByteTokenizer, train_bpe
from llmarch.train import TrainConfig, train
from llmarch.train.objectives import IGNORE, MaskedLM, lm_loss


def test_masking_proportions_hold_over_a_large_sample():
    tok = ByteTokenizer(mask=True)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, size=(64, 4096)))
    x[:, ::50] = tok.eos_id  # specials in the stream are never selected
    inputs, targets = MaskedLM(tok)(x, x, np.random.default_rng(1))
    eligible = x != tok.eos_id
    chosen = targets != IGNORE
    assert not chosen[~eligible].any()
    assert torch.equal(targets[chosen], x[chosen])  # the target is the original token
    n = int(chosen.sum())
    assert abs(n / int(eligible.sum()) - 0.15) < 0.003  # ~262k tokens: 15% within 0.3 points
    masked = inputs[chosen] == tok.mask_id
    kept = inputs[chosen] == x[chosen]
    replaced = ~masked & ~kept
    assert abs(masked.float().mean().item() - 0.8) < 0.01
    assert abs(replaced.float().mean().item() - 0.1 * 255 / 256) < 0.01  # a random draw may hit the same token
    assert abs(kept.float().mean().item() - (0.1 + 0.1 / 256)) < 0.01
    assert torch.equal(inputs[~chosen], x[~chosen])  # unselected positions are untouched


def test_unselected_positions_carry_no_loss():
    tok = ByteTokenizer(mask=True)
    x = torch.randint(0, 256, (4, 64))
    _, targets = MaskedLM(tok)(x, x, np.random.default_rng(0))
    logits = torch.randn(4, 64, 258, requires_grad=True)
    loss = lm_loss(logits, targets)
    loss.backward()
    chosen = targets != IGNORE
    assert logits.grad[~chosen].abs().max() == 0 and logits.grad[chosen].abs().max() > 0
    manual = torch.nn.functional.cross_entropy(logits[chosen], targets[chosen])
    assert torch.allclose(loss, manual)


def test_whole_word_masking_selects_every_token_of_a_word():
    text = "def parse_header(line, strict):\n    return line.split(':', 1) if strict else line.strip()\n"
    tok = train_bpe([text * 50, "import os\nimport sys\n" * 20], vocab_size=300, mask=True)
    ids = torch.tensor([tok.encode(text * 8)])
    mlm = MaskedLM(tok, whole_word=True)
    words = mlm.word_ids(ids.numpy())[0]
    # words are the runs between spaces and punctuation: "parse_header" is one word, however BPE splits it
    pieces = ["".join(tok.decode([t]) for t, w in zip(ids[0].tolist(), words) if w == k) for k in set(words)]
    assert "parse_header" in {p.strip() for p in pieces} and len(set(words)) < ids.shape[1]
    for seed in range(5):
        _, targets = mlm(ids, ids, np.random.default_rng(seed))
        chosen = (targets[0] != IGNORE).numpy()
        for k in set(words):
            assert len(set(chosen[words == k])) == 1  # all of a word's tokens, or none


def test_masked_lm_needs_a_mask_token_and_a_bidirectional_model(tmp_path):
    with pytest.raises(LlmarchError, match="mask token"):
        MaskedLM(ByteTokenizer())
    tc = TrainConfig(steps=2, objective="mlm", tokenizer="byte", data=__file__)
    with pytest.raises(LlmarchError, match="needs a bidirectional model"):
        train(llmarch.resolve("gpt-tiny", vocab_size=258, n_layers=1), tc, tmp_path / "a", verbose=False)
    with pytest.raises(LlmarchError, match="use --objective mlm"):
        train(llmarch.resolve("bert-tiny", vocab_size=258, n_layers=1), TrainConfig(steps=2, tokenizer="byte",
              data=__file__), tmp_path / "b", verbose=False)


def test_masked_lm_training_learns_and_resumes_exactly(tmp_path):
    """A small bert-tiny, masked LM on real text (the stdlib `json` package's source, as bytes): validation loss falls
    below the unigram entropy, so it reads the context on both sides; a resumed run repeats the uninterrupted
    run's losses exactly (the masks are a pure function of seed and step)."""
    model = llmarch.resolve("bert-tiny", vocab_size=258, n_layers=2, d_model=64, context_length=64)
    kw = dict(batch_size=16, eval_every=30, eval_tokens=4096, tokenizer="byte", objective="mlm", lr=3e-3,
              data=str(Path(json.__file__).parent))
    full = train(model, TrainConfig(steps=90, **kw), tmp_path / "full", verbose=False)
    vals = list(full.val_losses.values())
    assert vals[-1] < vals[0] and vals[-1] < full.unigram_entropy
    resumed_dir = tmp_path / "resumed"  # the run as it was when stopped after step 60
    shutil.copytree(tmp_path / "full", resumed_dir)
    shutil.rmtree(resumed_dir / "step-000090")
    (resumed_dir / "latest").write_text("step-000060\n")
    resumed = train(None, TrainConfig(steps=90, **kw), resumed_dir, resume=True, verbose=False)
    assert all(resumed.losses[s] == full.losses[s] for s in range(61, 91))


def test_masked_evaluation_is_the_same_at_any_batch_size(tmp_path):
    """Each validation window draws its masks from (seed, window index): eval at any --batch-size gives the
    training log's figure (the masks were drawn per batch, so eval's default batch of 8 never matched a run
    trained at 16). Masked LM and T5's span corruption."""
    from llmarch.data import TokenData, read_documents
    from llmarch.models.build import build_model
    from llmarch.train.evaluate import evaluate
    from llmarch.train.objectives import objective_for

    docs = read_documents(str(Path(json.__file__).parent))
    for preset, objective, mask in (("bert-tiny", "mlm", True), ("t5-tiny", "span", False)):
        from llmarch.data.dataset import tokenizer_for

        tok = tokenizer_for(docs, "byte", 300, mask=mask, sentinels=0 if mask else 100)
        torch.manual_seed(0)
        model = build_model(llmarch.resolve(preset, vocab_size=tok.vocab_size, n_layers=1, d_model=32,
                                            context_length=32, **({} if mask else dict(pad_id=tok.eos_id,
                                                                                      decoder_start_id=tok.eos_id,
                                                                                      eos_id=tok.eos_id))))
        data = TokenData.prepare(docs, tok, 0.05)
        obj = objective_for(objective, tok, context=32)
        losses = {b: evaluate(model, data, b, 32 * 12, obj, seed=3)["loss"] for b in (1, 5, 12)}
        assert max(losses.values()) - min(losses.values()) < 1e-5, (preset, losses)


def test_causal_evaluation_scores_every_target_once():
    """The causal objective's evaluation scores every target of the split once: whole windows, then the targets
    after the last one in a window ending at the last token (they were dropped: 62 targets at context 32 scored
    32). Against a hand computation of the same windows."""
    import numpy as np
    import torch.nn.functional as F

    from llmarch.data import TokenData
    from llmarch.train.evaluate import evaluate

    torch.manual_seed(0)
    model = llmarch.build("gpt-tiny", vocab_size=50, n_layers=1, d_model=32, n_heads=2, context_length=32).eval()
    val = np.random.default_rng(0).integers(0, 50, 63)
    result = evaluate(model, TokenData(val, val), batch_size=8)
    t = torch.from_numpy(val)
    with torch.no_grad():
        first = F.cross_entropy(model(t[None, :32]).logits[0], t[1:33], reduction="sum")
        tail = F.cross_entropy(model(t[None, 30:62]).logits[0, 2:], t[33:63], reduction="sum")
    assert result["tokens"] == 62
    assert abs(result["loss"] - (first + tail).item() / 62) < 1e-5
    assert evaluate(model, TokenData(val, val), batch_size=1, context=16)["tokens"] == 62
    assert evaluate(model, TokenData(val, val), batch_size=1, max_tokens=32)["tokens"] == 32  # a cut: windows
