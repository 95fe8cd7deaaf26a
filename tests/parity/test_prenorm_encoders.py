"""llmarch's pre-norm bidirectional encoders against transformers' RoBERTa-PreLayerNorm (embedding LayerNorm),
XLM-RoBERTa-XL and Megatron-BERT (none) with each head (masked LM, sequence and token classification) and as base
models, through files (fp32, <= 1e-4) on a right-padded batch with token types, and a to_hf round trip."""
import pytest
import torch

from llmarch.interop import from_hf, to_hf

from conftest import perturbed
from test_bert import HEADS, padded_batch, real_part

transformers = pytest.importorskip("transformers")

FAMILIES = {"roberta-prelayernorm": ("RobertaPreLayerNorm", dict(max_position_embeddings=66, type_vocab_size=2)),
            "xlm-roberta-xl": ("XLMRobertaXL", dict(max_position_embeddings=66, type_vocab_size=2)),
            "megatron-bert": ("MegatronBert", dict(max_position_embeddings=64))}
CASES = [(family, suffix) for family in FAMILIES for suffix in HEADS]


def hf_model(family, suffix):
    prefix, extra = FAMILIES[family]
    torch.manual_seed(0)
    conf = getattr(transformers, prefix + "Config")(vocab_size=120, hidden_size=64, num_hidden_layers=2,
                                                    num_attention_heads=4, intermediate_size=96, num_labels=3,
                                                    initializer_range=0.1, **extra)
    hf = perturbed(getattr(transformers, prefix + suffix)(conf))
    return hf, conf


def batch(pad_id):
    torch.manual_seed(1)
    return padded_batch(pad_id)


@pytest.mark.parametrize("family, suffix", CASES)
def test_prenorm_encoder_matches_transformers(tmp_path, family, suffix):
    head = HEADS[suffix]
    hf, conf = hf_model(family, suffix)
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert ours.config.norm_placement == "pre" and ours.config.final_norm and not ours.config.causal
    assert ours.config.head == head and ours.config.hf_model_type == family
    ids, types, mask = batch(conf.pad_token_id)
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, token_type_ids=types).logits
        mine = ours(ids, attention_mask=mask, token_type_ids=types).logits
    assert mine.shape == theirs.shape
    assert (real_part(mine, mask, head) - real_part(theirs, mask, head)).abs().max().item() <= 1e-4
    to_hf(ours, tmp_path / "out", labels=None if head == "lm" else ["a", "b", "c"])
    again = getattr(transformers, FAMILIES[family][0] + suffix).from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        back = again(ids, attention_mask=mask, token_type_ids=types).logits
    assert (real_part(back, mask, head) - real_part(mine, mask, head)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_base_model_reads_as_an_embedding_model(tmp_path, family):
    prefix, extra = FAMILIES[family]
    torch.manual_seed(0)
    conf = getattr(transformers, prefix + "Config")(vocab_size=120, hidden_size=64, num_hidden_layers=2,
                                                    num_attention_heads=4, intermediate_size=96, **extra)
    hf = getattr(transformers, prefix + "Model")(conf).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert ours.config.head == "embed"
    ids, types, mask = batch(conf.pad_token_id)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        mine = ours(ids, attention_mask=mask, token_type_ids=types).hidden_states
    assert (mine - theirs)[mask.bool()].abs().max().item() <= 1e-4


def test_a_post_norm_model_is_not_written_as_a_pre_norm_family(tmp_path):
    import llmarch
    from llmarch.errors import LlmarchError

    model = llmarch.build("roberta-base", n_layers=1, d_model=32, n_heads=2, ffn_hidden=64, vocab_size=100,
                          device="meta")
    for family in FAMILIES:
        model.config = model.config.replace(hf_model_type=family)
        with pytest.raises(LlmarchError, match="pre-norm"):
            to_hf(model, tmp_path / family)
