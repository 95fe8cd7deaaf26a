"""Funnel-Transformer against transformers, through files: masked-LM logits (the encoder's pooled groups, then the
decoder at full length) on a right-padded batch with token types, fp32, <= 1e-4 on real tokens, for both attention
types, <cls> kept apart or not, truncated or not, mean and max pooling, queries-only or full pooling, and an odd
length without token types; each with a to_hf round trip that transformers loads to the same logits and a config that
reads back. The sequence classifier (over the pooled encoder, no decoder), the token classifier, the base models (the
pooled encoder; the encoder and decoder) as embedding models; the variants it cannot hold refused."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

from conftest import assert_encoder_round_trip, perturbed
from test_bertkin import right_padded

transformers = pytest.importorskip("transformers")

# three groups of 1, 2 and 1 blocks: 16 tokens pooled to 8, then 4; two decoder blocks
TINY = dict(vocab_size=120, d_model=64, n_head=4, d_head=16, d_inner=96, block_sizes=[1, 2, 1], num_decoder_layers=2)
CASES = {
    "relative-shift": {},
    "factorized": dict(attention_type="factorized"),
    "cls-pooled": dict(separate_cls=False),
    "untruncated-max": dict(truncate_seq=False, pooling_type="max", hidden_act="gelu"),
    "all-pooled": dict(pool_q_only=False),
}


def _pair(tmp_path, cls: str, fields: dict):
    torch.manual_seed(0)
    hf = perturbed(getattr(transformers, cls)(transformers.FunnelConfig(**fields)))
    hf.save_pretrained(tmp_path / cls)
    return hf, from_hf(tmp_path / cls)


def _batch(odd: bool = False):
    """right_padded's two rows with token types (1 on the second half), or 15 of their tokens without."""
    ids, mask, kw = right_padded(0, ("types",))
    return (ids[:, :15], mask[:, :15], {}) if odd else (ids, mask, kw)


@pytest.mark.parametrize("case", sorted(CASES) + ["odd-length"])
def test_masked_lm_matches_transformers_and_round_trips(tmp_path, case):
    hf, ours = _pair(tmp_path, "FunnelForMaskedLM", dict(TINY, **CASES.get(case, {})))
    assert ours.config.recurrence == "funnel" and ours.config.funnel_decoder_layers == 2
    ids, mask, kw = _batch(case == "odd-length")
    assert_encoder_round_trip(hf, ours, tmp_path / "out", mask.bool(), dict(input_ids=ids, attention_mask=mask, **kw))


@pytest.mark.parametrize("suffix, head", [("ForSequenceClassification", "classify"),
                                          ("ForTokenClassification", "tokens")])
def test_classifiers_match_transformers(tmp_path, suffix, head):
    hf, ours = _pair(tmp_path, "Funnel" + suffix, dict(TINY, num_labels=3))
    assert ours.config.head == head and ours.config.funnel_decoder_layers == (2 if head == "tokens" else 0)
    ids, mask, kw = _batch()
    real = slice(None) if head == "classify" else mask.bool()
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask, **kw).logits
        assert (mine - hf(ids, attention_mask=mask, **kw).logits)[real].abs().max().item() <= 1e-4
    to_hf(ours, tmp_path / "out", labels=["a", "b", "c"])
    again = getattr(transformers, "Funnel" + suffix).from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        assert (again(ids, attention_mask=mask, **kw).logits - mine)[real].abs().max().item() <= 1e-4


@pytest.mark.parametrize("base, length", [("FunnelBaseModel", 4), ("FunnelModel", 16)])
def test_base_models_read_as_embedding_models(tmp_path, base, length):
    """FunnelBaseModel's output is the pooled sequence (16 tokens to 4): compared on the first row, unpadded, and on the
    tokens of the second whose pooled pairs hold no padding; FunnelModel's is full length, compared on real tokens."""
    hf, ours = _pair(tmp_path, base, TINY)
    assert ours.config.head == "embed"
    ids, mask, kw = _batch()
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, **kw).last_hidden_state
        mine = ours(ids, attention_mask=mask, **kw).hidden_states
    assert mine.shape == theirs.shape == (2, length, 64)
    real = mask.bool() if length == 16 else torch.tensor([[True] * 4, [True, True, True, False]])
    assert (mine - theirs)[real].abs().max().item() <= 1e-4


@pytest.mark.parametrize("fields", [dict(block_repeats=[1, 2, 1]), dict(architectures=["FunnelForPreTraining"])])
def test_variants_it_cannot_hold_are_refused(fields):
    with pytest.raises(LlmarchError, match="Funnel"):
        hf_model_config({**transformers.FunnelConfig(**TINY).to_dict(), "model_type": "funnel", **fields})


def test_funnel_refuses_a_causal_stack():
    import llmarch

    with pytest.raises(LlmarchError, match="bidirectional"):
        llmarch.build("llama-tiny", n_layers=2, mixer="funnel_attention", recurrence="funnel", funnel_blocks=[1, 1],
                      norm_placement="post", device="meta")


def test_flops_count_each_group_over_its_share_of_the_tokens(monkeypatch):
    """`llmarch info`'s training FLOPs per token: group g's blocks run over 1/2^g of the tokens (a pooled group's
    first block's keys over the group before's, where only queries pool), the decoder over all. Until 2026-12-07
    every block counted at full length."""
    from llmarch.analysis.accounting import model_facts
    from llmarch.layers.funnel import Funnel
    from llmarch.layers.mixer import MIXERS
    from llmarch.models.build import empty_model

    cfg = hf_model_config({**transformers.FunnelConfig(**TINY).to_dict(), "model_type": "funnel"})
    shares = [(1.0, 1.0), (0.5, 1.0), (0.5, 0.5), (0.25, 0.5), (1.0, 1.0), (1.0, 1.0)]  # groups 1, 2, 1; 2 decoder
    assert Funnel(cfg).token_shares() == shares
    assert Funnel(cfg.replace(funnel_pool_q_only=False)).token_shares()[1] == (0.5, 0.5)
    flops = model_facts(cfg)["flops_per_token"]
    monkeypatch.setattr(Funnel, "token_shares", lambda self: [(1.0, 1.0)] * 6)
    full = model_facts(cfg)["flops_per_token"]
    sizes = [sum(p.numel() for p in b.parameters()) for b in empty_model(cfg).blocks]
    scores = MIXERS["funnel_attention"].score_dims(cfg)
    saved = 6 * sum(n * (1 - q) for n, (q, _) in zip(sizes, shares)) \
        + 6 * cfg.context_length * scores * sum(1 - q * k for q, k in shares)
    assert full - flops == round(saved) and flops < 0.8 * full
