"""The classic decoders against transformers, through files: GPT-1 (openai-gpt: post-norm blocks, learned positions,
no final norm, a tied head), XGLM (fairseq's sinusoidal positions from offset 2, scaled embeddings), BioGPT (learned
positions from offset 2, scaled embeddings, its head `output_projection`), CTRL (sines-then-cosines positions, scaled
embeddings, a head with a bias, tied and untied) and GPT-NeoX-Japanese (q, k, v fused per head, no biases but the
last layer's attention output's). Each: a tiny seeded model (its 1-D parameters perturbed: norm gains, biases,
GPT-NeoX-Japanese's zero-initialised dense_bias), read by from_hf: logits on a left-padded batch within 1e-4 (fp32),
32 greedy tokens equal to transformers', cached decoding equal to the whole forward, and a to_hf round trip that
transformers loads to the same logits and llmarch to the same config."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop.hf import hf_model_config

from conftest import assert_cached_decoding_and_config_round_trip, perturbed_from_hf
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

GPT = dict(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=64)
CASES = {
    "openai-gpt": ("OpenAIGPTConfig", "OpenAIGPTLMHeadModel", GPT),
    "xglm": ("XGLMConfig", "XGLMForCausalLM", dict(vocab_size=128, d_model=64, num_layers=2, attention_heads=4,
                                                   ffn_dim=96, max_position_embeddings=64)),
    "biogpt": ("BioGptConfig", "BioGptForCausalLM", dict(vocab_size=128, hidden_size=64, num_hidden_layers=2,
                                                         num_attention_heads=4, intermediate_size=96,
                                                         max_position_embeddings=64)),
    "ctrl": ("CTRLConfig", "CTRLLMHeadModel", dict(GPT, dff=96)),
    "ctrl-untied": ("CTRLConfig", "CTRLLMHeadModel", dict(GPT, dff=96, layer_norm_epsilon=0.1,
                                                          tie_word_embeddings=False)),
    # half of each head rotated, an MLP of 2 x hidden_size
    "gpt_neox_japanese": ("GPTNeoXJapaneseConfig", "GPTNeoXJapaneseForCausalLM",
                          dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_multiple_size=2, max_position_embeddings=64,
                               rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                "partial_rotary_factor": 0.5})),
}
# weights multiplied by 20 before saving, where a part would otherwise hide below 1e-4: GPT-1's MLP inputs, so that
# its tanh-GELU (gelu_new, afn "gelu") and exact GELU differ (near-linear at 0.02-init inputs), and its tied
# head, whose logits scale with the embeddings
SHARPENED = {"openai-gpt": ("mlp.c_fc.weight", "tokens_embed.weight")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_cached_decoding_and_round_trip(case, tmp_path):
    conf_cls, model_cls, kwargs = CASES[case]
    torch.manual_seed(0)
    hf = getattr(transformers, model_cls)(getattr(transformers, conf_cls)(**kwargs)).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if case in SHARPENED and name.endswith(SHARPENED[case]):
                p.mul_(20.0)
    ours = perturbed_from_hf(hf, tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    ids, mask, generated = assert_matches_transformers(hf, ours, model_cls, tmp_path)
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, tmp_path / "out")


def test_configs_read_as_each_family_computes():
    gpt = hf_model_config(dict(GPT, model_type="openai-gpt"))
    assert (gpt.norm_placement, gpt.final_norm, gpt.ffn, gpt.ffn_hidden, gpt.tied_head) == \
        ("post", False, "gelu_tanh", 256, True)
    bio = hf_model_config(dict(CASES["biogpt"][2], model_type="biogpt", layer_norm_eps=1e-12))
    assert (bio.norm_eps, bio.position_offset, bio.embed_scale) == (1e-5, 2, True)  # its LayerNorms' default eps
    ctrl = hf_model_config(CASES["ctrl-untied"][2] | dict(model_type="ctrl"))
    assert (ctrl.norm_eps, ctrl.final_norm_eps, ctrl.head_bias, ctrl.tie_embeddings) == (1e-6, 0.1, True, False)
    neox = hf_model_config(dict(CASES["gpt_neox_japanese"][2], model_type="gpt_neox_japanese", num_hidden_layers=3))
    assert [neox.for_layer(i).o_bias for i in range(3)] == [False, False, True]
    # the published abeja/gpt-neox-japanese-2.7b config (transformers 4.x keys)
    abeja = hf_model_config(dict(model_type="gpt_neox_japanese", hidden_size=2560, num_hidden_layers=32,
                                 num_attention_heads=32, intermediate_multiple_size=4, rotary_emb_base=10000,
                                 rotary_pct=1.0, vocab_size=32000))
    assert (abeja.rope_theta, abeja.rope_fraction, abeja.ffn_hidden) == (10000.0, 1.0, 10240)


@pytest.mark.parametrize("hf, match", [
    (dict(GPT, model_type="openai-gpt", afn="tanh"), "afn"),
    (dict(CASES["xglm"][2], model_type="xglm", add_cross_attention=True), "add_cross_attention"),
    (dict(CASES["xglm"][2], model_type="xglm", pad_token_id=3), "pad_token_id"),
    (dict(CASES["biogpt"][2], model_type="biogpt", hidden_act="tanh"), "hidden_act"),
])
def test_unsupported_configs_are_refused(hf, match):
    with pytest.raises(LlmarchError, match=match):
        hf_model_config(hf)


def test_export_refuses_what_the_family_cannot_hold(tmp_path):
    import llmarch

    cfg = hf_model_config(dict(GPT, model_type="openai-gpt")).replace(ffn_hidden=96)
    with pytest.raises(LlmarchError, match="cannot express ffn_hidden=96"):
        llmarch.to_hf(llmarch.build(cfg), tmp_path)


@pytest.mark.parametrize("case, shape", [
    ("openai-gpt", dict(n_positions=512)),  # openai-community/openai-gpt
    ("xglm", dict(vocab_size=256008, d_model=1024, num_layers=24, attention_heads=16, ffn_dim=4096)),  # xglm-564M
    ("biogpt", dict(vocab_size=42384, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                    intermediate_size=4096)),  # microsoft/biogpt
    ("ctrl", dict(n_layer=4)),  # Salesforce/ctrl's widths, 4 of its 48 layers
    ("gpt_neox_japanese", dict(num_hidden_layers=4)),  # abeja/gpt-neox-japanese-2.7b's widths, 4 of 32 layers
])
def test_released_shapes_count_as_transformers(case, shape):
    from llmarch.analysis.accounting import model_facts

    conf_cls, model_cls, _ = CASES[case]
    conf = getattr(transformers, conf_cls)(**shape)
    with torch.device("meta"):
        hf = getattr(transformers, model_cls)(conf)
    theirs = sum(p.numel() for p in hf.parameters())  # a tied head counted once
    assert model_facts(hf_model_config(conf.to_dict()))["parameters"] == theirs


def test_openai_gpt_as_published_without_the_transformer_prefix(tmp_path):
    """openai-community/openai-gpt is OpenAIGPTModel's: `h.*`, `tokens_embed`, `positions_embed` without
    `transformer.`, no lm_head (tied), and each layer's causal-mask buffer `attn.bias`, which is not a weight."""
    from safetensors.torch import load_file, save_file

    from llmarch.interop import from_hf

    torch.manual_seed(0)
    hf = transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(**GPT)).eval()
    hf.save_pretrained(tmp_path)
    file = next(tmp_path.glob("*.safetensors"))
    state = {k.removeprefix("transformer."): v for k, v in load_file(file).items() if k != "lm_head.weight"}
    state.update({f"h.{i}.attn.bias": torch.ones(1, 1, 64, 64).tril() for i in range(2)})
    save_file(state, file, metadata={"format": "pt"})
    ids = torch.randint(0, 128, (1, 9))
    with torch.no_grad():
        assert (from_hf(tmp_path)(ids).logits - hf(ids).logits).abs().max() <= 1e-4
