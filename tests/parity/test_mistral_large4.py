"""Mistral Large 4 (interop/mistral_large4.py) against transformers, through files: a tiny seeded
MistralLarge4ForConditionalGeneration (a one-layer Pixtral tower, not read) saved in Mistral's names, its text model
read with from_hf. Four layers cover each pairing of RoPE and NoPE layers (no_rope_layers [1, 0, 1, 0]) with full and
shared indexers (indexer_types full, shared, shared, full), index_topk 6 where the left-padded rows hold 20 and 13
tokens and generation 32 more, so most queries drop keys; YaRN with LeRoPE's learned alpha and the learned per-head
log-position query gains perturbed away from their identity init. Checked: logits on a left-padded batch (fp32,
max |dlogit| <= 1e-4), greedy tokens equal to transformers' generate, cached decoding (absorbed and expanded) equal
to the whole forward, and the mistral_large4_text export loaded by MistralLarge4TextModel to the same hidden
states (transformers has no causal-LM class of the text model alone), read back by from_hf to the same config."""
import pytest
import torch

import llmarch
from llmarch import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

from conftest import stepwise_logits
from test_deepseek import perturb
from test_hf_families import assert_close_on_real_tokens, hf_logits, padded_batch

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64,
        "beta_fast": 32.0, "beta_slow": 1.0, "attention_factor": 1.0}
TEXT = dict(vocab_size=128, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=96,
            kv_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=12, moe_intermediate_size=32,
            n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1,
            max_position_embeddings=256, index_topk=6, index_head_dim=16, index_n_heads=8,
            indexer_types=["full", "shared", "shared", "full"], no_rope_layers=[1, 0, 1, 0],
            routed_scaling_factor=1.5, final_logit_softcapping=3.0, rope_parameters=YARN)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, head_dim=16,
              patch_size=4, image_size=16)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mistral_large4")
    torch.manual_seed(0)
    conf = transformers.MistralLarge4Config(text_config=TEXT, vision_config=VISION)
    hf = perturb(transformers.MistralLarge4ForConditionalGeneration(conf).eval())
    with torch.no_grad():  # the log-position slopes and LeRoPE's alpha well away from 0
        for name, p in hf.named_parameters():
            if name.endswith(("softmax_scaling.scale", "rotary_emb.alpha")):
                p.copy_(torch.randn_like(p) * 0.3)
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(folder / "hf")
    return hf, from_hf(folder / "hf"), folder


def test_config_reads_each_part(pair):
    _, ours, _ = pair
    cfg = ours.config
    assert (cfg.hf_model_type, cfg.q_lora_rank, cfg.dsa_query, cfg.dsa_topk, cfg.final_softcap) == \
        ("mistral_large4_text", None, "hidden", 6, 3.0)
    assert cfg.attn_log_pos_gain and cfg.rope_learned_freqs and cfg.mla_latent_eps == cfg.norm_eps
    layers = [cfg.for_layer(i) for i in range(4)]
    assert [(c.mla_no_rope, c.dsa_shared) for c in layers] == [(False, False), (True, True), (False, True),
                                                              (True, False)]
    assert [b.attn.kv_a_proj.weight.shape[0] for b in ours.blocks] == [40, 32, 40, 32]


def test_logits_and_greedy_tokens(pair):
    hf, ours, _ = pair
    ids, mask = padded_batch(128)
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
    assert_close_on_real_tokens(mine, hf_logits(hf, ids, mask), mask)
    theirs = hf.generate(ids, attention_mask=mask, max_new_tokens=32, do_sample=False, pad_token_id=0)
    assert torch.equal(llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=32), theirs)


@pytest.mark.parametrize("absorb", [True, False])
def test_cached_decoding_equals_the_full_forward(pair, absorb):
    _, loaded, _ = pair
    ours = llmarch.build(loaded.config.replace(mla_absorb=absorb)).eval()
    ours.load_state_dict(loaded.state_dict())
    ids, mask = padded_batch(128)
    ids = torch.cat((ids, torch.randint(0, 128, (2, 12))), dim=1)  # 32 tokens: 26 decoded
    mask = torch.cat((mask, torch.ones(2, 12, dtype=mask.dtype)), dim=1)
    with torch.no_grad():
        full = ours(ids, attention_mask=mask).logits
    assert_close_on_real_tokens(stepwise_logits(ours, ids, 6, mask), full, mask)


def test_text_model_export_round_trip(pair):
    hf, ours, folder = pair
    to_hf(ours, folder / "out")
    body = transformers.MistralLarge4TextModel.from_pretrained(folder / "out").eval()
    ids = torch.randint(0, 128, (2, 21))
    with torch.no_grad():
        expected = hf.model.language_model(input_ids=ids).last_hidden_state
        assert (body(input_ids=ids).last_hidden_state - expected).abs().max() <= 1e-4
        again = from_hf(folder / "out")
        assert (again(ids).logits - hf(input_ids=ids).logits).abs().max() <= 1e-4
    assert again.config.to_dict() == ours.config.to_dict()


def test_refused_variants(tmp_path):
    hf = dict(TEXT, model_type="mistral_large4_text")
    with pytest.raises(LlmarchError, match="kv_source_layers"):
        hf_model_config({**hf, "kv_source_layers": [0, 0, 2, 3]})
    with pytest.raises(LlmarchError, match="n_group"):
        hf_model_config({**hf, "n_group": 2, "topk_group": 1})
    cfg = hf_model_config(hf)
    with pytest.raises(LlmarchError, match="text model only"):
        to_hf(llmarch.build(cfg.replace(hf_model_type="mistral_large4")), tmp_path)
    with pytest.raises(LlmarchError, match="positions 'none'"):
        cfg.replace(layer_overrides={**cfg.layer_overrides, "nope_shared": {"mla_no_rope": True, "dsa_shared": True}})
