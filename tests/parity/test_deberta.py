"""llmarch's disentangled attention (attention 'disentangled' over positions 'relative_embeddings') and DeBERTa-v2's
side convolution against transformers' DeBERTa-v2 / v3 models with each head (masked LM, sequence and token
classification), through files (fp32, <= 1e-4) on a right-padded batch, and a to_hf round trip that transformers
loads to the same logits. The variants: v3's (log buckets, normed relative embeddings, shared projections, both
terms), v2-xlarge's (its convolution, projections of their own, token types), v1's scheme in v2's code (no buckets:
offsets clamped within a span shorter than the batch, c2p alone), no relative attention (absolute positions), and
DeBERTa v1 (`deberta`: in_proj fused per head, q and v biases only, pos_proj without a bias) relative or not."""
import pytest
import torch

from llmarch.interop import from_hf, to_hf

from conftest import perturbed
from test_bert import HEADS, padded_batch, real_part

transformers = pytest.importorskip("transformers")

BASE = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
            num_labels=3, max_position_embeddings=64, initializer_range=0.15)  # large enough that every term shows
V3 = dict(relative_attention=True, position_buckets=8, max_relative_positions=32, norm_rel_ebd="layer_norm",
          share_att_key=True, pos_att_type="p2c|c2p", position_biased_input=False, type_vocab_size=0)
VARIANTS = {
    "v3": V3,
    "xlarge": {**V3, "share_att_key": False, "conv_kernel_size": 3, "conv_act": "gelu", "type_vocab_size": 2,
               "pos_att_type": ["c2p", "p2c"]},
    "v1_scheme": dict(relative_attention=True, max_relative_positions=6, pos_att_type="c2p",
                      position_biased_input=False, type_vocab_size=2, hidden_act="gelu_new"),
    "absolute": dict(type_vocab_size=2),
    "v1": dict(relative_attention=True, max_relative_positions=6, pos_att_type="c2p|p2c",
               position_biased_input=False, type_vocab_size=2),
    "v1_absolute": dict(type_vocab_size=2),
}
PREFIX = {v: "Deberta" if v.startswith("v1") and v != "v1_scheme" else "DebertaV2" for v in VARIANTS}
MODEL_TYPE = {"Deberta": "deberta", "DebertaV2": "deberta-v2"}
CASES = [(v, "ForMaskedLM") for v in VARIANTS] + [("v3", "ForSequenceClassification"),
                                                   ("xlarge", "ForTokenClassification"),
                                                   ("v1", "ForSequenceClassification")]


def hf_model(variant, suffix):
    torch.manual_seed(0)
    conf = getattr(transformers, PREFIX[variant] + "Config")(**BASE, **VARIANTS[variant])
    hf = perturbed(getattr(transformers, PREFIX[variant] + suffix)(conf))
    return hf, conf


def batch(types_on):
    torch.manual_seed(1)
    return padded_batch(0, types_on)


@pytest.mark.parametrize("variant, suffix", CASES)
def test_deberta_matches_transformers(tmp_path, variant, suffix):
    head = HEADS[suffix]
    hf, conf = hf_model(variant, suffix)
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert not ours.config.causal and ours.config.head == head
    assert ours.config.hf_model_type == MODEL_TYPE[PREFIX[variant]]
    ids, types, mask = batch(conf.type_vocab_size > 0)
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, token_type_ids=types).logits
        mine = ours(ids, attention_mask=mask, token_type_ids=types).logits
    assert mine.shape == theirs.shape
    assert (real_part(mine, mask, head) - real_part(theirs, mask, head)).abs().max().item() <= 1e-4
    to_hf(ours, tmp_path / "out", labels=None if head == "lm" else ["a", "b", "c"])
    again = getattr(transformers, PREFIX[variant] + suffix).from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        back = again(ids, attention_mask=mask, token_type_ids=types).logits
    assert (real_part(back, mask, head) - real_part(mine, mask, head)).abs().max().item() <= 1e-4


def test_bidirectional_and_padding_invariant(tmp_path):
    hf, conf = hf_model("xlarge", "ForMaskedLM")
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    ids, types, mask = batch(True)
    with torch.no_grad():
        base = ours(ids, attention_mask=mask, token_type_ids=types).logits
        changed = ids.clone()
        changed[0, 12] = (changed[0, 12] + 1) % 120
        assert not torch.allclose(ours(changed).logits[0, 3], ours(ids).logits[0, 3])
        pad = torch.randint(2, 120, (2, 5))  # appended padding (any ids, masked out) changes no real position
        longer = ours(torch.cat([ids, pad], 1), attention_mask=torch.cat([mask, torch.zeros_like(pad)], 1),
                      token_type_ids=torch.cat([types, torch.ones_like(pad)], 1)).logits
    real = mask.bool()
    assert (longer[:, :16][real] - base[real]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("variant", ["v3", "v1"])
def test_a_base_model_reads_as_an_embedding_model(tmp_path, variant):
    """DebertaV2Model / DebertaModel (the body alone, names without `deberta.`): head embed, its hidden states
    transformers' last_hidden_state."""
    torch.manual_seed(0)
    conf = getattr(transformers, PREFIX[variant] + "Config")(**BASE, **VARIANTS[variant])
    hf = getattr(transformers, PREFIX[variant] + "Model")(conf).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert ours.config.head == "embed"
    ids, types, mask = batch(conf.type_vocab_size > 0)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        mine = ours(ids, attention_mask=mask, token_type_ids=types).hidden_states
    assert (mine - theirs)[mask.bool()].abs().max().item() <= 1e-4


def test_unsupported_variants_are_refused(tmp_path):
    from llmarch.errors import LlmarchError
    from llmarch.interop.hf import hf_model_config

    for bad, match in [(dict(VARIANTS["v3"], position_biased_input=True), "position_biased_input"),
                       (dict(VARIANTS["v3"], legacy=False), "legacy"),
                       (dict(VARIANTS["v3"], pos_att_type=["p2p"]), "pos_att_type"),
                       (dict(VARIANTS["v3"], embedding_size=32), "embedding_size")]:
        with pytest.raises(LlmarchError, match=match):
            hf_model_config({"model_type": "deberta-v2", **BASE, **bad})
    with pytest.raises(LlmarchError, match="talking_head"):
        hf_model_config({"model_type": "deberta", **BASE, **VARIANTS["v1"], "talking_head": True})
    hf, _ = hf_model("v1", "ForMaskedLM")
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    with torch.no_grad():
        ours.blocks[0].attn.qkv_proj.bias[70] = 1.0  # a key bias, which v1's layout cannot hold
    with pytest.raises(LlmarchError, match="key bias"):
        to_hf(ours, tmp_path / "out")
