"""llmarch against transformers' EuroBERT, GTE, NomicBERT, MPNet, ALBERT, UltraBERT, Jina-Embeddings-v3 and the
ModernBERT decoder: a tiny seeded model of each (2 layers, 1-D parameters perturbed), through files; masked-LM
logits within 1e-4 in fp32 on the real positions of a padded batch, and a to_hf round trip that transformers loads
to the same logits."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

from conftest import perturbed
from test_bert import padded_batch

transformers = pytest.importorskip("transformers")

V = 120
SMALL = dict(vocab_size=V, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96)
# family -> (transformers class prefix, config extras, left padding as well as right)
FAMILIES = {
    "eurobert": ("EuroBert", dict(num_key_value_heads=2, mlp_bias=True, attention_bias=True, pad_token_id=0,
                                  bos_token_id=1, eos_token_id=2, mask_token_id=3, max_position_embeddings=64), True),
    "gte": ("Gte", dict(type_vocab_size=2, pad_token_id=0, max_position_embeddings=64,
                        rope_parameters={"rope_type": "default", "rope_theta": 500.0}), True),
    "nomic_bert": ("NomicBert", dict(max_position_embeddings=64), True),
    # absolute positions too: right padding only (transformers counts them from the first slot, padding or not)
    "mpnet": ("MPNet", dict(max_position_embeddings=66), False),
    # factorised embeddings (32 wide) and 3 layers sharing 2 groups of weights (layers 0 and 1 the first)
    "albert": ("Albert", dict(embedding_size=32, num_hidden_layers=3, num_hidden_groups=2, max_position_embeddings=64),
               False),
    # 3 layers (sliding, sliding, full), windows of 3 either side over 16 tokens, RoPE bases apart, a 48-wide head
    # (initializer_range 0.1: at 0.02 its bias-free bottleneck head's logits stay below 5e-3)
    "ultrabert": ("Ultrabert", dict(num_hidden_layers=3, num_key_value_heads=2, sliding_window=3, initializer_range=0.1,
                                    prediction_head_size=48, max_position_embeddings=64, rope_parameters={
                                        "full_attention": {"rope_type": "default", "rope_theta": 5e4},
                                        "sliding_attention": {"rope_type": "default", "rope_theta": 50.0}}), True),
    "jina_embeddings_v3": ("JinaEmbeddingsV3", dict(type_vocab_size=2, pad_token_id=0, max_position_embeddings=64,
                                                    rope_parameters={"rope_type": "default", "rope_theta": 500.0}),
                           True),
}
PAD = {"mpnet": 1}  # MPNet numbers positions from the ids that are not 1


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def pair(request, tmp_path_factory):
    """A transformers masked LM of the family, perturbed and saved, and llmarch's reading of it."""
    family = request.param
    prefix, extra, _ = FAMILIES[family]
    torch.manual_seed(0)
    conf = getattr(transformers, prefix + "Config")(**{**SMALL, **extra}, attn_implementation="eager")
    hf = perturbed(getattr(transformers, prefix + "ForMaskedLM")(conf))
    folder = tmp_path_factory.mktemp(family)
    hf.save_pretrained(folder / "hf")
    return family, hf, from_hf(folder / "hf"), folder


def batches(family, cfg):
    """(ids, mask, extra inputs): a right-padded batch, token types 1 on its second half where the family has
    them, and where positions are RoPE's alone the same batch left-padded (the relative offsets are the same)."""
    torch.manual_seed(1)
    ids, types, mask = padded_batch(PAD.get(family, 0), low=4)
    extra = {"token_type_ids": types} if cfg.type_vocab_size > 1 else {}
    out = [(ids, mask, extra)]
    if FAMILIES[family][2]:
        out.append((ids.flip(1), mask.flip(1), {k: v.flip(1) for k, v in extra.items()}))
    return out


def gap(a, b, mask):
    return (a[mask.bool()] - b[mask.bool()]).abs().max().item()


def test_masked_lm_matches_transformers_and_round_trips(pair):
    family, hf, ours, folder = pair
    assert not ours.config.causal and ours.config.hf_model_type == family
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())
    to_hf(ours, folder / "out")
    again = getattr(transformers, FAMILIES[family][0] + "ForMaskedLM").from_pretrained(
        folder / "out", attn_implementation="eager").eval()
    for ids, mask, extra in batches(family, ours.config):
        with torch.no_grad():
            theirs = hf(ids, attention_mask=mask, **extra).logits
            mine = ours(ids, attention_mask=mask, **extra).logits
            back = again(ids, attention_mask=mask, **extra).logits
        assert mine.shape == theirs.shape
        assert gap(mine, theirs, mask) <= 1e-4, family
        assert gap(back, theirs, mask) <= 1e-4, family


@pytest.mark.parametrize("model_type, change, message", [
    ("eurobert", dict(architectures=["EuroBertForSequenceClassification"]), "EuroBertForSequenceClassification"),
    ("gte", dict(hidden_act="silu"), "hidden_act 'silu'"),
    ("mpnet", dict(relative_attention_num_buckets=64), "relative_attention_num_buckets 64"),
    ("albert", dict(embedding_size=64), "embedding_size equal to hidden_size"),
    ("albert", dict(inner_group_num=2), "inner_group_num 2"),
    ("ultrabert", dict(architectures=["UltrabertForTokenClassification"]), "UltrabertForTokenClassification"),
    ("jina_embeddings_v3", dict(lora_adaptations=["retrieval.query"]), "task LoRA adapters"),
])
def test_variants_it_cannot_compute_are_refused(model_type, change, message):
    with pytest.raises(LlmarchError, match=message):
        hf_model_config({**SMALL, "model_type": model_type, **change})


# the ModernBERT decoder: 4 layers (full 0 and 3, sliding 1 and 2 over 4 keys each), RoPE bases apart, biases on,
# its norm gains and biases moved; left-padded logits, 32 greedy tokens, cached decoding, to_hf round trip
DECODER = {"modernbert-decoder": ("ModernBertDecoderConfig", "ModernBertDecoderForCausalLM", dict(
    vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
    local_attention=8, pad_token_id=0, bos_token_id=1, eos_token_id=2, attention_bias=True, mlp_bias=True,
    norm_bias=True, classifier_bias=True, max_position_embeddings=128, initializer_range=0.1,
    layer_types=["full_attention", "sliding_attention", "sliding_attention", "full_attention"],
    rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000.0},
                     "sliding_attention": {"rope_type": "default", "rope_theta": 50.0}}))}


def test_modernbert_decoder_matches_transformers(tmp_path):
    import test_dense_families

    ours = test_dense_families.check_case("modernbert-decoder", tmp_path, DECODER)
    assert ours.config.causal and not ours.config.first_mixer_norm
    assert ours.config.for_layer(1).sliding_window == 4


@pytest.mark.parametrize("fields, message", [
    (dict(layer_groups=2), "layer_groups=2 needs .* an encoder"),
    (dict(layer_groups=3, causal=False, n_layers=2), "layer_groups=3 needs 1..n_layers"),
    (dict(head_mlp=16), "head_mlp=16 needs head_transform"),
    (dict(head_act="tanh"), "unknown head_act 'tanh'"),
    (dict(ffn_in_bias=False, ffn="swiglu", n_experts=4), "ffn_in_bias=False differing from bias=True"),
])
def test_the_new_fields_check_themselves(fields, message):
    import llmarch

    with pytest.raises(LlmarchError, match=message):
        llmarch.ModelConfig(**fields)


def test_eurobert_token_classifier_and_base_model(tmp_path):
    """EuroBertForTokenClassification (head `tokens`, and its to_hf round trip) and EuroBertModel (head `embed`: the
    final hidden states)."""
    prefix, extra, _ = FAMILIES["eurobert"]
    conf = transformers.EuroBertConfig(**SMALL, **extra, num_labels=3)
    ids, _, mask = padded_batch(0, low=4)
    for suffix, head in (("Model", "embed"), ("ForTokenClassification", "tokens")):
        torch.manual_seed(0)
        hf = perturbed(getattr(transformers, prefix + suffix)(conf))
        hf.save_pretrained(tmp_path / suffix)
        ours = from_hf(tmp_path / suffix)
        assert ours.config.head == head
        with torch.no_grad():
            theirs = hf(ids, attention_mask=mask)
            mine = ours(ids, attention_mask=mask)
        theirs = theirs.logits if head == "tokens" else theirs.last_hidden_state
        assert gap(mine.logits if head == "tokens" else mine.hidden_states, theirs, mask) <= 1e-4
    to_hf(ours, tmp_path / "out", labels=["a", "b", "c"])
    again = transformers.EuroBertForTokenClassification.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        assert gap(again(ids, attention_mask=mask).logits, theirs, mask) <= 1e-4
