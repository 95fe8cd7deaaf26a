"""Gemma 3n (gemma3n_text, and the text model of gemma3n) against transformers, through files: tiny seeded random
models (hidden 64, six layers: sliding and full, the last three reading layers 2 and 1's keys and values; four AltUp
streams, LAuReL of rank 4, per-layer inputs of 8 dims from a table smaller than the vocabulary, FFN widths per layer,
activation sparsity on the first two) saved with save_pretrained and loaded with `llmarch.from_hf`: fp32 logits on a
left-padded batch within 1e-4, 32 greedy tokens equal to transformers' generate, cached decoding (whole cache and
sliding rings) equal to the full forward, and a `to_hf` round trip transformers loads to the same logits. Every 1-D
parameter (norm gains, AltUp's output scale, zero at init) is moved off its init, and AltUp's coefficients and
LAuReL's projections are scaled up, so a part read wrongly or left out shows (test_each_part_matters)."""
import copy
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf
from llmarch.interop.hf import hf_model_config

from test_hf_families import assert_close_on_real_tokens, assert_matches_transformers, hf_logits, padded_batch
from test_gemma4 import cached_steps

transformers = pytest.importorskip("transformers")

S, F = "sliding_attention", "full_attention"
TEXT = dict(vocab_size=160, vocab_size_per_layer_input=128, hidden_size=64, num_hidden_layers=6,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, intermediate_size=[96, 96, 128, 96, 96, 128],
            sliding_window=8, layer_types=[S, F, S, S, F, F], hidden_size_per_layer_input=8, altup_num_inputs=4,
            laurel_rank=4, num_kv_shared_layers=3, activation_sparsity_pattern=[0.9, 0.6, 0.0, 0.0, 0.0, 0.0])
CASES = {
    # E2B/E4B-like, every mechanism on
    "all": TEXT,
    # no KV sharing, two AltUp streams without the output scale, the second active, an untied head, RoPE bases of our
    # choosing, transformers' default layer pattern (a full layer every fifth) and sparsity (none, for 10 layers or
    # fewer)
    "plain": dict(TEXT, num_kv_shared_layers=0, altup_num_inputs=2, altup_correct_scale=False, altup_active_idx=1,
                  tie_word_embeddings=False, intermediate_size=80, layer_types=None, activation_sparsity_pattern=None,
                  rope_parameters={S: {"rope_type": "default", "rope_theta": 100.0},
                                   F: {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}}),
}


def build_hf(kwargs, path):
    torch.manual_seed(0)
    hf = transformers.Gemma3nForCausalLM(transformers.Gemma3nTextConfig(**kwargs)).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.3)
            elif name.endswith(("embed_tokens.weight", "lm_head.weight")):  # logits well above the tolerance
                p.mul_(20.0)
            elif ".altup." in name or ".laurel." in name:
                p.mul_(10.0)  # AltUp's mixing and LAuReL's low-rank path well away from nothing
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(path)
    return hf


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    return build_hf(CASES[request.param], path / "hf"), from_hf(path / "hf"), path


def test_logits_generation_and_round_trip(case):
    hf, ours, path = case
    assert_matches_transformers(hf, ours, "Gemma3nForCausalLM", path)


def test_cached_decoding_equals_the_full_forward(case):
    """A prompt, then one token at a time, over the whole cache and over sliding rings (the KV-shared layers
    reading their owners' rings) equals the forward over the whole batch."""
    ours = case[1]
    ids, mask = padded_batch(ours.config.vocab_size, lengths=(24, 17))
    with torch.no_grad():
        full = ours(ids, attention_mask=mask).logits
        for bounded in (False, True):
            assert_close_on_real_tokens(cached_steps(ours, ids, mask, bounded), full, mask)


def test_the_config_is_read(case):
    hf, ours, _ = case
    cfg = ours.config
    if hf.config.num_kv_shared_layers:
        assert [cfg.kv_source(i) for i in range(6)] == [0, 1, 2, 2, 1, 1]
        assert [cfg.for_layer(i).ffn_sparsity for i in range(6)] == [0.9, 0.6, 0.0, 0.0, 0.0, 0.0]
        assert [cfg.for_layer(i).ffn_hidden for i in range(6)] == [96, 96, 128, 96, 96, 128]
        assert (cfg.altup_streams, cfg.altup_correct_scale, cfg.laurel_rank, cfg.ple_vocab) == (4, True, 4, 128)
    else:
        assert [cfg.for_layer(i).attention for i in range(6)] == ["sliding_window"] * 4 + ["full", "sliding_window"]
        assert {cfg.for_layer(i).ffn_sparsity for i in range(6)} == {0.0}
        assert (cfg.altup_streams, cfg.altup_active, cfg.altup_correct_scale) == (2, 1, False)


def test_published_config_format(case, tmp_path):
    """The published configs give RoPE as rope_theta, rope_scaling and rope_local_base_freq, not rope_parameters
    keyed by layer type (which transformers 5 writes back); both read the same."""
    hf, _, path = case
    folder = tmp_path / "published"
    shutil.copytree(path / "hf", folder)
    data = json.loads((folder / "config.json").read_text())
    rope = data.pop("rope_parameters")
    full = {k: v for k, v in rope[F].items() if k != "rope_theta"}
    data.update(rope_theta=rope[F]["rope_theta"], rope_local_base_freq=rope[S]["rope_theta"],
                rope_scaling=None if full.get("rope_type") == "default" else full)
    (folder / "config.json").write_text(json.dumps(data))
    ours = from_hf(folder)
    ids, mask = padded_batch(160)
    with torch.no_grad():
        assert_close_on_real_tokens(ours(ids, attention_mask=mask).logits, hf_logits(hf, ids, mask), mask)


def test_each_part_matters(tmp_path):
    """With each Gemma 3n part undone, these weights' logits move past the parity tolerance: a parity test
    that passes would fail without it."""
    build_hf(TEXT, tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    cfg = ours.config
    ids = torch.randint(0, 160, (1, 20))
    plain = {t: {**o, "ffn_sparsity": 0.0} for t, o in cfg.layer_overrides.items()}
    with torch.no_grad():
        before = ours(ids).logits
        for other in (cfg.replace(layer_overrides=plain), cfg.replace(altup_correct_scale=False)):
            model = llmarch.build(other).eval()
            model.load_state_dict(ours.state_dict(), strict=False)
            assert (model(ids).logits - before).abs().max() > 1e-2
        undo = [lambda b: b.laurel.up.weight.zero_(), lambda b: b.altup.predict_coefs.weight.zero_(),
                lambda b: b.altup.correct_coefs.weight.zero_(), lambda b: b.altup.router_norm.weight.fill_(1.0),
                lambda b: b.ple_gate.weight.zero_()]
        for change in undo:
            model = copy.deepcopy(ours)
            for block in model.blocks:
                change(block)
            assert (model(ids).logits - before).abs().max() > 1e-2
        model = copy.deepcopy(ours)
        for p in model.altup.collapse.parameters():
            p.zero_()
        assert (model(ids).logits - before).abs().max() > 1e-2
        # ids past the per-layer table read its row 0: a change to row 0 moves them
        past = torch.tensor([[5, 150, 7]])
        model.load_state_dict(ours.state_dict())
        first = model(past).logits
        model.per_layer.embed.weight[0].add_(1.0)
        assert (model(past).logits - first)[0, 1].abs().max() > 1e-3


def test_multimodal_checkpoint_reads_its_text_model(tmp_path):
    """A gemma3n checkpoint (config text_config, weights under model.language_model., towers beside them):
    written by hand from a text model, since transformers' vision tower needs timm."""
    hf = build_hf(TEXT, tmp_path / "hf")
    (tmp_path / "mm").mkdir()
    text = json.loads((tmp_path / "hf" / "config.json").read_text())
    config = {"model_type": "gemma3n", "architectures": ["Gemma3nForConditionalGeneration"], "text_config": text}
    (tmp_path / "mm" / "config.json").write_text(json.dumps(config))
    weights = {k.replace("model.", "model.language_model.", 1): v
               for k, v in load_file(tmp_path / "hf" / "model.safetensors").items()}
    weights["model.vision_tower.timm_model.conv_stem.conv.weight"] = torch.zeros(2, 3, 3, 3)
    weights["model.embed_audio.embedding.weight"] = torch.zeros(4, 8)
    save_file(weights, tmp_path / "mm" / "model.safetensors", metadata={"format": "pt"})
    ours = from_hf(tmp_path / "mm")
    assert ours.config.hf_model_type == "gemma3n_text" and ours.config.altup_streams == 4
    ids, mask = padded_batch(160)
    with torch.no_grad():
        assert_close_on_real_tokens(ours(ids, attention_mask=mask).logits, hf_logits(hf, ids, mask), mask)


# what llama.cpp's gemma3n fixes (interop/gguf_archs/gemma3n.py): per-layer inputs 256 wide, LAuReL of rank 64,
# four streams, the first 10 layers (here all six) sparse at 0.95, a full layer every fifth, no KV sharing
GGUF = dict(TEXT, vocab_size=272, vocab_size_per_layer_input=272, intermediate_size=96, layer_types=None,
            hidden_size_per_layer_input=256, laurel_rank=64, num_kv_shared_layers=0,
            activation_sparsity_pattern=[0.95] * 6)


def test_gguf_round_trip_and_llama_cpp(tmp_path):
    """An F32 .gguf file of the model: llmarch reads back the same logits, and llama.cpp decodes llmarch's greedy
    tokens. Its logits (up to ~13 here) are 0.065 apart (measured): llama.cpp's Gaussian top-k divides the variance
    by n - 1 where transformers divides by n, a cutoff 0.5% higher over these 96-wide FFNs (0.00009 apart once
    llmarch's std is so too and its GELU reads and rounds to F16 as ggml's table does)."""
    from conftest import gguf_reads_back
    from llmarch.data.tokenizer import ByteTokenizer
    from llmarch.interop.gguf_writer import to_gguf

    build_hf(GGUF, tmp_path / "hf")
    model = from_hf(tmp_path / "hf")
    to_gguf(model, tmp_path / "x.gguf", "f32", ByteTokenizer())
    back = gguf_reads_back(tmp_path / "x.gguf", model, exact=True, apart=0.1)
    assert back.config.hf_model_type == "gemma3n_text" and back.config.laurel_rank == 64


@pytest.mark.parametrize("change, key", [(dict(laurel_rank=4), "laurel_rank"),
                                         (dict(num_kv_shared_layers=1), "num_kv_shared_layers"),
                                         (dict(activation_sparsity_pattern=[0.0] * 6), "activation_sparsity")])
def test_to_gguf_refuses_what_llama_cpp_fixes(change, key, tmp_path):
    from llmarch.data.tokenizer import ByteTokenizer
    from llmarch.interop.gguf_writer import to_gguf

    model = llmarch.build(hf_model_config({**GGUF, **change, "model_type": "gemma3n_text"}))
    with pytest.raises(LlmarchError, match=f"GGUF gemma3n .llama.cpp. fixes {key}"):
        to_gguf(model, tmp_path / "x.gguf", "f32", ByteTokenizer())


@pytest.mark.parametrize("change, field", [
    (dict(attention_bias=True), "attention_bias"),
    (dict(intermediate_size=[96, 96]), "intermediate_size has 2 entries"),
])
def test_unsupported_features_are_refused(change, field, tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text(json.dumps({**TEXT, **change, "model_type": "gemma3n_text"}))
    with pytest.raises(LlmarchError, match=field):
        from_hf(tmp_path / "c")


@pytest.mark.parametrize("fields, message", [
    (dict(altup_streams=0), "altup_streams must be >= 1"),
    (dict(altup_streams=2, altup_active=2), "altup_active in"),
    (dict(altup_correct_scale=True), "needs altup_streams > 1"),
    (dict(laurel_rank=4, block="parallel"), "sequential pre-norm or sandwich"),
    (dict(ffn="gelu", ffn_sparsity=0.5), "on a gated dense FFN"),
    (dict(ffn="swiglu", ffn_sparsity=1.0), "must be in"),
])
def test_the_new_fields_check_themselves(fields, message):
    with pytest.raises(LlmarchError, match=message):
        llmarch.resolve("llama-tiny", n_layers=4, vocab_size=256, **fields)
