"""More encoder-decoders read from transformers' checkpoints: BigBird-Pegasus (PEGASUS's layout, BigBird's
block-sparse encoder) and EncoderDecoderModel (a BERT or RoBERTa encoder beside a BERT, RoBERTa or GPT-2 decoder with
cross-attention). fp32 logits on padded batches within 1e-4, to_hf round trips, greedy decoding equal to
transformers' generate and cached decoding equal to the whole forward (test_bartkin's checks over this module's
`pair`)."""
from __future__ import annotations

import pytest
import torch

import llmarch
from llmarch.interop import FAMILIES
import test_seq2seq
from conftest import seq2seq_pair
from test_bartkin import test_greedy_matches, test_logits_and_round_trip  # noqa: F401
from test_seq2seq import _BARTLIKE, V

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

# weights of std 0.2, so that attention is far from uniform and the logits far apart
_BERT = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             max_position_embeddings=64, initializer_range=0.2)
test_cached_decode_equals_full_recomputation = test_seq2seq.test_cached_decode_equals_full_recomputation
SEQ2SEQ = {
    # BigBird-Pegasus: blocks of 1 key, 1 random block, so test_seq2seq's 11-token sources (past (5 + 2r) b = 7) take
    # the block-sparse pattern; biases on every attention projection; weights of std 0.2, so that attention is far from
    # uniform and a block left out shows
    "bigbird_pegasus": lambda: transformers.BigBirdPegasusForConditionalGeneration(transformers.BigBirdPegasusConfig(
        **_BARTLIKE, block_size=1, num_random_blocks=1, use_bias=True, init_std=0.2)),
    # without attention biases, and original_full attention in the encoder
    "bigbird_pegasus-full": lambda: transformers.BigBirdPegasusForConditionalGeneration(
        transformers.BigBirdPegasusConfig(**_BARTLIKE, attention_type="original_full", init_std=0.2)),
    # EncoderDecoderModel: BERT2BERT, the decoder's vocabulary larger than the encoder's and its activation another
    "bert2bert": lambda: encoder_decoder(transformers.BertConfig(**_BERT), transformers.BertConfig(
        **dict(_BERT, vocab_size=V + 11), hidden_act="gelu_new")),
    # RoBERTa's positions from pad + 1 in both stacks, the decoder's table shorter
    "roberta2roberta": lambda: encoder_decoder(transformers.RobertaConfig(**_BERT), transformers.RobertaConfig(
        **dict(_BERT, max_position_embeddings=40))),
    # BERT2GPT2: a post-norm encoder beside a pre-norm decoder (decoder_overrides), GPT-2's tied head
    "bert2gpt2": lambda: encoder_decoder(transformers.BertConfig(**_BERT), transformers.GPT2Config(
        vocab_size=V + 11, n_embd=32, n_layer=2, n_head=4, n_positions=40, initializer_range=0.2)),
}


def encoder_decoder(encoder, decoder):
    """An EncoderDecoderModel of the two configs, the decoder made causal with cross-attention; generation starts
    from token 2."""
    return transformers.EncoderDecoderModel(transformers.EncoderDecoderConfig.from_encoder_decoder_configs(
        encoder, decoder, decoder_start_token_id=2, pad_token_id=0))


@pytest.fixture(scope="module", params=list(SEQ2SEQ))
def pair(request, tmp_path_factory):
    """(name, transformers model, llmarch model read from its checkpoint directory), every norm gain, bias and the
    logits bias moved off its initial value."""
    torch.manual_seed(0)
    return seq2seq_pair(request.param, SEQ2SEQ[request.param](), tmp_path_factory)


def test_bigbird_pegasus_encoder_is_block_sparse(pair):
    """The encoder's BigBird pattern as read, transformers still on it after every other check (it switches itself
    to full attention for good when it meets a short source), and full attention in its place moves the output."""
    name, ref, ours = pair
    if name != "bigbird_pegasus":
        pytest.skip("block-sparse BigBird-Pegasus only")
    enc, dec = ours.config.stack_config("encoder"), ours.config.stack_config("decoder")
    assert [enc.for_layer(i).attention for i in range(2)] == ["bigbird"] * 2
    assert [dec.for_layer(i).attention for i in range(2)] == ["full"] * 2
    src, mask, _ = test_seq2seq.padded_batch()
    with torch.no_grad():
        expected = ref.model.encoder(src, attention_mask=mask).last_hidden_state
        got = ours.encode(src, mask)
        full = llmarch.build(ours.config.replace(layer_overrides={"block_sparse": {"attention": "full"}}))
        full.load_state_dict(ours.state_dict())
        dense = full.eval().encode(src, mask)
    assert ref.model.encoder.attention_type == "block_sparse"
    real = mask.bool()
    assert (expected - got)[real].abs().max().item() <= 1e-4
    assert (dense - got)[real].abs().max().item() > 1e-3


def test_bigbird_pegasus_refusals():
    with pytest.raises(llmarch.LlmarchError, match="unknown attention_type 'sliding'"):
        FAMILIES["bigbird_pegasus"].to_config(dict(_BARTLIKE, model_type="bigbird_pegasus", attention_type="sliding"))


def test_encoder_decoder_stacks_as_read(pair):
    """Each stack as its own model has it: BERT2GPT2's decoder pre-norm with a final norm and no embedding norm or
    token types (decoder_overrides), the encoder BERT's; two token tables, the head tied to the decoder's."""
    name, ref, ours = pair
    if name != "bert2gpt2":
        pytest.skip("BERT2GPT2 only")
    cfg = ours.config
    assert cfg.hf_stack_types == ["bert", "gpt2"] and cfg.encoder_vocab_size == V
    enc, dec = cfg.stack_config("encoder"), cfg.stack_config("decoder")
    assert (enc.norm_placement, enc.final_norm, enc.embed_norm, enc.type_vocab_size) == ("post", False, True, 2)
    assert (dec.norm_placement, dec.final_norm, dec.embed_norm, dec.type_vocab_size) == ("pre", True, False, 0)
    assert ours.lm_head.weight is ours.embed.weight is not ours.encoder_embed.weight
    assert torch.equal(ours.encoder_embed.weight, ref.encoder.embeddings.word_embeddings.weight)


def test_encoder_decoder_refusals():
    read = FAMILIES["encoder-decoder"].to_config
    bert = transformers.BertConfig(**_BERT).to_dict()
    decoder = dict(bert, is_decoder=True, add_cross_attention=True)
    with pytest.raises(llmarch.LlmarchError, match="with a t5 encoder and a bert decoder is not supported"):
        read(dict(encoder=transformers.T5Config().to_dict(), decoder=decoder))
    with pytest.raises(llmarch.LlmarchError, match="the decoder has no cross-attention"):
        read(dict(encoder=bert, decoder=dict(decoder, add_cross_attention=False)))
    with pytest.raises(llmarch.LlmarchError, match=r"width and heads \(32, 4\) differ from the decoder's \(64, 4\)"):
        read(dict(encoder=bert, decoder=dict(decoder, hidden_size=64)))
    gpt2 = dict(transformers.GPT2Config(n_embd=32, n_head=4).to_dict(), add_cross_attention=True)
    with pytest.raises(llmarch.LlmarchError, match="scale_attn_by_inverse_layer_idx"):
        read(dict(encoder=bert, decoder=dict(gpt2, scale_attn_by_inverse_layer_idx=True)))
    with pytest.raises(llmarch.LlmarchError, match="in the fields .*, not n_heads"):
        llmarch.build("bart-tiny", decoder_overrides={"n_heads": 2})
    with pytest.raises(llmarch.LlmarchError, match="decoder_overrides sets an encoder-decoder's decoder"):
        llmarch.build("bert-tiny", decoder_overrides={"ffn": "relu"})


def test_beam_search_matches(pair):
    """Beam search (4 beams, a length penalty, early stopping) returns transformers' sequences (test_seq2seq's
    check)."""
    test_seq2seq.test_generation_matches(pair, dict(num_beams=4, length_penalty=0.6, early_stopping=True))
