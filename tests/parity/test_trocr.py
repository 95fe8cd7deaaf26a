"""TrOCR's text decoder (interop/trocr.py) against transformers' TrOCRForCausalLM, through files: tiny seeded
models (1-D parameters perturbed, the MLP's input and the tied embeddings sharpened so exact and tanh GELU differ and
the head's logits spread) with learned positions and an embedding LayerNorm, and with fairseq sinusoids from
pad_token_id + 1, scaled embeddings, no embedding LayerNorm and an untied head. Logits on a left-padded batch within
1e-4 (fp32), 32 greedy tokens per row, cached decoding equal to the whole forward, a to_hf round trip that
transformers loads to the same logits and the same cross-attention weights (held, never run: held_cross_width), and
llmarch to the same config.

transformers' TrOCR takes no position ids (its left-padded rows' learned positions count the padding), so our
padded batch is compared with its rows one at a time, unpadded (test_llama4.rows_alone). Token ids avoid
pad_token_id, which its sinusoidal positions skip wherever it occurs. transformers 5.25's from_pretrained leaves the
sinusoid table (a plain tensor attribute, not a buffer) on the meta device: the round trip's model rebuilds it."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

from conftest import assert_cached_equals_whole, perturbed_from_hf
from test_hf_families import padded_batch
from test_llama4 import max_diff_on_real, rows_alone

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

BASE = dict(vocab_size=128, d_model=64, decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=96,
            max_position_embeddings=64, cross_attention_hidden_size=48)
CASES = {
    "learned": BASE,
    "sinusoidal": dict(BASE, use_learned_position_embeddings=False, scale_embedding=True, layernorm_embedding=False,
                       tie_word_embeddings=False, activation_function="relu", pad_token_id=3,
                       cross_attention_hidden_size=None),
}


def build(case, folder):
    torch.manual_seed(0)
    hf = transformers.TrOCRForCausalLM(transformers.TrOCRConfig(**CASES[case])).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith(("fc1.weight", "embed_tokens.weight")):
                p.mul_(20.0)
    hf.generation_config.eos_token_id = None
    return hf, perturbed_from_hf(hf, folder)


def batch(pad: int):
    torch.manual_seed(1)
    ids, mask = padded_batch(128)
    return torch.where(ids == pad, pad + 1, ids), mask


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_cached_decoding_and_round_trip(case, tmp_path):
    hf, ours = build(case, tmp_path / "hf")
    ids, mask = batch(hf.config.pad_token_id)
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
    assert max_diff_on_real(mine, rows_alone(hf, ids, mask), mask) <= 1e-4

    generated = llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=32)
    T = ids.shape[1]
    for r in range(ids.shape[0]):
        prompt = ids[r:r + 1, mask[r].bool()]
        theirs = hf.generate(prompt, max_new_tokens=32, do_sample=False, pad_token_id=hf.config.pad_token_id)
        assert torch.equal(generated[r, T:], theirs[0, prompt.shape[1]:])
    full = torch.cat([mask, torch.ones(2, 32, dtype=mask.dtype)], 1)
    assert_cached_equals_whole(ours, generated, T, full)

    to_hf(ours, tmp_path / "out")
    again = transformers.TrOCRForCausalLM.from_pretrained(tmp_path / "out").eval()
    if not again.config.use_learned_position_embeddings:  # its sinusoid table, a plain attribute, built on meta
        again.model.decoder.embed_positions.weights = None  # by from_pretrained: None has forward rebuild it
    assert max_diff_on_real(rows_alone(again, ids, mask), mine, mask) <= 1e-4
    cfg = ours.config
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}
    theirs, back = hf.state_dict(), again.state_dict()  # the cross-attention, never run, written back as read
    cross = [k for k in theirs if ".encoder_attn" in k]
    assert len(cross) == 2 * 10 and all(torch.equal(theirs[k], back[k]) for k in cross)


def test_config_reads_each_variant():
    learned = hf_model_config(dict(CASES["learned"], model_type="trocr"))
    assert (learned.positions, learned.position_offset, learned.embed_norm, learned.embed_scale,
            learned.norm_placement, learned.final_norm, learned.tie_embeddings, learned.held_cross_width) == \
        ("learned", 2, True, False, "post", False, True, 48)
    sin = hf_model_config(dict(CASES["sinusoidal"], model_type="trocr"))
    assert (sin.positions, sin.position_offset, sin.embed_norm, sin.embed_scale, sin.ffn, sin.tie_embeddings,
            sin.held_cross_width) == ("sinusoidal_fairseq", 4, False, True, "relu", False, 64)


@pytest.mark.parametrize("hf, match", [
    (dict(BASE, model_type="trocr", activation_function="tanh"), "activation_function"),
    (dict(BASE, model_type="trocr", use_learned_position_embeddings=False, pad_token_id=None), "pad_token_id"),
    (dict(model_type="vision-encoder-decoder", encoder={}, decoder=dict(BASE, model_type="trocr")),
     "vision-encoder-decoder"),
])
def test_unsupported_configs_are_refused(hf, match):
    with pytest.raises(LlmarchError, match=match):
        hf_model_config(hf)


def test_released_shape_counts_as_transformers():
    """microsoft/trocr-base-handwritten's decoder widths (its cross-attention over a ViT of 768), 2 of its 12 layers:
    llmarch's parameter count, the held cross-attention included, is transformers'."""
    from llmarch.analysis.accounting import model_facts

    conf = transformers.TrOCRConfig(vocab_size=50265, d_model=1024, decoder_layers=2, decoder_attention_heads=16,
                                    decoder_ffn_dim=4096, cross_attention_hidden_size=768)
    with torch.device("meta"):
        hf = transformers.TrOCRForCausalLM(conf)
    assert model_facts(hf_model_config(conf.to_dict()))["parameters"] == sum(p.numel() for p in hf.parameters())


def test_flops_leave_out_the_held_cross_attention(tmp_path):
    """`llmarch info`'s training FLOPs per token are within 3% of a forward's counted FLOPs (conftest's
    measured_flops_per_token; the gap is norms and biases, which the count takes at one multiply-add a parameter):
    the held cross-attention, never run, counts in the parameters and not in the FLOPs. Until 2026-12-07 it counted
    in both, 44% over."""
    from conftest import measured_flops_per_token
    from llmarch.analysis.accounting import model_facts

    _, ours = build("learned", tmp_path)
    T = 16
    measured = measured_flops_per_token(ours, torch.randint(4, 128, (1, T)), tokens=T)
    assert abs(model_facts(ours.config.replace(context_length=T))["flops_per_token"] / measured - 1) < 0.03
