"""BERT-like encoders against transformers, through files: ERNIE (task-type embeddings), RemBERT (decoupled input
and output embeddings), ESM (protein LM: rotary or absolute positions, token-dropout scaling, embedding norm before
or not), BertGeneration, I-BERT (non-quantized: RoBERTa) and X-MOD (language adapters chosen per input).
Masked-LM logits on a right-padded batch (fp32, <= 1e-4 on real tokens) and a to_hf round trip that transformers
loads to the same logits; for the families with a causal LM, the decoder checks too (left-padded logits, greedy
tokens equal to transformers' generate, cached decoding equal to the whole forward, the config read back)."""
import pytest
import torch

import llmarch
from llmarch.interop import from_hf, to_hf

from conftest import assert_cached_decoding_and_config_round_trip, perturbed
from test_hf_families import padded_batch

transformers = pytest.importorskip("transformers")

LANGS = ["en_XX", "de_DE", "fr_XX"]
TINY = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96)
# case -> (config class, masked-LM class, config fields, extra inputs by name: "types", "tasks")
ENCODERS = {
    "ernie": ("ErnieConfig", "ErnieForMaskedLM", dict(TINY, max_position_embeddings=64, use_task_id=True,
                                                      task_type_vocab_size=3), ("types", "tasks")),
    "rembert": ("RemBertConfig", "RemBertForMaskedLM", dict(TINY, max_position_embeddings=64, input_embedding_size=24,
                                                            output_embedding_size=80), ("types",)),
    # ESM-2: rotary, token dropout (mask id 3, some in the batch); ESM-1b: positions from pad + 1, embedding norm
    "esm2": ("EsmConfig", "EsmForMaskedLM", dict(TINY, max_position_embeddings=64, pad_token_id=1, mask_token_id=3,
                                                 position_embedding_type="rotary", token_dropout=True), ("masked",)),
    "esm1b": ("EsmConfig", "EsmForMaskedLM", dict(TINY, max_position_embeddings=66, pad_token_id=1, mask_token_id=3,
                                                  emb_layer_norm_before=True), ("masked",)),
    # is_decoder False: the decoder class's LM head over bidirectional attention
    "bert-generation": ("BertGenerationConfig", "BertGenerationDecoder", dict(TINY, max_position_embeddings=64), ()),
    "ibert": ("IBertConfig", "IBertForMaskedLM", dict(TINY, max_position_embeddings=66), ("types",)),
    # three languages, the rows in the third and the first; post-norm (as released) and pre-norm with a final norm
    "xmod": ("XmodConfig", "XmodForMaskedLM", dict(TINY, max_position_embeddings=66, languages=LANGS), ("langs",)),
    "xmod-prenorm": ("XmodConfig", "XmodForMaskedLM", dict(TINY, max_position_embeddings=66, languages=LANGS,
                                                           pre_norm=True, adapter_reduction_factor=4),
                     ("token_langs",)),
    # 4 heads / head_ratio 2: 2 attention and 2 convolution heads of 16; 5 taps; embeddings of 32 projected to 64
    "convbert": ("ConvBertConfig", "ConvBertForMaskedLM", dict(TINY, max_position_embeddings=64, embedding_size=32,
                                                               conv_kernel_size=5, initializer_range=0.1), ("types",)),
    # q, k, v in 4 groups, the FFN in 2; post_attention dense
    "squeezebert": ("SqueezeBertConfig", "SqueezeBertForMaskedLM", dict(TINY, max_position_embeddings=64,
                                                                        embedding_size=64, intermediate_groups=2,
                                                                        output_groups=2), ("types",)),
}
# case -> (config class, causal-LM class, config fields)
DECODERS = {
    "bert": ("BertConfig", "BertLMHeadModel", dict(TINY, max_position_embeddings=64, is_decoder=True)),
    "roberta": ("RobertaConfig", "RobertaForCausalLM", dict(TINY, max_position_embeddings=66, is_decoder=True)),
    "electra": ("ElectraConfig", "ElectraForCausalLM", dict(TINY, max_position_embeddings=64, embedding_size=32,
                                                            is_decoder=True)),
    "megatron-bert": ("MegatronBertConfig", "MegatronBertForCausalLM", dict(TINY, max_position_embeddings=64,
                                                                            is_decoder=True)),
    "ernie": ("ErnieConfig", "ErnieForCausalLM", dict(TINY, max_position_embeddings=64, is_decoder=True,
                                                      use_task_id=True)),
    "rembert": ("RemBertConfig", "RemBertForCausalLM", dict(TINY, max_position_embeddings=64, input_embedding_size=24,
                                                            output_embedding_size=80, is_decoder=True)),
    "bert-generation": ("BertGenerationConfig", "BertGenerationDecoder", dict(TINY, max_position_embeddings=64,
                                                                              is_decoder=True)),
    "xmod": ("XmodConfig", "XmodForCausalLM", dict(TINY, max_position_embeddings=66, languages=LANGS,
                                                   default_language="de_DE", is_decoder=True)),
}


def right_padded(pad_id: int, extra: tuple):
    """Two rows of 16 ids in 4..119, the second right-padded after 11, and what the case takes of: token type 1 and
    task type 2 on the second half, languages 2 and 0 (lang_ids; token_langs: one per token), mask tokens (id 3) at
    2 of the first row's positions and 1 of the second's ("masked")."""
    torch.manual_seed(1)
    ids = torch.randint(4, 120, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    ids[1, 11:] = pad_id
    if "masked" in extra:
        ids[0, [2, 9]] = ids[1, 4] = 3
    half = torch.zeros_like(ids)
    half[:, 8:] = 1
    kw = {"types": {"token_type_ids": half}, "tasks": {"task_type_ids": 2 * half},
          "langs": {"lang_ids": torch.tensor([2, 0])},
          "token_langs": {"lang_ids": torch.randint(0, 3, (2, 16))}}
    return ids, mask, {k: v for name in extra for k, v in kw.get(name, {}).items()}


@pytest.mark.parametrize("case", sorted(ENCODERS))
def test_masked_lm_matches_transformers_and_round_trips(tmp_path, case):
    conf_cls, model_cls, fields, extra = ENCODERS[case]
    torch.manual_seed(0)
    hf = perturbed(getattr(transformers, model_cls)(getattr(transformers, conf_cls)(**fields)))
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert not ours.config.causal and ours.config.head == "lm" and ours.config.hf_model_type == hf.config.model_type
    ids, mask, kw = right_padded(hf.config.pad_token_id or 0, extra)
    real = mask.bool()
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, **kw).logits
        mine = ours(ids, attention_mask=mask, **kw).logits
    assert (mine - theirs)[real].abs().max().item() <= 1e-4
    to_hf(ours, tmp_path / "out")
    again = getattr(transformers, model_cls).from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        back = again(ids, attention_mask=mask, **kw).logits
    assert (back - mine)[real].abs().max().item() <= 1e-4
    cfg = ours.config  # and the written config reads back to ours
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}


@pytest.mark.parametrize("case, prefix", [("ernie", "Ernie"), ("rembert", "RemBert"), ("esm2", "Esm"),
                                          ("ibert", "IBert"), ("squeezebert", "SqueezeBert")])
def test_classification_heads_match_transformers(tmp_path, case, prefix):
    """Each family's sequence and token classifiers (pooler or classification head + classifier; a classifier on
    every token) on the right-padded batch, and their to_hf round trips with the labels' names."""
    conf_cls, _, fields, extra = ENCODERS[case]
    ids, mask, kw = right_padded(1 if case in ("esm2", "ibert") else 0, extra)
    for suffix, head in (("ForSequenceClassification", "classify"), ("ForTokenClassification", "tokens")):
        torch.manual_seed(0)
        hf = perturbed(getattr(transformers, prefix + suffix)(getattr(transformers, conf_cls)(**fields, num_labels=3)))
        hf.save_pretrained(tmp_path / suffix)
        ours = from_hf(tmp_path / suffix)
        assert ours.config.head == head
        real = slice(None) if head == "classify" else mask.bool()
        with torch.no_grad():
            mine = ours(ids, attention_mask=mask, **kw).logits
            assert (mine - hf(ids, attention_mask=mask, **kw).logits)[real].abs().max().item() <= 1e-4
        to_hf(ours, tmp_path / f"{suffix}-out", labels=["a", "b", "c"])
        again = getattr(transformers, prefix + suffix).from_pretrained(tmp_path / f"{suffix}-out").eval()
        with torch.no_grad():
            assert (again(ids, attention_mask=mask, **kw).logits - mine)[real].abs().max().item() <= 1e-4
        assert again.config.id2label == {0: "a", 1: "b", 2: "c"}


def test_ibert_quant_mode_is_refused(tmp_path):
    from llmarch.interop.hf import hf_model_config
    from llmarch.errors import LlmarchError

    with pytest.raises(LlmarchError, match="quant_mode"):
        hf_model_config({**transformers.IBertConfig(**TINY, quant_mode=True).to_dict(), "model_type": "ibert"})


def assert_decoder_matches(hf, ours, model_cls: str, tmp_path):
    """test_hf_families.assert_matches_transformers (left-padded logits, 8 greedy tokens, the to_hf round trip), with
    transformers given each row's positions plus the config's position offset (X-MOD's, from padding_idx + 1: what
    its forward derives from the ids, where generate would count from 0). Returns the batch, mask and tokens."""
    ids, mask = padded_batch(ours.config.vocab_size, lengths=(10, 6))
    pos = ((mask.cumsum(-1) - 1).clamp(min=0) + ours.config.position_offset) * mask
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
        theirs = hf(ids, attention_mask=mask, position_ids=pos).logits
    real = mask.bool()
    assert (mine - theirs)[real].abs().max().item() <= 1e-4
    generated = hf.generate(ids, attention_mask=mask, position_ids=pos, max_new_tokens=8, do_sample=False,
                            pad_token_id=0)
    assert torch.equal(llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=8), generated)
    to_hf(ours, tmp_path / "out")
    again = getattr(transformers, model_cls).from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        back = again(ids, attention_mask=mask, position_ids=pos).logits
    assert (back - mine)[real].abs().max().item() <= 1e-4
    return ids, mask, generated


@pytest.mark.parametrize("case", sorted(DECODERS))
def test_causal_lm_matches_transformers(tmp_path, case):
    conf_cls, model_cls, fields = DECODERS[case]
    torch.manual_seed(0)
    hf = perturbed(getattr(transformers, model_cls)(getattr(transformers, conf_cls)(**fields)))
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert ours.config.causal
    ids, mask, generated = assert_decoder_matches(hf, ours, model_cls, tmp_path)
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, tmp_path / "out")


@pytest.mark.parametrize("case, base", [("esm2", "EsmModel"), ("bert-generation", "BertGenerationEncoder"),
                                        ("ernie", "ErnieModel"), ("rembert", "RemBertModel"), ("ibert", "IBertModel")])
def test_base_model_reads_as_an_embedding_model(tmp_path, case, base):
    """The body alone, saved without its prefix (EsmModel saved by transformers 5, its LayerNorms as `.gamma` and
    `.beta`; BertGenerationEncoder, BERT2BERT's encoder half) reads as head embed: the final hidden states equal
    transformers' last_hidden_state on real tokens."""
    conf_cls, _, fields, extra = ENCODERS[case]
    torch.manual_seed(0)
    hf = perturbed(getattr(transformers, base)(getattr(transformers, conf_cls)(**fields)))
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert ours.config.head == "embed"
    ids, mask, kw = right_padded(hf.config.pad_token_id, extra)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, **kw).last_hidden_state
        mine = ours(ids, attention_mask=mask, **kw).hidden_states
    assert (mine - theirs)[mask.bool()].abs().max().item() <= 1e-4


def test_mixed_attention_refuses_a_causal_stack():
    from llmarch.errors import LlmarchError

    with pytest.raises(LlmarchError, match="bidirectional"):
        llmarch.build("llama-tiny", n_layers=1, mixer="mixed_attention", device="meta")
