"""More of BART's relatives read from transformers' checkpoints: Blenderbot (pre-norm, positions from 0, no
embedding norm), BlenderbotSmall (post-norm, its decoder's embedding norm before the positions), PLBART and MVP
(BART's layout under their own names). fp32 logits on padded batches within 1e-4, to_hf round trips, greedy
decoding equal to transformers' generate and cached decoding equal to the whole forward (test_seq2seq.py's checks
over this module's `pair`)."""
from __future__ import annotations

import pytest
import torch

import llmarch
from llmarch.interop import FAMILIES, to_hf
import test_seq2seq
from conftest import seq2seq_pair
from test_seq2seq import _BARTLIKE, V

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

_FSMT = {k: v for k, v in _BARTLIKE.items() if k != "vocab_size"}
_LED = {k: v for k, v in _BARTLIKE.items() if k != "max_position_embeddings"}
SEQ2SEQ = {
    # Blenderbot: pre-norm with final norms, learned positions from 0, scaled embeddings, pad 0 / start 1
    "blenderbot": lambda: transformers.BlenderbotForConditionalGeneration(transformers.BlenderbotConfig(
        **_BARTLIKE, scale_embedding=True)),
    # BlenderbotSmall: post-norm, positions from 0, LN(e + p) in the encoder and LN(e) + p in the decoder
    "blenderbot-small": lambda: transformers.BlenderbotSmallForConditionalGeneration(
        transformers.BlenderbotSmallConfig(**_BARTLIKE, activation_function="relu")),
    # PLBART: BART with scaled embeddings; no decoder_start_token_id, so generation starts from bos
    "plbart": lambda: transformers.PLBartForConditionalGeneration(transformers.PLBartConfig(**_BARTLIKE)),
    # MVP without prompts: BART-large's layout
    "mvp": lambda: transformers.MvpForConditionalGeneration(transformers.MvpConfig(**_BARTLIKE)),
    # FSMT: a source vocabulary (V + 13 ids) apart from the target's, an untied output projection, fairseq's
    # sinusoids from pad + 1, post-norm, ReLU
    "fsmt": lambda: transformers.FSMTForConditionalGeneration(transformers.FSMTConfig(
        **_FSMT, src_vocab_size=V + 13, tgt_vocab_size=V, langs=["en", "de"])),
    # one vocabulary, every table tied to the decoder's
    "fsmt-tied": lambda: transformers.FSMTForConditionalGeneration(transformers.FSMTConfig(
        **_FSMT, src_vocab_size=V, tgt_vocab_size=V, langs=["en", "de"], tie_word_embeddings=True)),
    # LED: Longformer windows of 4 (2 keys each side) over 11-token sources in the encoder, an encoder table of 64
    # positions beside a decoder's of 32, positions from 0, post-norm, BART's embedding norm and logits bias; weights of
    # std 0.2, so that attention is far from uniform and the global tokens show
    "led": lambda: transformers.LEDForConditionalGeneration(transformers.LEDConfig(
        **_LED, attention_window=4, max_encoder_position_embeddings=64, max_decoder_position_embeddings=32,
        init_std=0.2)),
    # PEGASUS-X: 2 global tokens, blocks of 4 over 11-token sources, the second layer's staggered by 2; pre-norm,
    # no attention biases, fairseq's sinusoids from 0; weights of std 0.2 so that the global tokens show
    "pegasus_x": lambda: transformers.PegasusXForConditionalGeneration(transformers.PegasusXConfig(
        **_BARTLIKE, num_global_tokens=2, block_size=4, init_std=0.2)),
    # NLLB-MoE: M2M-100's layout, every second FFN a mixture of 4 ReLU experts routed top-2 (layer 1 of each stack),
    # the experts' output scaled by 1 - moe_token_dropout; made with its experts equal (the `pair` fixture): see
    # test_nllb_moe_routes_top2
    "nllb-moe": lambda: transformers.NllbMoeForConditionalGeneration(transformers.NllbMoeConfig(
        **_BARTLIKE, num_experts=4, encoder_sparse_step=2, decoder_sparse_step=2)),
}

test_cached_decode_equals_full_recomputation = test_seq2seq.test_cached_decode_equals_full_recomputation


@pytest.fixture(scope="module", params=list(SEQ2SEQ))
def pair(request, tmp_path_factory):
    """(name, transformers model, llmarch model read from its checkpoint directory), every norm gain, bias and the
    logits bias moved off its initial value."""
    torch.manual_seed(0)
    return seq2seq_pair(request.param, SEQ2SEQ[request.param](), tmp_path_factory,
                        _same_experts if request.param == "nllb-moe" else None)


def _experts(ffn) -> list:
    return [ffn.experts[f"expert_{e}"] for e in range(ffn.num_experts)]


def _sparse_layers(ref):
    return [layer.ffn for stack in (ref.model.encoder, ref.model.decoder) for layer in stack.layers
            if layer.is_sparse]


@torch.no_grad()
def _same_experts(ref) -> None:
    """Every expert of each NLLB-MoE mixture a copy of its first: transformers 5.25's NllbMoeExperts reads the
    router's one-hot top-1 mask as expert indices, so it runs experts 0 and 1 whatever the router chose (expert 1
    weighted by the top-1 probability, expert 0 by the second's); with equal experts its output is the top-2 mixture
    the router meant, which llmarch computes (test_nllb_moe_routes_top2 checks the routing itself)."""
    for ffn in _sparse_layers(ref):
        first = ffn.experts["expert_0"].state_dict()
        for expert in _experts(ffn)[1:]:
            expert.load_state_dict(first)


def test_nllb_moe_routes_top2(pair):
    """NLLB-MoE's mixtures as fairseq's Top2Gate means them, from transformers' own router and experts, each
    expert different: softmax over the experts, the top two, their probabilities renormalised, each chosen expert's
    output times its weight, the sum times 1 - moe_token_dropout. transformers' NllbMoeSparseMLP itself computes
    otherwise (experts 0 and 1 only, see _same_experts): asserted, so that a fix there shows here."""
    name, ref, ours = pair
    if name != "nllb-moe":
        pytest.skip("NLLB-MoE only")
    assert [ours.config.stack_config(p).is_moe_layer(i) for p in ("encoder", "decoder") for i in range(2)] == [
        False, True, False, True]
    x = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(3))
    for ffn, block in zip(_sparse_layers(ref), (ours.encoder.blocks[1], ours.decoder.blocks[1])):
        with torch.no_grad():
            for expert in _experts(ffn):  # experts apart, in transformers' model and in ours
                for p in expert.parameters():
                    p.add_(torch.randn_like(p) * 0.2)
            block.mlp.experts.up.copy_(torch.stack([e.fc1.weight for e in _experts(ffn)]))
            block.mlp.experts.in_bias.copy_(torch.stack([e.fc1.bias for e in _experts(ffn)]))
            block.mlp.experts.down.copy_(torch.stack([e.fc2.weight for e in _experts(ffn)]))
            block.mlp.experts.down_bias.copy_(torch.stack([e.fc2.bias for e in _experts(ffn)]))
            h = x.view(-1, 32)
            _, weights, _ = ffn.router(h)  # (N, E): the renormalised top-2 weights, 0 elsewhere
            assert (weights > 0).sum(-1).eq(2).all()
            meant = sum(expert(h) * weights[:, e, None] for e, expert in enumerate(_experts(ffn))) * 0.8
            got = block.mlp(x).view(-1, 32)
            assert (meant - got).abs().max().item() <= 1e-5
            assert (ffn(x).view(-1, 32) - got).abs().max().item() > 1e-3  # transformers 5.25's dispatch
            _same_experts(ref)  # put back as the module's other tests read them
            for t in (block.mlp.experts.up, block.mlp.experts.in_bias, block.mlp.experts.down,
                      block.mlp.experts.down_bias):
                t.copy_(t[:1].clone().expand_as(t))


def test_logits_and_round_trip(pair, tmp_path):
    """test_seq2seq's logits and to_hf checks, transformers' forward called with use_cache=False: FSMT's forward
    with a cache (its default) builds no causal mask, so a whole target would see its future tokens there (its
    generation feeds one token at a time and is causal)."""
    name, ref, ours = pair
    assert type(ours).__name__ == "EncoderDecoderLM"
    src, mask, tgt = test_seq2seq.padded_batch()
    got = ours(src, tgt, attention_mask=mask).logits
    assert not mask.all()  # the batch is really padded
    to_hf(ours, tmp_path)
    back = type(ref).from_pretrained(tmp_path).eval()
    for model in (ref, back):
        with torch.no_grad():
            expected = model(input_ids=src, attention_mask=mask, decoder_input_ids=tgt, use_cache=False).logits
        assert (expected - got).abs().max().item() <= 1e-4, name


def test_greedy_matches(pair):
    """Greedy decoding returns transformers' sequences, eos reached early in row 0 (test_seq2seq's check)."""
    test_seq2seq.test_generation_matches(pair, dict(num_beams=1))


# model_type -> (norm_placement, embed_norm, decoder_embed_norm_first, position_offset) as from_hf reads it
LAYOUTS = {"blenderbot": ("pre", False, False, 0), "blenderbot-small": ("post", True, True, 0),
           "plbart": ("post", True, False, 2), "mvp": ("post", True, False, 2), "fsmt": ("post", False, False, 2),
           "led": ("post", True, False, 0), "pegasus_x": ("pre", False, False, 0),
           "nllb-moe": ("pre", False, False, 2)}


def test_layouts_read_as_written(pair):
    """The per-family switches from_hf sets (Blenderbot pre-norm without an embedding norm, BlenderbotSmall's decoder
    alone normalising before its positions, FSMT's positions from pad + 1), each start token as transformers'
    generate picks it, and FSMT's tables: the source's own where untied, one where tied."""
    name, ref, ours = pair
    cfg = ours.config
    family = name.removesuffix("-tied")
    assert cfg.hf_model_type == family
    assert (cfg.norm_placement, cfg.embed_norm, cfg.decoder_embed_norm_first, cfg.position_offset) == LAYOUTS[family]
    start = getattr(ref.config, "decoder_start_token_id", None)
    assert cfg.decoder_start_id == (ref.config.bos_token_id if start is None else start)
    if family == "fsmt":
        assert (ours.encoder_embed is None) == (name == "fsmt-tied") == cfg.tie_embeddings
        table = ours.embed if ours.encoder_embed is None else ours.encoder_embed
        assert torch.equal(table.weight, ref.model.encoder.embed_tokens.weight)
        assert cfg.encoder_vocab_size == (None if cfg.tie_embeddings else V + 13)


def test_led_global_tokens(pair):
    """LED's encoder with global tokens (the first of each source, and one more in row 0): logits as transformers',
    and the encoder's Longformer windows and the decoder's full attention and shorter position table as read."""
    name, ref, ours = pair
    if name != "led":
        pytest.skip("LED only")
    enc, dec = ours.config.stack_config("encoder"), ours.config.stack_config("decoder")
    assert {(enc.for_layer(i).attention, enc.for_layer(i).sliding_window) for i in range(2)} == {("longformer", 3)}
    assert {dec.for_layer(i).attention for i in range(2)} == {"full"}
    assert ours.decoder.positions.weight.shape[0] == dec.context_length == 32 < enc.context_length
    src, mask, tgt = test_seq2seq.padded_batch()
    glob = torch.zeros_like(src)
    glob[:, 0], glob[0, 6] = 1, 1
    with torch.no_grad():
        expected = ref(input_ids=src, attention_mask=mask, decoder_input_ids=tgt, global_attention_mask=glob).logits
        local = ours(src, tgt, attention_mask=mask).logits
    got = ours(src, tgt, attention_mask=mask, global_attention_mask=glob).logits
    assert (expected - got).abs().max().item() <= 1e-4
    assert (local - got).abs().max().item() > 1e-3  # the global tokens changed something


def test_pegasus_x_global_tokens_and_staggered_blocks(pair):
    """PEGASUS-X's encoder as read: its global tokens (their table and own norms) and blocks, the odd layer's
    staggered; without the global tokens' attention or the staggering the encoder output moves."""
    name, ref, ours = pair
    if name != "pegasus_x":
        pytest.skip("PEGASUS-X only")
    enc = ours.config.stack_config("encoder")
    assert [(enc.for_layer(i).attention, enc.for_layer(i).local_block_offset) for i in range(2)] == [
        ("global_local", 0), ("global_local", 2)]
    assert torch.equal(ours.encoder.global_embed, ref.model.encoder.embed_global.weight)
    theirs = ref.model.encoder.layers[1].global_self_attn_layer_norm
    assert torch.equal(ours.encoder.blocks[1].ln1_global.bias, theirs.bias)
    src, mask, _ = test_seq2seq.padded_batch()
    with torch.no_grad():
        expected = ref.model.encoder(src, attention_mask=mask).last_hidden_state
        got = ours.encode(src, mask)
        kind = ours.encoder.blocks[1].attn.kind
        kind.offset = 0  # the staggered layer's blocks put back in line
        unstaggered = ours.encode(src, mask)
        kind.offset = 2
    real = mask.bool()
    assert (expected - got)[real].abs().max().item() <= 1e-4
    assert (unstaggered - got)[real].abs().max().item() > 1e-3


def test_refusals(tmp_path):
    with pytest.raises(llmarch.LlmarchError, match="decoder_embed_norm_first .* needs embed_norm"):
        llmarch.build("bart-tiny", embed_norm=False, decoder_embed_norm_first=True)
    with pytest.raises(llmarch.LlmarchError, match="encoder_vocab_size=50 .* needs encoder_embed"):
        llmarch.build("bart-tiny", n_layers=1, n_decoder_layers=1, encoder_vocab_size=50)
    two = llmarch.build("bart-tiny", n_layers=1, n_decoder_layers=1, encoder_embed=True, encoder_vocab_size=50)
    with pytest.raises(llmarch.LlmarchError, match="token id 60 out of range for vocab_size 50"):
        two.encode(torch.tensor([[1, 60]]))
    with pytest.raises(llmarch.LlmarchError, match="needs src_vocab_size = tgt_vocab_size, got 50 and 99"):
        FAMILIES["fsmt"].to_config(dict(src_vocab_size=50, tgt_vocab_size=99, tie_word_embeddings=True))
    with pytest.raises(llmarch.LlmarchError, match="decoder_context_length=8 bounds an encoder-decoder's decoder"):
        llmarch.build("gpt-tiny", decoder_context_length=8)
    with pytest.raises(llmarch.LlmarchError, match=r"LED with different windows per layer \(\[4, 8\]\)"):
        FAMILIES["led"].to_config(dict(attention_window=[4, 8]))
    with pytest.raises(llmarch.LlmarchError, match="global_tokens=2: global tokens see every token"):
        llmarch.build("gpt-tiny", global_tokens=2)
    with pytest.raises(llmarch.LlmarchError, match="global_tokens=2 needs global_local attention"):
        llmarch.build("bert-tiny", global_tokens=2)
    with pytest.raises(llmarch.LlmarchError, match="attention='global_local' needs global_tokens > 0"):
        llmarch.build("bert-tiny", attention="global_local", local_block_size=4)
    nllb = FAMILIES["nllb-moe"].to_config
    with pytest.raises(llmarch.LlmarchError, match="encoder_sparse_step=2 and decoder_sparse_step=4"):
        nllb(dict(encoder_sparse_step=2, decoder_sparse_step=4))
    with pytest.raises(llmarch.LlmarchError, match="random or sampled second expert"):
        nllb(dict(second_expert_policy="random"))
    with pytest.raises(llmarch.LlmarchError, match="moe_eval_capacity_token_fraction < 1"):
        nllb(dict(moe_eval_capacity_token_fraction=0.5))
    transformers.MvpForConditionalGeneration(transformers.MvpConfig(
        **_BARTLIKE, use_prompt=True, prompt_length=3, prompt_mid_dim=16)).save_pretrained(tmp_path)
    with pytest.raises(llmarch.LlmarchError, match="MVP checkpoints with use_prompt"):
        llmarch.from_hf(tmp_path)
