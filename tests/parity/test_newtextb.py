"""Inkling's text model (`model_type: inkling_text`, InklingForCausalLM) against transformers, through files: a tiny
seeded model with a sliding layer (its own heads and head width, a bias over its window) and a full layer (a bias
over rel_extent and the log query temperature from position 3 on), Canon layers on keys, values and both sublayer
outputs, a dense first layer with its learned scalar and a mixture layer whose router weighs two shared experts as a
sink. 1-D parameters perturbed, the routers made decisive, and the bias bank, its projection, the convolutions, the
FFNs and the head enlarged so that each part moves the logits. transformers' log temperature counts cache slots
(InklingAttention's q_positions), so its left-padded rows differ from the same rows alone; llmarch counts the row's
positions, and its padded batch is compared with transformers' rows one at a time, unpadded (as Llama 4's,
test_llama4.py). HRM-Text (`model_type: hrm_text`, HrmTextForCausalLM): the Hierarchical Reasoning Model's two
recurrent modules (recurrence 'hrm'): logits on a left-padded batch, greedy tokens, cached decoding (each block
invocation its own KV cache) and a round trip."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

from conftest import assert_cached_decoding_and_config_round_trip, assert_cached_equals_whole, perturbed, routed_apart
from test_hf_families import assert_matches_transformers, hf_logits, padded_batch
from test_llama4 import rows_alone

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

INKLING = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               head_dim=16, swa_num_attention_heads=2, swa_num_key_value_heads=1, swa_head_dim=32,
               sliding_window_size=5, d_rel=4, rel_extent=8, log_scaling_n_floor=3, log_scaling_alpha=0.3,
               layer_types=["hybrid_sliding", "hybrid"], conv_kernel_size=4, mlp_layer_types=["dense", "sparse"],
               intermediate_size=96, moe_intermediate_size=32, n_routed_experts=4, num_experts_per_tok=2,
               n_shared_experts=2, route_scale=2.0, logits_mup_width_multiplier=3.0, pad_token_id=0,
               max_position_embeddings=256)


@pytest.fixture(scope="module")
def inkling(tmp_path_factory):
    torch.manual_seed(0)
    hf = routed_apart(transformers.InklingForCausalLM(transformers.InklingTextConfig(**INKLING)))
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith(("rel_logits_proj.proj", "r_proj.weight")):
                p.mul_(25.0 if name.endswith("proj") else 10.0)
            if name.endswith("conv1d.weight"):
                p.normal_(0.0, 0.3)
            if ".mlp." in name and p.dim() >= 2 and not name.endswith("gate.weight") or name == "lm_head.weight":
                p.mul_(5.0)  # FFN outputs and logits of a size whose learned scalars show
    folder = tmp_path_factory.mktemp("inkling")
    perturbed(hf).save_pretrained(folder / "hf")
    hf.generation_config.eos_token_id = None
    return hf, from_hf(folder / "hf"), folder


def test_inkling_config_reads_every_part(inkling):
    _, ours, _ = inkling
    cfg = ours.config
    sliding, full = cfg.for_layer(0), cfg.for_layer(1)
    assert (sliding.n_heads, sliding.head_dim, sliding.sliding_window, sliding.rel_logits_extent) == (2, 32, 5, 5)
    assert (full.n_heads, full.sliding_window, full.rel_logits_extent, full.attn_temp_scale) == (4, None, 8, 0.3)
    assert (sliding.attn_scale, full.attn_scale, sliding.attn_temp_scale) == (1 / 32, 1 / 16, 0.0)
    assert (cfg.attention, cfg.positions, cfg.canon_kv, cfg.canon_out, cfg.attn_temp_form) == \
        ("relative_logits", "none", 4, 4, "ratio")
    assert (cfg.moe_dense_first, cfg.router_shared_sink, cfg.shared_hidden, cfg.logit_divisor) == (1, True, 64, 3.0)
    with pytest.raises(LlmarchError, match="unpadded_vocab_size"):
        hf_model_config({**INKLING, "model_type": "inkling_text", "unpadded_vocab_size": 100})
    with pytest.raises(LlmarchError, match="interleave dense and sparse"):
        hf_model_config({**INKLING, "model_type": "inkling_text", "mlp_layer_types": ["sparse", "dense"]})
    with pytest.raises(LlmarchError, match="router_shared_sink weighs"):
        cfg.replace(router_scoring="softmax")


def test_inkling_left_padded_logits_greedy_and_cached_decoding(inkling):
    hf, ours, _ = inkling
    torch.manual_seed(1)
    ids, mask = padded_batch(128, lengths=(14, 9))
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
        assert (mine[0] - hf(ids, attention_mask=mask).logits[0]).abs().max() <= 1e-4  # the unpadded row
    real = mask.bool()
    assert (mine[real] - rows_alone(hf, ids, mask)[real]).abs().max() <= 1e-4
    generated = llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=24)
    T = ids.shape[1]
    for r in range(ids.shape[0]):
        prompt = ids[r:r + 1, real[r]]
        theirs = hf.generate(prompt, max_new_tokens=24, do_sample=False, pad_token_id=0)
        assert torch.equal(generated[r, T:], theirs[0, prompt.shape[1]:])
    full_mask = torch.cat([mask, torch.ones(2, 24, dtype=mask.dtype)], 1)
    assert_cached_equals_whole(ours, generated, T, full_mask)


def test_inkling_to_hf_round_trip(inkling):
    hf, ours, folder = inkling
    to_hf(ours, folder / "out")
    again = transformers.InklingForCausalLM.from_pretrained(folder / "out").eval()
    ids = torch.randint(0, 128, (2, 13))
    with torch.no_grad():
        assert (again(ids).logits - hf(ids).logits).abs().max() <= 1e-4
    assert from_hf(folder / "out").config.to_dict() == {**ours.config.to_dict(), "name": ours.config.name}


HRM = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
           head_dim=16, H_cycles=2, L_cycles=2, max_position_embeddings=128, pad_token_id=0)


@pytest.fixture(scope="module")
def hrm(tmp_path_factory):
    """HRM-Text: two modules of two blocks, 2 high cycles of 2 low ones (12 block invocations), z_L's start drawn."""
    torch.manual_seed(0)
    hf = transformers.HrmTextForCausalLM(transformers.HrmTextConfig(**HRM))
    with torch.no_grad():
        hf.model.z_L_init.normal_()
    folder = tmp_path_factory.mktemp("hrm")
    hf.eval().save_pretrained(folder / "hf")
    hf.generation_config.eos_token_id = None
    return hf, from_hf(folder / "hf"), folder


def test_hrm_logits_greedy_cached_decoding_and_round_trip(hrm):
    hf, ours, folder = hrm
    cfg = ours.config
    assert (cfg.recurrence, cfg.n_layers, cfg.hrm_high_cycles, cfg.hrm_low_cycles, cfg.norm, cfg.embed_multiplier) \
        == ("hrm", 4, 2, 2, "rmsnorm_plain", 50.0)
    assert ours.recurrence.order() == [0, 1, 0, 1, 2, 3] * 2
    ids, mask, generated = assert_matches_transformers(hf, ours, "HrmTextForCausalLM", folder)
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, folder / "out")
    assert len(ours.caches()) == 12
    with pytest.raises(LlmarchError, match="even n_layers"):
        cfg.replace(n_layers=3)


def test_exaone4_5_text_model(tmp_path):
    """EXAONE 4.5's text model (an EXAONE 4.0 under model.language_model.) read from a tiny
    Exaone4_5_ForConditionalGeneration, its vision tower left unread; written back as exaone4."""
    torch.manual_seed(0)
    text = dict(model_type="exaone4", vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=4,
                layer_types=["sliding_attention", "full_attention"], pad_token_id=0, tie_word_embeddings=False)
    vision = dict(depth=1, hidden_size=32, intermediate_size=48, num_heads=2, out_hidden_size=64,
                  num_key_value_heads=2)
    config = transformers.Exaone4_5_Config(text_config=text, vision_config=vision, image_token_id=120,
                                           video_token_id=121)
    hf = transformers.Exaone4_5_ForConditionalGeneration(config)
    perturbed(hf).save_pretrained(tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    ours = from_hf(tmp_path / "hf")
    assert (ours.config.hf_model_type, ours.config.for_layer(0).sliding_window) == ("exaone4", 4)
    assert_matches_transformers(hf, ours, "Exaone4ForCausalLM", tmp_path)


STEP_TEXT = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, layer_types=["sliding_attention", "full_attention"],
                 sliding_window=4, num_sliding_attention_heads=2, mlp_layer_types=["dense", "sparse"],
                 moe_intermediate_size=32, n_routed_experts=4, num_experts_per_tok=2, share_expert_dim=48,
                 moe_router_scaling_factor=2.0, query_pre_attn_scalar=32, rope_theta=[10000.0, 50000.0],
                 partial_rotary_factors=[1.0, 0.5], pad_token_id=0, max_position_embeddings=128,
                 swiglu_limits=[0, 0.05], swiglu_limits_shared=[0.04, 0.06])
STEP_VISION = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2, image_size=56,
                   patch_size=14)


def test_step3p7_text_model(tmp_path):
    """Step 3.7's text model (`step3p5`, which has no causal-LM class of its own) as transformers builds it, under
    Step3p7ForConditionalGeneration's LM head: a sliding layer with its own query heads and RoPE, a full one rotating
    half of each head, offset RMSNorms, per-head sigmoid gates, a dense layer then a mixture with a shared expert, the
    SwiGLUs clamped after their activation at bounds that bind (the dense, shared and routed ones each their own).
    Logits on a left-padded batch, greedy tokens, cached decoding; the round trip writes `step3p5`, whose tensors
    transformers' wrapper loads (beside the wrapper's config.json, its vision tower left at init) to the same text
    logits."""
    torch.manual_seed(0)
    config = transformers.Step3p7Config(text_config=STEP_TEXT, vision_config=STEP_VISION, image_token_id=120)
    hf = routed_apart(transformers.Step3p7ForConditionalGeneration(config))
    perturbed(hf).save_pretrained(tmp_path / "hf")
    hf.generation_config.eos_token_id = None
    ours = from_hf(tmp_path / "hf")
    cfg = ours.config
    assert (cfg.norm, cfg.attn_scale, cfg.attn_head_gate, cfg.moe_dense_first, cfg.shared_hidden) == \
        ("rmsnorm_offset", 32 ** -0.5, True, 1, 48)
    sliding, full = cfg.for_layer(0), cfg.for_layer(1)
    assert (sliding.n_heads, sliding.sliding_window, full.rope_theta, full.rope_fraction) == (2, 4, 50000.0, 0.5)
    assert cfg.layer_types == ["sliding_attention_heads2_swiglu0p04_0", "full_attention_swiglu0p06_0p05"]
    assert (sliding.ffn, sliding.swiglu_limit, full.expert_ffn, full.expert_swiglu_limit) == \
        ("swiglu_clipped", 0.04, "swiglu_clipped", 0.05)
    ids, mask = padded_batch(128, lengths=(14, 9))
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
    real = mask.bool()
    assert (mine[real] - hf_logits(hf, ids, mask)[real]).abs().max() <= 1e-4
    generated = llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=24)
    assert torch.equal(generated, hf.generate(ids, attention_mask=mask, max_new_tokens=24, do_sample=False,
                                              pad_token_id=0))
    full_mask = torch.cat([mask, torch.ones(2, 24, dtype=mask.dtype)], 1)
    assert_cached_equals_whole(ours, generated, ids.shape[1], full_mask)
    to_hf(ours, tmp_path / "out")
    assert from_hf(tmp_path / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}
    (tmp_path / "out" / "config.json").write_text((tmp_path / "hf" / "config.json").read_text())
    again = transformers.Step3p7ForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
    assert (hf_logits(again, ids, mask)[real] - mine[real]).abs().max() <= 1e-4
    with pytest.raises(LlmarchError, match="bidirectional"):
        hf_model_config({**STEP_TEXT, "model_type": "step3p5", "use_bidirectional_attention": True})


def test_accounting_counts_every_invocation_and_canon_history():
    """`llmarch info`'s numbers: HRM's cache holds keys and values per block invocation (16 of 4 blocks here), its
    FLOPs run each block as often; Inkling's Canon layers add their fp32 inputs per token."""
    from llmarch.analysis.accounting import model_facts
    hrm = hf_model_config({**HRM, "model_type": "hrm_text", "L_cycles": 3})
    once = model_facts(hrm.replace(recurrence="none"), "fp32")
    facts = model_facts(hrm, "fp32")
    assert facts["kv_cache_bytes_per_token"] == 4 * once["kv_cache_bytes_per_token"]  # 16 runs of 4 blocks
    assert facts["flops_per_token"] > 3 * once["flops_per_token"]
    ink = hf_model_config({**INKLING, "model_type": "inkling_text"})
    plain = model_facts(ink.replace(canon_kv=0, canon_out=0), "fp32")["kv_cache_bytes_per_token"]
    canon = 4 * (2 * 64 + 1 * 32 * 2 + 2 * 64 + 2 * 16 * 2)  # per layer: two outputs of d, keys and values
    assert model_facts(ink, "fp32")["kv_cache_bytes_per_token"] == plain + canon
