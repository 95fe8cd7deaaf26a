"""XLM and FlauBERT against transformers, through files: the masked LM (learned or sinusoidal positions, language
embeddings per token or per input, GELU or ReLU; FlauBERT post- and pre-norm, with layerdrop, which eval skips), the
sequence and token classifiers, the base model as an embedding model, each on a right-padded batch in fp32 (<= 1e-4
on real tokens) with a to_hf round trip that transformers loads to the same logits and whose config reads back to
ours; and the variants refused in one line."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

from conftest import perturbed

transformers = pytest.importorskip("transformers")
from transformers.cache_utils import DynamicCache, EncoderDecoderCache  # noqa: E402

TINY = dict(vocab_size=120, emb_dim=64, n_layers=2, n_heads=4, max_position_embeddings=40)
# case -> (prefix, config fields): prefix + "WithLMHeadModel", "ForSequenceClassification", ...
CASES = {
    "xlm": ("XLM", dict(TINY, n_langs=3)),
    "xlm-sinusoidal-relu": ("XLM", dict(TINY, n_langs=3, sinusoidal_embeddings=True, gelu_activation=False)),
    "xlm-monolingual": ("XLM", dict(TINY)),
    "flaubert": ("Flaubert", dict(TINY, n_langs=2, layerdrop=0.3)),
    "flaubert-prenorm": ("Flaubert", dict(TINY, pre_norm=True, layerdrop=0.3)),
}


class _Indexable(EncoderDecoderCache):
    """transformers 5.25's pre_norm FlauBERT indexes its cache per layer (`cache[i]`), which EncoderDecoderCache does
    not allow: every forward of a pre-norm FlauBERT fails unless given a cache whose layers read as None (no cache)."""

    def __getitem__(self, i):
        return None


def cache_kw(case: str) -> dict:
    return {"cache": _Indexable(DynamicCache(), DynamicCache())} if CASES[case][1].get("pre_norm") else {}


def batch(n_langs: int, per_input: bool):
    """Two rows of 16 ids, the second right-padded (pad id 2) after 11; languages per token (B, T) for transformers,
    and for llmarch the same or, per_input, one per row (B,) (transformers' langs repeat it over the row)."""
    torch.manual_seed(1)
    ids = torch.randint(4, 120, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 11:], ids[1, 11:] = 0, 2
    if n_langs < 2:
        return ids, mask, {}, {}
    if per_input:
        langs = torch.tensor([n_langs - 1, 0])
        return ids, mask, {"langs": langs[:, None].expand(-1, 16)}, {"lang_ids": langs}
    langs = torch.randint(0, n_langs, (2, 16))
    return ids, mask, {"langs": langs}, {"lang_ids": langs}


def saved(tmp_path, case: str, suffix: str, **extra):
    prefix, fields = CASES[case]
    torch.manual_seed(0)
    conf = getattr(transformers, f"{prefix}Config")(**fields, **extra)
    hf = perturbed(getattr(transformers, prefix + suffix)(conf))
    hf.save_pretrained(tmp_path / suffix)
    return hf, from_hf(tmp_path / suffix)


def assert_round_trip(ours, cls, tmp_path, ids, mask, theirs_kw, ours_kw, real, **labels):
    to_hf(ours, tmp_path / "out", **labels)
    again = cls.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        back = again(ids, attention_mask=mask, **theirs_kw).logits
        mine = ours(ids, attention_mask=mask, **ours_kw).logits
    assert (back - mine)[real].abs().max().item() <= 1e-4
    cfg = ours.config
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}
    return again


@pytest.mark.parametrize("per_input", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
def test_masked_lm_matches_transformers_and_round_trips(tmp_path, case, per_input):
    hf, ours = saved(tmp_path, case, "WithLMHeadModel")
    langs = CASES[case][1].get("n_langs", 1)
    assert not ours.config.causal and ours.config.lang_vocab_size == (langs if langs > 1 else 0)
    ids, mask, theirs_kw, ours_kw = batch(langs, per_input)
    theirs_kw.update(cache_kw(case))
    real = mask.bool()
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, **theirs_kw).logits
        mine = ours(ids, attention_mask=mask, **ours_kw).logits
    assert (mine - theirs)[real].abs().max().item() <= 1e-4
    assert_round_trip(ours, type(hf), tmp_path, ids, mask, theirs_kw, ours_kw, real)


@pytest.mark.parametrize("case", ["xlm", "flaubert-prenorm"])
def test_classifiers_match_transformers(tmp_path, case):
    """The sequence classifier (the first token's state through one linear layer: pooler=False) and the token
    classifier, and their round trips with the labels' names."""
    ids, mask, theirs_kw, ours_kw = batch(CASES[case][1].get("n_langs", 1), False)
    theirs_kw.update(cache_kw(case))
    for suffix, head in (("ForSequenceClassification", "classify"), ("ForTokenClassification", "tokens")):
        hf, ours = saved(tmp_path / suffix, case, suffix, num_labels=3)
        assert ours.config.head == head and not ours.config.pooler
        real = slice(None) if head == "classify" else mask.bool()
        with torch.no_grad():
            mine = ours(ids, attention_mask=mask, **ours_kw).logits
            assert (mine - hf(ids, attention_mask=mask, **theirs_kw).logits)[real].abs().max().item() <= 1e-4
        again = assert_round_trip(ours, type(hf), tmp_path / suffix, ids, mask, theirs_kw, ours_kw, real,
                                  labels=["a", "b", "c"])
        assert again.config.id2label == {0: "a", 1: "b", 2: "c"}


@pytest.mark.parametrize("case", ["xlm", "flaubert-prenorm"])
def test_base_model_reads_as_an_embedding_model(tmp_path, case):
    hf, ours = saved(tmp_path, case, "Model")
    assert ours.config.head == "embed"
    ids, mask, theirs_kw, ours_kw = batch(CASES[case][1].get("n_langs", 1), False)
    theirs_kw.update(cache_kw(case))
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, **theirs_kw).last_hidden_state
        mine = ours(ids, attention_mask=mask, **ours_kw).hidden_states
    assert (mine - theirs)[mask.bool()].abs().max().item() <= 1e-4


@pytest.mark.parametrize("fields, match", [
    (dict(asm=True), "adaptive log-softmax"),
    (dict(causal=True), "causal=true"),
    (dict(architectures=["XLMForSequenceClassification"], summary_type="mean"), "sequence summary"),
    (dict(architectures=["XLMForQuestionAnsweringSimple"]), "not supported"),
])
@pytest.mark.parametrize("model_type", ["xlm", "flaubert"])
def test_refused_variants(fields, match, model_type):
    with pytest.raises(LlmarchError, match=match):
        hf_model_config({**transformers.XLMConfig(**TINY).to_dict(), **fields, "model_type": model_type})


def test_pre_norm_is_flauberts():
    from llmarch.interop.hf import FAMILIES

    cfg = hf_model_config({**transformers.FlaubertConfig(**TINY, pre_norm=True).to_dict(), "model_type": "flaubert"})
    assert cfg.norm_placement == "pre" and not cfg.final_norm
    with pytest.raises(LlmarchError, match="post-norm"):
        FAMILIES["xlm"].from_config(cfg.replace(hf_model_type="xlm"))


def test_a_tied_head_stored_again_is_read_past(tmp_path):
    """Older XLM files store pred_layer.proj.weight beside the embedding it is tied to: read, not refused."""
    from safetensors.torch import load_file, save_file

    hf, _ = saved(tmp_path, "xlm", "WithLMHeadModel")
    file = tmp_path / "WithLMHeadModel" / "model.safetensors"
    state = load_file(file)
    state["pred_layer.proj.weight"] = state["transformer.embeddings.weight"].clone()
    save_file(state, file, metadata={"format": "pt"})
    ours = from_hf(tmp_path / "WithLMHeadModel")
    ids, mask, theirs_kw, ours_kw = batch(3, False)
    with torch.no_grad():
        diff = ours(ids, attention_mask=mask, **ours_kw).logits - hf(ids, attention_mask=mask, **theirs_kw).logits
    assert diff[mask.bool()].abs().max().item() <= 1e-4
