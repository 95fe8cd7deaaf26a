"""llmarch's bidirectional encoder against transformers' BERT, RoBERTa, XLM-RoBERTa and DistilBERT models with each
head (masked LM, sequence classification, token classification), through files (fp32, <= 1e-4), on a right-padded
batch with token types, and a to_hf round trip; and their base models read as embedding models."""
import pytest
import torch

import llmarch
from llmarch import LlmarchError
from llmarch.interop import from_hf, to_hf

from conftest import perturbed

transformers = pytest.importorskip("transformers")


FAMILIES = {"bert": ("BertConfig", "Bert", dict(max_position_embeddings=64)),
            "roberta": ("RobertaConfig", "Roberta", dict(max_position_embeddings=66, type_vocab_size=2)),
            "xlm-roberta": ("XLMRobertaConfig", "XLMRoberta", dict(max_position_embeddings=66)),
            # no token types, its own names, a ReLU pooler (pre_classifier)
            "distilbert": ("DistilBertConfig", "DistilBert", dict(max_position_embeddings=64, hidden_dim=96))}
HEADS = {"ForMaskedLM": "lm", "ForSequenceClassification": "classify", "ForTokenClassification": "tokens"}
CASES = [(family, suffix) for family in FAMILIES for suffix in HEADS]


def hf_model(family, suffix):
    conf_cls, prefix, extra = FAMILIES[family]
    torch.manual_seed(0)
    conf = getattr(transformers, conf_cls)(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                           intermediate_size=96, num_labels=3, **extra)
    hf = perturbed(getattr(transformers, prefix + suffix)(conf))
    return hf, conf


def padded_batch(pad_id, types_on: bool = True, low: int = 2):
    """Two rows of 16 ids from `low` up, the second right-padded after 11 with pad_id; token type 1 on the second
    half (types_on)."""
    ids = torch.randint(low, 120, (2, 16))  # RoBERTa derives positions from ids != pad (1): keep 0, 1 out
    types = torch.zeros_like(ids)
    types[:, 8:] = int(types_on)
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0  # right padding, as encoders are fed
    ids[1, 11:] = pad_id
    return ids, types, mask


def typed(family, types):
    """The token types, for a family that has them (DistilBERT has none)."""
    return {} if family == "distilbert" else {"token_type_ids": types}


def real_part(logits, mask, head):
    return logits if head == "classify" else logits[mask.bool()]


@pytest.mark.parametrize("family, suffix", CASES)
def test_encoder_heads_match_transformers(tmp_path, family, suffix):
    head = HEADS[suffix]
    hf, conf = hf_model(family, suffix)
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert not ours.config.causal and ours.config.head == head and ours.config.hf_model_type == family
    ids, types, mask = padded_batch(conf.pad_token_id)
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, **typed(family, types)).logits
        mine = ours(ids, attention_mask=mask, **typed(family, types)).logits
    assert mine.shape == theirs.shape
    assert (real_part(mine, mask, head) - real_part(theirs, mask, head)).abs().max().item() <= 1e-4
    to_hf(ours, tmp_path / "out", labels=None if head == "lm" else ["a", "b", "c"])
    again = getattr(transformers, FAMILIES[family][1] + suffix).from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        back = again(ids, attention_mask=mask, **typed(family, types)).logits
    assert (real_part(back, mask, head) - real_part(mine, mask, head)).abs().max().item() <= 1e-4
    if head != "lm":
        assert again.config.id2label == {0: "a", 1: "b", 2: "c"}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_bidirectional_and_padding_invariant(tmp_path, family):
    hf, conf = hf_model(family, "ForMaskedLM")
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    ids, types, mask = padded_batch(conf.pad_token_id)
    with torch.no_grad():
        base = ours(ids, attention_mask=mask, **typed(family, types)).logits
        # a later token changes an earlier position's logits
        changed = ids.clone()
        changed[0, 12] = (changed[0, 12] + 1) % 120
        assert not torch.allclose(ours(changed).logits[0, 3], ours(ids).logits[0, 3])
        # appending padding (any ids, masked out) leaves every real position's logits unchanged
        pad = torch.randint(2, 120, (2, 5))
        longer = ours(torch.cat([ids, pad], 1), attention_mask=torch.cat([mask, torch.zeros_like(pad)], 1),
                      **typed(family, torch.cat([types, torch.ones_like(pad)], 1))).logits
    real = mask.bool()
    assert (longer[:, :16][real] - base[real]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name, prefix", [("bert-base", "Bert"), ("roberta-base", "Roberta")])
def test_classifier_presets_count_like_transformers(name, prefix):
    import llmarch

    hf_conf = getattr(transformers, prefix + "Config")(num_labels=3, **({"vocab_size": 50265,
                      "max_position_embeddings": 514, "type_vocab_size": 1, "pad_token_id": 1} if prefix == "Roberta"
                      else {}))
    with torch.device("meta"):
        hf = getattr(transformers, prefix + "ForSequenceClassification")(hf_conf)
    ours = llmarch.build(name, device="meta", head="classify", n_labels=3)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in hf.parameters())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_base_model_reads_as_an_embedding_model(tmp_path, family):
    """BertModel, XLMRobertaModel, DistilBertModel: the body of a sentence-embedding model (BGE, E5, MiniLM),
    names without the prefix and no head: read as head `embed`, its final hidden states equal to transformers'
    last_hidden_state on a padded batch, its pooling that of the sentence-transformers Pooling module beside it."""
    import json

    conf_cls, prefix, extra = FAMILIES[family]
    torch.manual_seed(0)
    conf = getattr(transformers, conf_cls)(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                           intermediate_size=96, **extra)
    hf = perturbed(getattr(transformers, prefix + "Model")(conf))
    hf.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf" / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
         {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (tmp_path / "hf" / "1_Pooling").mkdir()
    (tmp_path / "hf" / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 64, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    ours = from_hf(tmp_path / "hf")
    assert (ours.config.head, ours.config.pooling) == ("embed", "cls")
    ids, types, mask = padded_batch(conf.pad_token_id)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        mine = ours(ids, attention_mask=mask).hidden_states
    assert (mine - theirs)[mask.bool()].abs().max().item() <= 1e-4


@pytest.mark.parametrize("family, head", [("bert", "cls.predictions.decoder.weight"),
                                          ("roberta", "lm_head.decoder.weight")])
def test_a_tied_head_stored_beside_the_embeddings_is_read(tmp_path, family, head):
    """Files converted from older pytorch_model.bin checkpoints store the tied MLM head a second time under its own
    name (transformers' safetensors writer leaves it out); it holds the embeddings again and reads as the tie."""
    from safetensors.torch import load_file, save_file

    hf, conf = hf_model(family, "ForMaskedLM")
    hf.eval().save_pretrained(tmp_path / "hf")
    tensors = load_file(tmp_path / "hf" / "model.safetensors")
    assert head not in tensors
    tensors[head] = hf.get_input_embeddings().weight.detach().clone()
    save_file(tensors, tmp_path / "hf" / "model.safetensors", metadata={"format": "pt"})
    ours = from_hf(tmp_path / "hf")
    ids, types, mask = padded_batch(conf.pad_token_id)
    with torch.no_grad():
        gap = (ours(ids, attention_mask=mask, token_type_ids=types).logits
               - hf(ids, attention_mask=mask, token_type_ids=types).logits)[mask.bool()].abs().max()
    assert ours.config.tied_head and gap <= 1e-4


# RoBERTa's pre-norm kin (roberta_prelayernorm.py) share its MLM head
PRENORM = {"roberta-prelayernorm": ("RobertaPreLayerNormConfig", "RobertaPreLayerNorm",
                                    dict(max_position_embeddings=66)),
           "xlm-roberta-xl": ("XLMRobertaXLConfig", "XLMRobertaXL",
                              dict(max_position_embeddings=66, type_vocab_size=2))}


@pytest.mark.parametrize("family", ["bert", "roberta", "xlm-roberta", *PRENORM])
def test_the_mlm_head_activation_with_a_relu_ffn(tmp_path, family):
    """hidden_act relu: BERT's MLM head applies it too, RoBERTa's (and its pre-norm kin's) applies exact GELU
    whatever hidden_act says (read as head_act gelu; it was read as the FFN's, 0.13 from transformers' logits, and
    the pre-norm kin refused it). Both round trip; a RoBERTa head of another activation cannot be written."""
    conf_cls, prefix, extra = {**FAMILIES, **PRENORM}[family]
    torch.manual_seed(0)
    conf = getattr(transformers, conf_cls)(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                           intermediate_size=96, hidden_act="relu", **extra)
    hf = perturbed(getattr(transformers, prefix + "ForMaskedLM")(conf))
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert (ours.config.ffn, ours.config.head_act) == ("relu", None if family == "bert" else "gelu")
    ids, types, mask = padded_batch(conf.pad_token_id)
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask, token_type_ids=types).logits[mask.bool()]
        assert (mine - hf(ids, attention_mask=mask, token_type_ids=types).logits[mask.bool()]).abs().max() <= 1e-4
    to_hf(ours, tmp_path / "out")
    again = getattr(transformers, prefix + "ForMaskedLM").from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        assert (again(ids, attention_mask=mask, token_type_ids=types).logits[mask.bool()] - mine).abs().max() <= 1e-4
    other = "gelu" if family == "bert" else "relu"
    with pytest.raises(LlmarchError, match="cannot be written"):
        to_hf(llmarch.build(ours.config.replace(head_act=other)), tmp_path / "bad")
