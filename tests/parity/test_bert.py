"""llmarch's bidirectional encoder against transformers' BertForMaskedLM and RobertaForMaskedLM, through
files (fp32, <= 1e-4), on a right-padded batch with token types, and a to_hf round trip."""
import pytest
import torch

from llmarch.interop import from_hf, to_hf

transformers = pytest.importorskip("transformers")


CASES = {"bert": ("BertConfig", "BertForMaskedLM", dict(max_position_embeddings=64)),
         "roberta": ("RobertaConfig", "RobertaForMaskedLM", dict(max_position_embeddings=66, type_vocab_size=2))}


@pytest.mark.parametrize("case", sorted(CASES))
def test_masked_lm_matches_transformers(tmp_path, case):
    conf_cls, model_cls, extra = CASES[case]
    torch.manual_seed(0)
    conf = getattr(transformers, conf_cls)(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                           intermediate_size=96, **extra)
    hf = getattr(transformers, model_cls)(conf).eval()
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert not ours.config.causal
    ids = torch.randint(2, 120, (2, 16))  # RoBERTa derives positions from ids != pad (1): keep 0, 1 out
    types = torch.zeros_like(ids)
    types[:, 8:] = 1
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0  # right padding, as encoders are fed
    ids[1, 11:] = conf.pad_token_id
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, token_type_ids=types).logits
        mine = ours(ids, attention_mask=mask, token_type_ids=types).logits
    real = mask.bool()
    assert (mine[real] - theirs[real]).abs().max().item() <= 1e-4
    # bidirectional: a later token changes an earlier position's logits
    changed = ids.clone()
    changed[0, 12] = (changed[0, 12] + 1) % 120
    with torch.no_grad():
        assert not torch.allclose(ours(changed).logits[0, 3], ours(ids).logits[0, 3])
    to_hf(ours, tmp_path / "out")
    again = getattr(transformers, model_cls).from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        back = again(ids, attention_mask=mask, token_type_ids=types).logits
    assert (back[real] - mine[real]).abs().max().item() <= 1e-4
