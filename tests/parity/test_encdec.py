"""Encoder and encoder-decoder families read from transformers' checkpoints: CamemBERT and data2vec-text (RoBERTa's
layout), ELECTRA (a narrower embedding projected into the stack; discriminator and generator heads), mBART,
PEGASUS and M2M-100 / NLLB (pre-norm BART layouts). fp32 logits on padded batches within 1e-4, to_hf round trips,
and for the encoder-decoders greedy and beam search equal to transformers' generate."""
from __future__ import annotations

import pytest
import torch

import llmarch
from llmarch.interop import from_hf, to_hf
from conftest import perturbed, seq2seq_pair
from test_bert import padded_batch as encoder_batch, real_part
import test_seq2seq
from test_seq2seq import _BARTLIKE, V, padded_batch

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

ENCODER_HEADS = {"ForMaskedLM": "lm", "ForSequenceClassification": "classify", "ForTokenClassification": "tokens"}
# model_type -> (config class, architecture prefix, extra config fields)
_ROBERTA_LIKE = dict(max_position_embeddings=66, type_vocab_size=2)
ENCODERS = {"camembert": ("CamembertConfig", "Camembert", _ROBERTA_LIKE),
            "data2vec-text": ("Data2VecTextConfig", "Data2VecText", _ROBERTA_LIKE)}


def encoder_model(family, suffix, **extra):
    conf_cls, prefix, fields = ENCODERS[family]
    torch.manual_seed(0)
    conf = getattr(transformers, conf_cls)(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                           intermediate_size=96, num_labels=3, **fields, **extra)
    return perturbed(getattr(transformers, prefix + suffix)(conf)), conf


def check_encoder(tmp_path, hf, arch, head, pad_id, n_labels=3):
    """hf's logits on a right-padded batch with token types equal ours read from its files, and again after to_hf."""
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert not ours.config.causal and ours.config.head == head
    ids, types, mask = encoder_batch(pad_id)
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, token_type_ids=types).logits
        mine = ours(ids, attention_mask=mask, token_type_ids=types).logits
    assert mine.shape == theirs.shape
    diff = (real_part(mine, mask, head) - real_part(theirs, mask, head)).abs().max().item()
    assert diff <= 1e-4
    labels = None if head == "lm" else [f"l{i}" for i in range(n_labels)]
    to_hf(ours, tmp_path / "out", labels=labels)
    again = getattr(transformers, arch).from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        back = again(ids, attention_mask=mask, token_type_ids=types).logits
    assert (real_part(back, mask, head) - real_part(mine, mask, head)).abs().max().item() <= 1e-4
    return ours, diff


@pytest.mark.parametrize("family", sorted(ENCODERS))
@pytest.mark.parametrize("suffix", list(ENCODER_HEADS))
def test_roberta_layouts_match_transformers(tmp_path, family, suffix):
    hf, conf = encoder_model(family, suffix)
    ours, _ = check_encoder(tmp_path, hf, ENCODERS[family][1] + suffix, ENCODER_HEADS[suffix], conf.pad_token_id)
    assert ours.config.hf_model_type == family


@pytest.mark.parametrize("family", sorted(ENCODERS))
def test_roberta_layout_base_model_reads_as_embeddings(tmp_path, family):
    """CamembertModel / Data2VecTextModel (sentence-embedding bodies): names without the prefix, read as head embed."""
    conf_cls, prefix, fields = ENCODERS[family]
    torch.manual_seed(0)
    conf = getattr(transformers, conf_cls)(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                           intermediate_size=96, **fields)
    hf = perturbed(getattr(transformers, prefix + "Model")(conf))
    hf.save_pretrained(tmp_path)
    ours = from_hf(tmp_path)
    ids, types, mask = encoder_batch(conf.pad_token_id)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    mine = ours(ids, attention_mask=mask, token_type_ids=types).hidden_states
    assert ours.config.head == "embed" and (mine - theirs)[mask.bool()].abs().max().item() <= 1e-4


ELECTRA_HEADS = {**ENCODER_HEADS, "ForPreTraining": "detect"}


def electra_model(suffix, embedding_size):
    torch.manual_seed(0)
    conf = transformers.ElectraConfig(vocab_size=120, embedding_size=embedding_size, hidden_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
                                      max_position_embeddings=64, num_labels=3)
    return perturbed(getattr(transformers, "Electra" + suffix)(conf)), conf


@pytest.mark.parametrize("embedding_size", [32, 64])  # 32: projected into the 64-wide stack; 64: no projection
@pytest.mark.parametrize("suffix", list(ELECTRA_HEADS))
def test_electra_matches_transformers(tmp_path, suffix, embedding_size):
    """The generator (masked LM, its head back at the embedding width, tied), the discriminator (a logit per token),
    and the classification heads, with and without the embedding projection."""
    hf, conf = electra_model(suffix, embedding_size)
    ours, _ = check_encoder(tmp_path, hf, "Electra" + suffix, ELECTRA_HEADS[suffix], conf.pad_token_id)
    assert ours.config.embed_width == embedding_size
    assert (ours.embed_proj is None) == (embedding_size == 64)


def test_electra_base_model_and_refusals(tmp_path):
    """ElectraModel reads as an embedding model; BertForPreTraining (MLM + next sentence) and an ELECTRA with another
    hidden_act are refused in one line."""
    torch.manual_seed(0)
    conf = transformers.ElectraConfig(vocab_size=120, embedding_size=32, hidden_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, intermediate_size=96, max_position_embeddings=64)
    hf = perturbed(transformers.ElectraModel(conf))
    hf.save_pretrained(tmp_path / "base")
    ours = from_hf(tmp_path / "base")
    ids, types, mask = encoder_batch(conf.pad_token_id)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    mine = ours(ids, attention_mask=mask, token_type_ids=types).hidden_states
    assert ours.config.head == "embed" and (mine - theirs)[mask.bool()].abs().max().item() <= 1e-4
    transformers.BertForPreTraining(transformers.BertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64)).save_pretrained(tmp_path / "bert")
    with pytest.raises(llmarch.LlmarchError, match="BertForPreTraining checkpoints are not supported"):
        from_hf(tmp_path / "bert")
    transformers.ElectraForMaskedLM(transformers.ElectraConfig(
        vocab_size=120, embedding_size=32, hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
        intermediate_size=96, max_position_embeddings=64, hidden_act="relu")).save_pretrained(tmp_path / "relu")
    with pytest.raises(llmarch.LlmarchError, match="hidden_act 'relu' is not supported"):
        from_hf(tmp_path / "relu")


SEQ2SEQ = {
    # mBART (cc25 / 50): pre-norm BART with final norms, layernorm_embedding and scaled embeddings
    "mbart": lambda: transformers.MBartForConditionalGeneration(transformers.MBartConfig(
        **_BARTLIKE, scale_embedding=True, decoder_start_token_id=2)),
    # PEGASUS: pre-norm, final norms, Marian's sinusoids, scaled embeddings, pad 0 / eos 1
    "pegasus": lambda: transformers.PegasusForConditionalGeneration(transformers.PegasusConfig(
        **_BARTLIKE, scale_embedding=True, activation_function="relu")),
    # M2M-100: fairseq's sinusoids from padding_idx + 1, pre-norm, final norms, no logits bias
    "m2m_100": lambda: transformers.M2M100ForConditionalGeneration(transformers.M2M100Config(**_BARTLIKE)),
    # NLLB-200 (dense): M2M-100's model with ReLU; here padding id 0, so the position offset is 1, not 2
    "nllb": lambda: transformers.M2M100ForConditionalGeneration(transformers.M2M100Config(
        **_BARTLIKE, activation_function="relu", pad_token_id=0, decoder_start_token_id=2)),
}


# test_seq2seq.py's checks (logits on a padded batch, to_hf round trip, greedy and beam search against generate,
# cached decoding against the whole forward), collected here again over this module's `pair` fixture
test_logits_match = test_seq2seq.test_logits_match
test_export_round_trip = test_seq2seq.test_export_round_trip
test_generation_matches = test_seq2seq.test_generation_matches
test_cached_decode_equals_full_recomputation = test_seq2seq.test_cached_decode_equals_full_recomputation


@pytest.fixture(scope="module", params=list(SEQ2SEQ))
def pair(request, tmp_path_factory):
    """(name, transformers model, llmarch model read from its checkpoint directory), every norm gain, bias and the
    logits bias moved off its initial value."""
    torch.manual_seed(0)
    return seq2seq_pair(request.param, SEQ2SEQ[request.param](), tmp_path_factory)


@pytest.mark.parametrize("options", [dict(num_beams=1), dict(num_beams=4, length_penalty=0.6, early_stopping=True)])
def test_language_codes_at_generation(pair, options):
    """A target language chosen at generation: the decoder started from a language code (mBART-cc25's
    decoder_start_token_id) or started from eos with the code forced as the first new token (mBART-50 and NLLB's
    forced_bos_token_id), as transformers' generate does given the same settings."""
    name, ref, ours = pair
    src, mask, _ = padded_batch()
    code = V - 3  # a "language code" the tiny model would not choose by itself
    for start, forced in ((code, None), (ours.config.decoder_start_id, code)):
        with torch.no_grad():
            expected = ref.generate(input_ids=src, attention_mask=mask, max_new_tokens=8, do_sample=False,
                                    decoder_start_token_id=start, forced_bos_token_id=forced, forced_eos_token_id=None,
                                    eos_token_id=None, pad_token_id=ours.config.pad_id, min_length=0,
                                    no_repeat_ngram_size=0, **options)
        got = llmarch.generate(ours, src, attention_mask=mask, max_new_tokens=8, decoder_start_id=start,
                               forced_bos_id=forced, eos_id=None, **options)
        assert got.tolist() == expected.tolist(), (name, start, forced)
        assert got[:, 0].eq(start).all() and (forced is None or got[:, 1].eq(forced).all())


def test_new_fields_refuse_what_they_cannot_build():
    """embed_dim where the stack cannot project it, a detect head without the pooler, and generation settings for
    encoder-decoders given to a decoder-only model or out of the vocabulary: one-line errors."""
    bad = [dict(embed_dim=64, head_transform=False), dict(head="detect", classifier_transform=True),
           dict(embed_dim=0, head_transform=True)]
    for fields in bad:
        with pytest.raises(llmarch.LlmarchError):
            llmarch.build("bert-tiny", n_layers=1, **fields)
    with pytest.raises(llmarch.LlmarchError, match="embed_dim=64"):
        llmarch.build("bart-tiny", n_layers=1, n_decoder_layers=1, embed_dim=64)
    gpt = llmarch.build("gpt-tiny", n_layers=1)
    with pytest.raises(llmarch.LlmarchError, match="forced_bos_id is for encoder-decoders"):
        llmarch.generate(gpt, [[1, 2]], max_new_tokens=2, forced_bos_id=3)
    bart = llmarch.build("bart-tiny", n_layers=1, n_decoder_layers=1)
    with pytest.raises(llmarch.LlmarchError, match="decoder_start_id=9000 is out of range"):
        llmarch.generate(bart, [[5, 6]], max_new_tokens=2, decoder_start_id=9000)
