"""llmarch against transformers' ModernBERT (Warner et al. 2024) with each head (masked LM, sequence classification
pooling the first token or the mean, token classification), through files (fp32, <= 1e-4), on left- and
right-padded batches longer than the local window, with global and local layers of different RoPE bases and norm
gains moved away from 1 (biases too, where the config has them); a to_hf round trip that transformers loads to the
same logits; the base model read as an embedding model; older config.json forms; and the refusals."""
import json

import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

transformers = pytest.importorskip("transformers")

VOCAB, T = 128, 24
# 4 layers, global where i % 3 == 0 (layers 0 and 3), local windows of 8 (4 keys each side) over 24 tokens
BASE = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
            global_attn_every_n_layers=3, local_attention=8, global_rope_theta=1000.0, local_rope_theta=50.0,
            pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2, num_labels=3,
            attn_implementation="eager", initializer_range=0.1)  # weights large enough that attention is not flat
BIASED = dict(attention_bias=True, mlp_bias=True, norm_bias=True, classifier_bias=True)
CASES = [  # (transformers class suffix, config extras, padding side)
    ("ForMaskedLM", {}, "right"),
    ("ForMaskedLM", BIASED, "left"),
    ("ForSequenceClassification", dict(classifier_pooling="cls"), "right"),
    ("ForSequenceClassification", dict(classifier_pooling="mean", **BIASED), "left"),
    ("ForTokenClassification", {}, "left"),
]
HEADS = {"ForMaskedLM": "lm", "ForSequenceClassification": "classify", "ForTokenClassification": "tokens"}


def hf_model(suffix, extra):
    torch.manual_seed(0)
    conf = transformers.ModernBertConfig(**BASE, **extra)
    hf = getattr(transformers, "ModernBert" + suffix)(conf).eval()
    with torch.no_grad():  # norm gains and biases away from 1 and 0, so a swapped or skipped one shows
        for p in hf.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return hf


def padded_batch(side):
    torch.manual_seed(1)
    ids = torch.randint(3, VOCAB, (2, T))
    mask = torch.ones_like(ids)
    pads = slice(0, 9) if side == "left" else slice(T - 9, T)  # more pads than a window: whole windows of padding
    mask[1, pads] = 0
    ids[1, pads] = 0
    return ids, mask


def real_part(logits, mask):
    return logits if logits.dim() == 2 else logits[mask.bool()]


def biggest_gap(a, b, mask):
    return (real_part(a, mask) - real_part(b, mask)).abs().max().item()


@pytest.mark.parametrize("suffix, extra, side", CASES)
def test_heads_match_transformers_and_round_trip(tmp_path, suffix, extra, side):
    hf = hf_model(suffix, extra)
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    cfg = ours.config
    assert (cfg.head, cfg.hf_model_type, cfg.causal, cfg.first_mixer_norm) == (HEADS[suffix], "modernbert", False,
                                                                                False)
    assert cfg.attention == "full" and cfg.for_layer(1).attention == "sliding_window"
    assert (cfg.for_layer(1).sliding_window, cfg.rope_theta, cfg.for_layer(1).rope_theta) == (5, 1000.0, 50.0)
    ids, mask = padded_batch(side)
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask).logits
        mine = ours(ids, attention_mask=mask).logits
    assert mine.shape == theirs.shape
    assert biggest_gap(mine, theirs, mask) <= 1e-4
    to_hf(ours, tmp_path / "out", labels=None if suffix == "ForMaskedLM" else ["a", "b", "c"])
    again = getattr(transformers, "ModernBert" + suffix).from_pretrained(tmp_path / "out",
                                                                       attn_implementation="eager").eval()
    assert again.config.layer_types == hf.config.layer_types
    assert again.config.rope_parameters == hf.config.rope_parameters
    with torch.no_grad():
        back = again(ids, attention_mask=mask).logits
    assert biggest_gap(back, theirs, mask) <= 1e-4
    if suffix != "ForMaskedLM":
        assert again.config.id2label == {0: "a", 1: "b", 2: "c"}
        assert again.config.classifier_pooling == hf.config.classifier_pooling


def test_the_window_and_the_rope_bases_are_what_the_parity_rests_on(tmp_path):
    """The batch is long enough for the local window to bind and the two RoPE bases to differ: the same weights
    with a wider window, or with the global base on the local layers, no longer match transformers."""
    import llmarch

    hf = hf_model("ForMaskedLM", {})
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    ids, mask = padded_batch("right")
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask).logits
        for local in ({"sliding_window": 6, "rope_theta": 50.0}, {"sliding_window": 5, "rope_theta": 1000.0}):
            other = llmarch.build(ours.config.replace(layer_overrides={"sliding_attention": local})).eval()
            other.load_state_dict(ours.state_dict())
            assert biggest_gap(other(ids, attention_mask=mask).logits, theirs, mask) > 1e-3


@pytest.mark.parametrize("pooling", [None, "mean"])
def test_the_base_model_reads_as_an_embedding_model(tmp_path, pooling):
    """ModernBertModel (the body of embedding models built on ModernBERT): names without `model.`, no head; read as
    head `embed`, its final hidden states equal to transformers' last_hidden_state on a left-padded batch; pooled
    as the sentence-transformers Pooling module beside it says, else not at all (whatever classifier_pooling)."""
    torch.manual_seed(0)
    hf = transformers.ModernBertModel(transformers.ModernBertConfig(**BASE, classifier_pooling="mean")).eval()
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(tmp_path / "hf")
    if pooling:
        (tmp_path / "hf" / "modules.json").write_text(json.dumps(
            [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
        (tmp_path / "hf" / "1_Pooling").mkdir()
        (tmp_path / "hf" / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": 64, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}))
    ours = from_hf(tmp_path / "hf")
    assert (ours.config.head, ours.config.pooling) == ("embed", pooling or "none")
    ids, mask = padded_batch("left")
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        out = ours(ids, attention_mask=mask)
    assert (out.hidden_states - theirs)[mask.bool()].abs().max().item() <= 1e-4
    if pooling:
        real = mask[..., None].float()
        assert (out.logits - (theirs * real).sum(1) / real.sum(1)).abs().max().item() <= 1e-4


def test_older_config_forms_read_alike():
    """config.json as transformers 4.x wrote it (global/local_rope_theta, global_attn_every_n_layers, no
    layer_types) reads as transformers 5's rope_parameters and layer_types."""
    plain = {k: v for k, v in BASE.items() if k != "attn_implementation"}
    new = transformers.ModernBertConfig(**plain).to_dict()
    old = {**plain, "model_type": "modernbert"}
    assert "layer_types" in new and "rope_parameters" in new and "layer_types" not in old
    assert hf_model_config(old).to_dict() == hf_model_config(new).to_dict()
    every_other = hf_model_config({**old, "global_attn_every_n_layers": 2, "num_hidden_layers": 5})
    assert every_other.layer_types == ["full_attention", "sliding_attention"] * 2 + ["full_attention"]
    thetas = hf_model_config({k: v for k, v in old.items() if not k.endswith("rope_theta")})
    assert (thetas.rope_theta, thetas.for_layer(1).rope_theta) == (160_000.0, 10_000.0)  # ModernBERT's defaults


@pytest.mark.parametrize("change, message", [
    (dict(hidden_activation="relu"), "hidden_activation 'relu'"),
    (dict(classifier_activation="silu"), "classifier_activation 'silu' differs"),
    (dict(attention_bias=True), "attention_bias and mlp_bias differ"),
    (dict(classifier_pooling="max"), "classifier_pooling 'max'"),
    (dict(layer_types=["full_attention"] * 3), "layer_types must give"),
])
def test_configs_it_cannot_compute_are_refused(change, message):
    with pytest.raises(LlmarchError, match=message):
        hf_model_config({**BASE, "model_type": "modernbert", **change})


def test_to_hf_refuses_what_the_layout_cannot_hold(tmp_path):
    import llmarch

    hf_model("ForMaskedLM", {}).save_pretrained(tmp_path / "hf")
    cfg = from_hf(tmp_path / "hf").config
    for change, message in ((dict(causal=True), "bidirectional"), (dict(first_mixer_norm=True), "no norm before"),
                            (dict(n_kv_heads=2), "multi-head")):
        with pytest.raises(LlmarchError, match=f"model_type modernbert needs .*{message}"):
            to_hf(llmarch.build(cfg.replace(**change)), tmp_path / "out")
