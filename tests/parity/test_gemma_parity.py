"""Gemma 2 and Gemma 3 against transformers, through files: a tiny seeded random model is saved, loaded with
`llmarch.from_hf`, compared on a left-padded batch (fp32, max |dlogit| <= 1e-4) whose prompts (13 and 20
tokens, then 32 generated) run past the sliding window of 6; greedy generation equals transformers'; cached
decoding equals the full forward; `to_hf` output loads back into transformers with the same logits. The
soft-caps are set low (2 and 3) so that they bite on random weights."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import llmarch
from llmarch.analysis import model_facts
from llmarch.interop import FAMILIES, from_hf

from test_hf_families import assert_close_on_real_tokens, assert_matches_transformers, hf_logits, padded_batch

transformers = pytest.importorskip("transformers")

TEXT = dict(vocab_size=128, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, intermediate_size=96, sliding_window=6, query_pre_attn_scalar=24)
GEMMA3_ROPE = {"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
               "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}
GEMMA3_TEXT = dict(TEXT, layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
                   rope_parameters=GEMMA3_ROPE)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
              patch_size=14)
CASES = {
    # Gemma 2: sliding layers 0 and 2, full 1 and 3; both caps
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               dict(TEXT, attn_logit_softcapping=2.0, final_logit_softcapping=3.0)),
    "gemma2-uncapped": ("Gemma2Config", "Gemma2ForCausalLM",
                        dict(TEXT, attn_logit_softcapping=None, final_logit_softcapping=None,
                             tie_word_embeddings=False)),
    # VaultGemma: Gemma 2 with pre-norms only
    "vaultgemma": ("VaultGemmaConfig", "VaultGemmaForCausalLM",
                   dict(TEXT, attn_logit_softcapping=2.0, final_logit_softcapping=3.0)),
    # Gemma 3: QK-norm, local RoPE base on the sliding layers, linear scaling on the full one, a final cap
    "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM", dict(GEMMA3_TEXT, final_logit_softcapping=3.0)),
    "gemma3": ("Gemma3Config", "Gemma3ForConditionalGeneration",
               dict(text_config=GEMMA3_TEXT, vision_config=VISION, mm_tokens_per_image=4)),
}


def build_hf(case, path):
    conf_cls, model_cls, kwargs = CASES[case]
    torch.manual_seed(0)
    hf = getattr(transformers, model_cls)(getattr(transformers, conf_cls)(**kwargs)).eval()
    with torch.no_grad():  # random non-trivial norm gains, so a swapped one cannot hide; scores and logits
        for name, p in hf.named_parameters():  # large enough that the caps bite
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
            elif name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(10.0)
            elif name.endswith(("embed_tokens.weight", "lm_head.weight")):
                p.mul_(20.0)
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(path)
    return hf


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    hf = build_hf(case, tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert_matches_transformers(hf, ours, CASES[case][1], tmp_path)


@pytest.mark.parametrize("case", ["gemma2", "gemma3_text"])
def test_cached_decoding_equals_the_full_forward(case, tmp_path):
    build_hf(case, tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    ids, mask = padded_batch(ours.config.vocab_size, lengths=(24, 17))
    with torch.no_grad():
        full = ours(ids, attention_mask=mask).logits
        ours.setup_cache(2, 24)
        steps = [ours(ids[:, :10], attention_mask=mask, input_pos=torch.arange(10), kv_len=10).logits]
        steps += [ours(ids[:, t:t + 1], attention_mask=mask, input_pos=torch.tensor([t]), kv_len=t + 1).logits
                  for t in range(10, 24)]
        ours.clear_cache()
    assert_close_on_real_tokens(torch.cat(steps, dim=1), full, mask)


def test_the_caps_and_the_layer_types_are_read(tmp_path):
    build_hf("gemma2", tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    cfg = ours.config
    assert (cfg.attn_softcap, cfg.final_softcap, cfg.norm_placement) == (2.0, 3.0, "sandwich")
    assert cfg.attn_scale == 24 ** -0.5
    assert [cfg.for_layer(i).sliding_window for i in range(4)] == [6, None, 6, None]
    ids = torch.randint(0, 128, (1, 20))
    with torch.no_grad():  # each cap changes the logits of this test's weights
        for uncapped in (dict(attn_softcap=None), dict(final_softcap=None)):
            other = llmarch.build(cfg.replace(**uncapped)).eval()
            other.load_state_dict(ours.state_dict())
            assert (other(ids).logits - ours(ids).logits).abs().max() > 0.1
    build_hf("gemma3_text", tmp_path / "hf3")
    cfg = from_hf(tmp_path / "hf3").config
    assert [cfg.for_layer(i).rope_theta for i in range(4)] == [1e4, 1e4, 1e6, 1e4]
    assert [cfg.for_layer(i).rope_scaling for i in range(4)] == ["none", "none", "linear", "none"]
    assert cfg.qk_norm == "head" and cfg.norm == "rmsnorm_offset"  # QK-norm of the config's (1 + g) kind


def test_multimodal_names_and_published_config(tmp_path):
    """transformers 5 writes Gemma3ForConditionalGeneration's weights as published (language_model.model.*, which
    the parity case reads); here they are renamed as its modules name them (model.language_model.*,
    model.vision_tower.*), and the config written as the published Gemma 3 4B-27B ones are: a text_config listing
    only what differs from the defaults, RoPE as rope_theta, rope_scaling and rope_local_base_freq, the layer
    pattern as sliding_window_pattern."""
    hf = build_hf("gemma3", tmp_path / "hf")
    state = load_file(tmp_path / "hf" / "model.safetensors")
    assert any(k.startswith("language_model.model.layers.") for k in state)
    renamed = {"model." + k.replace("language_model.model.", "language_model.", 1): v for k, v in state.items()}
    (tmp_path / "pub").mkdir()
    save_file(renamed, str(tmp_path / "pub" / "model.safetensors"), metadata={"format": "pt"})
    text = {k: v for k, v in TEXT.items() if k != "query_pre_attn_scalar"}
    text.update(model_type="gemma3_text", query_pre_attn_scalar=24, rope_theta=1e6, rope_local_base_freq=1e4,
                rope_scaling={"rope_type": "linear", "factor": 8.0}, sliding_window_pattern=3)
    (tmp_path / "pub" / "config.json").write_text(json.dumps(
        {"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"], "text_config": text,
         "mm_tokens_per_image": 4,
         "vision_config": dict(VISION, model_type="siglip_vision_model")}))
    ours = from_hf(tmp_path / "pub")
    assert ours.config.layer_types == GEMMA3_TEXT["layer_types"]
    ids, mask = padded_batch(ours.config.vocab_size)
    with torch.no_grad():
        assert_close_on_real_tokens(ours(ids, attention_mask=mask).logits, hf_logits(hf, ids, mask), mask)


@pytest.mark.parametrize("name, model_cls", [("gemma2-2b", "Gemma2ForCausalLM"), ("gemma3-1b", "Gemma3ForCausalLM"),
                                             ("gemma3-270m", "Gemma3ForCausalLM")])
def test_presets_export_the_published_configs(name, model_cls, tmp_path):
    """Each preset's config.json builds the transformers model of the same parameter count, and reads back."""
    cfg = llmarch.preset(name)
    hf_cfg = FAMILIES[cfg.hf_model_type].from_config(cfg)
    conf = getattr(transformers, model_cls.replace("ForCausalLM", "Config").replace("Gemma3", "Gemma3Text"))
    with torch.device("meta"):
        hf = getattr(transformers, model_cls)(conf(**{k: v for k, v in hf_cfg.items() if k != "model_type"}))
    assert sum(p.numel() for p in hf.parameters()) == model_facts(cfg)["parameters"]
    assert hf.config.layer_types == cfg.layer_types
