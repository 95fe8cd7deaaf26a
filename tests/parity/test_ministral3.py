"""Ministral 3 (interop/ministral3.py) and Mistral Small 4 (mistral4.py) against transformers, through files: tiny
seeded Ministral3ForCausalLM models with YaRN RoPE and the log-length query scaling (llama_4_scaling_beta 0.5 over
original_max_position_embeddings 4, so it binds within the 13-30-token prompts), with and without a sliding
window; the text model of a mistral3 vision-language checkpoint; and Mistral Small 4's latent attention with it.
As for Llama 4 (test_llama4.py), transformers scales by the cache slot and llmarch by the row's position, so a
left-padded batch is compared with transformers' rows one at a time, unpadded."""
import pytest
import torch

import llmarch
from llmarch.interop import from_hf, to_hf

from test_hf_families import padded_batch
from test_deepseek import perturb
from test_llama4 import cached_against_full, max_diff_on_real, rows_alone

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 4,
        "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0, "llama_4_scaling_beta": 0.5}
TEXT = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=96, head_dim=16, max_position_embeddings=256, rope_parameters=YARN, pad_token_id=0)
CASES = {"full": dict(TEXT), "sliding": dict(TEXT, sliding_window=8)}


def build(case, tmp_path):
    torch.manual_seed(0)
    hf = transformers.Ministral3ForCausalLM(transformers.Ministral3Config(**CASES[case])).eval()
    with torch.no_grad():
        for p in hf.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp_path / "hf")
    return hf, from_hf(tmp_path / "hf")


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_greedy_tokens_and_cached_decoding(case, tmp_path):
    hf, ours = build(case, tmp_path)
    cfg = ours.config
    assert (cfg.rope_scaling, cfg.attn_temp_scale, cfg.attn_temp_floor, cfg.attn_temp_shift) == ("yarn", 0.5, 4, 0)
    assert cfg.sliding_window == (8 if case == "sliding" else None)
    torch.manual_seed(1)
    ids, mask = padded_batch(128)
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
        assert max_diff_on_real(mine, rows_alone(hf, ids, mask), mask) <= 1e-4
        assert (mine[0] - hf(ids, attention_mask=mask).logits[0]).abs().max() <= 1e-4  # the unpadded row
    generated = llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=32)
    for r in range(ids.shape[0]):
        prompt = ids[r:r + 1, mask[r].bool()]
        theirs = hf.generate(prompt, max_new_tokens=32, do_sample=False, pad_token_id=0)
        assert torch.equal(generated[r, ids.shape[1]:], theirs[0, prompt.shape[1]:])
    assert cached_against_full(ours) <= 1e-4


def test_to_hf_round_trip(tmp_path):
    hf, ours = build("sliding", tmp_path)
    to_hf(ours, tmp_path / "out")
    again = transformers.Ministral3ForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert again.config.rope_parameters["llama_4_scaling_beta"] == 0.5 and again.config.sliding_window == 8
    ids = torch.randint(0, 128, (2, 21))
    with torch.no_grad():
        assert (again(ids).logits - hf(ids).logits).abs().max() <= 1e-4
    assert from_hf(tmp_path / "out").config.to_dict() == ours.config.to_dict()


def test_mistral3_checkpoint_with_a_ministral3_text_model(tmp_path):
    torch.manual_seed(0)
    conf = transformers.Mistral3Config(
        text_config=dict(CASES["full"], model_type="ministral3"),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           head_dim=16, patch_size=4, image_size=16))
    hf = transformers.Mistral3ForConditionalGeneration(conf).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    assert ours.config.hf_model_type == "mistral3" and ours.config.attn_temp_scale == 0.5
    ids = torch.randint(0, 128, (2, 21))
    with torch.no_grad():
        assert (ours(ids).logits - hf(input_ids=ids).logits).abs().max() <= 1e-4
    to_hf(ours, tmp_path / "out")  # written back whole, the text model as a Ministral 3 (its query scaling)
    again = transformers.Mistral3ForConditionalGeneration.from_pretrained(tmp_path / "out").eval()
    assert again.config.text_config.model_type == "ministral3"
    with torch.no_grad():
        assert (again(input_ids=ids).logits - hf(input_ids=ids).logits).abs().max() <= 1e-4


MLA = dict(vocab_size=128, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
           kv_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=12, moe_intermediate_size=32,
           n_routed_experts=8, num_experts_per_tok=2, first_k_dense_replace=1, max_position_embeddings=256,
           q_lora_rank=48, n_shared_experts=1, routed_scaling_factor=2.0, pad_token_id=0,
           rope_parameters=dict(YARN, mscale_all_dim=0.8))


def test_mistral4_latent_attention_with_the_query_scaling(tmp_path):
    """Mistral Small 4: DeepSeek-V3's latent attention and mixture with a softmax router (renormalised, scaled) and
    the same query scaling; logits row by row, greedy tokens (decoded over the latent cache), a to_hf round trip."""
    torch.manual_seed(0)
    hf = perturb(transformers.Mistral4ForCausalLM(transformers.Mistral4Config(**MLA)).eval())
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp_path / "hf")
    ours = from_hf(tmp_path / "hf")
    cfg = ours.config
    assert (cfg.mixer, cfg.router_scoring, cfg.attn_temp_scale, cfg.attn_temp_shift) == ("mla", "softmax", 0.5, 0)
    torch.manual_seed(1)
    ids, mask = padded_batch(128)
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
        assert max_diff_on_real(mine, rows_alone(hf, ids, mask), mask) <= 1e-4
    generated = llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=16)
    for r in range(ids.shape[0]):
        prompt = ids[r:r + 1, mask[r].bool()]
        theirs = hf.generate(prompt, max_new_tokens=16, do_sample=False, pad_token_id=0)
        assert torch.equal(generated[r, ids.shape[1]:], theirs[0, prompt.shape[1]:])
    to_hf(ours, tmp_path / "out")
    again = transformers.Mistral4ForCausalLM.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        assert (again(ids[:1]).logits - hf(ids[:1]).logits).abs().max() <= 1e-4
