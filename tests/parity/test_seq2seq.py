"""Encoder-decoder parity with transformers (T5 v1.0 and v1.1, mT5, BART, Marian): fp32 logits on padded batches
within 1e-4, export round trips, and generation (greedy and beam search) returning the same sequences."""
from __future__ import annotations

import pytest
import torch

import llmarch
from llmarch.interop import to_hf

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

V = 99
_SMALL = dict(vocab_size=V, d_model=32)
_BARTLIKE = dict(_SMALL, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
                 encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64, dropout=0.0,
                 forced_eos_token_id=None)
CASES = {
    # T5 v1.0: ReLU MLP, tied head with output scaling; more decoder than encoder layers
    "t5-v1.0": lambda: transformers.T5ForConditionalGeneration(transformers.T5Config(
        **_SMALL, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=3, num_heads=4, relative_attention_num_buckets=8,
        relative_attention_max_distance=16, dropout_rate=0.0, decoder_start_token_id=0)),
    # T5 v1.1: gated-GELU FFN, untied head, no scaling
    "t5-v1.1": lambda: transformers.T5ForConditionalGeneration(transformers.T5Config(
        **_SMALL, d_kv=8, d_ff=64, num_layers=2, num_heads=4, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0,
        decoder_start_token_id=0)),
    # mT5: T5 v1.1's model that never rescales, here with a tied head (MT5Config always says tied)
    "mt5": lambda: transformers.MT5ForConditionalGeneration(transformers.MT5Config(
        **_SMALL, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
        relative_attention_max_distance=16, dropout_rate=0.0, decoder_start_token_id=0)),
    "bart": lambda: transformers.BartForConditionalGeneration(transformers.BartConfig(**_BARTLIKE)),
    "marian": lambda: transformers.MarianMTModel(transformers.MarianConfig(
        **_BARTLIKE, pad_token_id=V - 1, decoder_start_token_id=V - 1, scale_embedding=True,
        activation_function="swish")),
}


@pytest.fixture(scope="module", params=list(CASES))
def pair(request, tmp_path_factory):
    """(name, transformers model, llmarch model read from its checkpoint directory)."""
    torch.manual_seed(0)
    ref = CASES[request.param]().eval()
    with torch.no_grad():  # non-trivial norm gains and logits bias, so a swapped weight shows
        for name, p in ref.named_parameters():
            if "norm" in name.lower() and p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
        if hasattr(ref, "final_logits_bias"):
            ref.final_logits_bias.normal_()
    path = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(path)
    return request.param, ref, llmarch.from_hf(path)


def padded_batch():
    g = torch.Generator().manual_seed(1)
    src = torch.randint(3, V - 2, (3, 11), generator=g)
    mask = torch.ones_like(src)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    return src, mask, torch.randint(3, V - 2, (3, 6), generator=g)


def test_logits_match(pair):
    name, ref, ours = pair
    assert type(ours).__name__ == "EncoderDecoderLM"
    src, mask, tgt = padded_batch()
    with torch.no_grad():
        expected = ref(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits
    got = ours(src, tgt, attention_mask=mask).logits
    real = mask.bool()
    assert (expected - got).abs().max().item() <= 1e-4, name
    assert real.sum() < real.numel()  # the batch is really padded


def test_export_round_trip(pair, tmp_path):
    name, ref, ours = pair
    to_hf(ours, tmp_path)
    back = type(ref).from_pretrained(tmp_path).eval()
    src, mask, tgt = padded_batch()
    with torch.no_grad():
        assert (back(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits
                - ours(src, tgt, attention_mask=mask).logits).abs().max().item() <= 1e-4, name


def _until_eos(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos, 1) + 1] if eos in row[1:] else row


@pytest.mark.parametrize("options", [dict(num_beams=1), dict(num_beams=4),
                                     dict(num_beams=4, length_penalty=0.6, early_stopping=True),
                                     dict(num_beams=3, length_penalty=2.0, early_stopping="never")])
def test_generation_matches(pair, options):
    """Greedy and beam search return transformers' sequences. eos is a token the model emits early (greedy
    row 0's second token), so hypotheses end at different steps and the eos bookkeeping is exercised."""
    name, ref, ours = pair
    src, mask, _ = padded_batch()
    cfg = ours.config
    kw = dict(do_sample=False, decoder_start_token_id=cfg.decoder_start_id, pad_token_id=cfg.pad_id,
              forced_bos_token_id=None, forced_eos_token_id=None, no_repeat_ngram_size=0, min_length=0,
              use_cache=cfg.n_layers == cfg.n_decoder_layers)  # transformers' T5 cache needs equal stacks
    with torch.no_grad():
        probe = ref.generate(input_ids=src, attention_mask=mask, max_new_tokens=6, eos_token_id=None, **kw)
    eos = int(probe[0, 2])
    with torch.no_grad():
        expected = ref.generate(input_ids=src, attention_mask=mask, max_new_tokens=12, eos_token_id=eos, **kw, **options)
    got = llmarch.generate(ours, src, attention_mask=mask, max_new_tokens=12, eos_id=eos, **options)
    assert [_until_eos(r, eos) for r in got.tolist()] == [_until_eos(r, eos) for r in expected.tolist()], name
    if options["num_beams"] == 1:  # greedy: row 0 emits eos at step 2 (beams may rank longer hypotheses higher)
        assert eos in got[0, 1:].tolist()


def test_cached_decode_equals_full_recomputation(pair):
    """Step-by-step decoding (self-attention KV cache, cross-attention keys/values projected once) gives the
    logits a full forward over the whole target gives."""
    _, _, ours = pair
    src, mask, tgt = padded_batch()
    full = ours(src, tgt, attention_mask=mask).logits
    memory = ours.encode(src, mask)
    ours.setup_cache(src.shape[0], tgt.shape[1], memory=memory)
    try:
        steps = [ours.decode(tgt[:, i:i + 1], None, mask, input_pos=torch.tensor([i]), kv_len=i + 1).logits
                 for i in range(tgt.shape[1])]
    finally:
        ours.clear_cache()
    assert (torch.cat(steps, dim=1) - full).abs().max().item() <= 1e-5


def test_preset_parameter_counts():
    """t5-small and t5-base equal transformers' T5ForConditionalGeneration; bart-base equals
    BartForConditionalGeneration plus its final_logits_bias (a buffer there, the head's bias parameter here);
    transformer-base equals MarianMTModel's trainable parameters (Marian also counts its fixed sinusoid table)."""
    def ours(name):
        return sum(p.numel() for p in llmarch.build(name, device="meta").parameters())

    with torch.device("meta"):
        t5 = transformers.T5ForConditionalGeneration
        assert ours("t5-small") == t5(transformers.T5Config()).num_parameters() == 60_506_624
        assert ours("t5-base") == t5(transformers.T5Config(d_model=768, d_ff=3072, num_layers=12,
                                                           num_heads=12)).num_parameters() == 222_903_552
        bart = transformers.BartForConditionalGeneration(transformers.BartConfig(
            d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12, decoder_attention_heads=12,
            encoder_ffn_dim=3072, decoder_ffn_dim=3072))
        assert ours("bart-base") == bart.num_parameters() + 50265 == 139_470_681
        marian = transformers.MarianMTModel(transformers.MarianConfig(
            vocab_size=37000, d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
            decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048, max_position_embeddings=512,
            pad_token_id=0, decoder_start_token_id=0))
        trainable = sum(p.numel() for p in marian.parameters() if p.requires_grad)
        assert ours("transformer-base") == trainable == 63_082_496


def test_mt5_with_a_head_of_its_own(tmp_path):
    """Published mT5 checkpoints store an lm_head.weight of their own though MT5Config says tied: transformers then
    uses the stored head, and so does llmarch (the head is tied exactly where the checkpoint stores none)."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    CASES["mt5"]().save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    save_file({**state, "lm_head.weight": torch.randn(V, 32)}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})
    ref = transformers.MT5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    ours = llmarch.from_hf(tmp_path)
    assert not ours.config.tie_embeddings and not torch.equal(ref.lm_head.weight, ref.shared.weight)
    src, mask, tgt = padded_batch()
    with torch.no_grad():
        expected = ref(input_ids=src, attention_mask=mask, decoder_input_ids=tgt).logits
    assert (expected - ours(src, tgt, attention_mask=mask).logits).abs().max().item() <= 1e-4
