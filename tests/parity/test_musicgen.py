"""MusicGen's decoder (`model_type: musicgen_decoder`, MusicgenForCausalLM) against transformers, through files:
tiny seeded models of 3 codebooks (1-D parameters perturbed: the LayerNorms' gains and biases), GELU and ReLU, with
a held cross-attention (built by every MusicgenDecoderLayer, run by none without a text encoder); input ids
(B * K, T). transformers takes no position ids (a left-padded row's positions count its padding), so our left-padded
batch is compared with each sequence's K rows run alone, unpadded: logits of every codebook within 1e-4 (fp32),
greedy decoding per codebook (greedy_streams) equal to transformers' forward-argmax loop, cached decoding equal to the
whole forward, and a to_hf round trip that transformers loads to the same logits and llmarch to the same config, the
held cross-attention written back as read. The delay pattern of MusicGen's generation is not applied (the caller's)."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.generate import greedy_streams
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

from conftest import perturbed_from_hf, stepwise_logits

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

K, V, NEW = 3, 64, 12
BASE = dict(vocab_size=V, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=96, num_codebooks=K,
            max_position_embeddings=64, pad_token_id=V, bos_token_id=V)
CASES = {"gelu": BASE, "relu": dict(BASE, activation_function="relu", dropout=0.0)}


def batch():
    """Two sequences of K codebook rows each, (2 * K, 7); the first left-padded by 3 (mask (2, 7))."""
    torch.manual_seed(1)
    ids, mask = torch.randint(0, V, (2 * K, 7)), torch.ones(2, 7, dtype=torch.long)
    mask[0, :3] = 0
    return ids, mask


def alone(hf, ids, mask, b):
    """Sequence b's K rows, unpadded, and transformers' logits of them run alone."""
    rows = ids[b * K:(b + 1) * K][:, mask[b].bool()]
    with torch.no_grad():
        return rows, hf(rows).logits


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_greedy_cached_decoding_and_round_trip(case, tmp_path):
    torch.manual_seed(0)
    hf = transformers.MusicgenForCausalLM(transformers.MusicgenDecoderConfig(**CASES[case])).eval()
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    cfg = ours.config
    assert (cfg.codebooks, cfg.vocab_size, cfg.head_vocab, cfg.positions, cfg.held_cross_width) == \
        (K, V + 1, V, "sinusoidal_cos_sin", 64)
    ids, mask = batch()
    T = ids.shape[1]
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits  # (2 * K, T, V)
    for b in range(2):
        rows, theirs = alone(hf, ids, mask, b)
        assert (mine[b * K:(b + 1) * K, T - rows.shape[1]:] - theirs).abs().max() <= 1e-4

    generated = greedy_streams(ours, ids, NEW, attention_mask=mask)
    for b in range(2):
        seq = ids[b * K:(b + 1) * K][:, mask[b].bool()]
        prompt = seq.shape[1]
        with torch.no_grad():  # transformers' forward-argmax loop, every codebook at once
            for _ in range(NEW):
                seq = torch.cat([seq, hf(seq).logits[:, -1:].argmax(-1)], dim=1)
        assert torch.equal(generated[b * K:(b + 1) * K, T:], seq[:, prompt:])

    full = torch.cat([mask, torch.ones(2, NEW, dtype=mask.dtype)], dim=1)
    with torch.no_grad():
        whole = ours(generated, attention_mask=full).logits
    real = full.bool().repeat_interleave(K, dim=0)  # (2 * K, T + NEW): each sequence's mask for its K rows
    assert (stepwise_logits(ours, generated, T, full) - whole)[real].abs().max() <= 1e-4

    to_hf(ours, tmp_path / "out")
    again = transformers.MusicgenForCausalLM.from_pretrained(tmp_path / "out").eval()
    for b in range(2):
        rows, theirs = alone(hf, ids, mask, b)
        with torch.no_grad():
            assert (again(rows).logits - theirs).abs().max() <= 1e-4
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}
    before, back = hf.state_dict(), again.state_dict()  # the cross-attention, never run, written back as read
    cross = [k for k in before if ".encoder_attn" in k]
    assert len(cross) == 2 * 6 and all(torch.equal(before[k], back[k]) for k in cross)


@pytest.mark.parametrize("hf, match", [
    (dict(BASE, model_type="musicgen_decoder", activation_function="tanh"), "activation_function"),
    (dict(BASE, model_type="musicgen_decoder", audio_channels=2), "stereo"),
    (dict(model_type="musicgen", text_encoder={}, audio_encoder={}, decoder=BASE), "MusicgenForConditionalGeneration"),
])
def test_unsupported_configs_are_refused(hf, match):
    with pytest.raises(LlmarchError, match=match):
        hf_model_config(hf)


def test_streams_decode_only_with_greedy_streams():
    cfg = hf_model_config(dict(BASE, model_type="musicgen_decoder"))
    model = llmarch.build(cfg).eval()
    ids = torch.randint(0, V, (K, 4))
    with pytest.raises(LlmarchError, match="greedy_streams"):
        llmarch.generate(model, ids, max_new_tokens=2)
    assert greedy_streams(model, ids, 2).shape == (K, 6)


def test_released_shape_counts_as_transformers():
    from llmarch.analysis.accounting import model_facts

    with torch.device("meta"):  # MusicgenDecoderConfig's defaults: musicgen-small's decoder shape
        hf = transformers.MusicgenForCausalLM(transformers.MusicgenDecoderConfig())
    assert model_facts(hf_model_config({"model_type": "musicgen_decoder"}))["parameters"] == \
        sum(p.numel() for p in hf.parameters())
