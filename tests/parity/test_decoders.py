"""nanochat, DBRX, MPT, CodeGen and MiniCPM3 against transformers, through files (as test_dense_families.py does):
each a tiny seeded random model with its 1-D parameters and any zero- or one-initialised ones moved, saved and
read by from_hf; logits on a left-padded batch within 1e-4 (fp32), 32 greedy tokens equal to transformers',
cached decoding equal to the whole forward, and a to_hf round trip that transformers loads with the same logits."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import from_hf
from llmarch.interop.hf import hf_model_config

import test_dense_families

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

COMMON = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96)
DBRX = dict(vocab_size=128, d_model=64, n_layers=2, n_heads=4, rope_parameters={"rope_type": "default",
                                                                                "rope_theta": 500.0})
DBRX_FFN = dict(ffn_hidden_size=32, moe_num_experts=4)
MPT = dict(vocab_size=128, d_model=48, n_layers=2, n_heads=6, max_seq_len=128)
CODEGEN = dict(vocab_size=128, n_embd=64, n_layer=2, n_positions=128, n_ctx=128)
MINICPM3 = dict(COMMON, kv_lora_rank=24, q_lora_rank=32, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=12,
                scale_emb=12, scale_depth=1.4, dim_model_base=16, max_position_embeddings=128)
CASES = {
    # GQA, a soft-cap that binds (the random logits reach ~1), an untied head
    "nanochat": ("NanoChatConfig", "NanoChatForCausalLM",
                 dict(COMMON, num_key_value_heads=2, final_logit_softcapping=1.0, initializer_range=0.1)),
    # q, k, v, o biases, no cap, a tied head, another RoPE base
    "nanochat-bias": ("NanoChatConfig", "NanoChatForCausalLM",
                      dict(COMMON, attention_bias=True, final_logit_softcapping=None, tie_word_embeddings=True,
                           rope_parameters={"rope_type": "default", "rope_theta": 500.0})),
    # DBRX: 4 experts, top 2 renormalised (p = 1), q k v clamped at 0.1 (the projections reach ~0.3: it binds)
    "dbrx": ("DbrxConfig", "DbrxForCausalLM", dict(DBRX, attn_config=dict(kv_n_heads=2, clip_qkv=0.1, rope_theta=500.0),
                                                   ffn_config=dict(DBRX_FFN, moe_top_k=2))),
    # top 3 divided by their 2-norm (weights summing to more than 1), multi-query, DBRX's clamp of 8 (transformers
    # 5.25 fails without one: torch.clamp(min=None, max=None))
    "dbrx-p2": ("DbrxConfig", "DbrxForCausalLM", dict(DBRX, attn_config=dict(kv_n_heads=1, clip_qkv=8, rope_theta=1e4),
                                                      ffn_config=dict(DBRX_FFN, moe_top_k=3,
                                                                      moe_normalize_expert_weights=2.0))),
    # top 2 raw softmax probabilities (moe_normalize_expert_weights null), GeGLU experts
    "dbrx-raw": ("DbrxConfig", "DbrxForCausalLM",
                 dict(DBRX, attn_config=dict(kv_n_heads=4, clip_qkv=8, rope_theta=1e4),
                      ffn_config=dict(DBRX_FFN, moe_top_k=2, ffn_act_fn={"name": "gelu"},
                                      moe_normalize_expert_weights=None))),
    # MPT: ALiBi over 6 heads (a count that is not a power of two: MPT's interleaved slopes), q k v clamped at 0.1
    # (it binds), the scores scaled by 0.2 rather than 1/sqrt(8), tied head
    "mpt": ("MptConfig", "MptForCausalLM", dict(MPT, attn_config=dict(clip_qkv=0.1, softmax_scale=0.2))),
    # 4 heads, no clamp, default scale, an untied head
    "mpt-untied": ("MptConfig", "MptForCausalLM", dict(MPT, n_heads=4, tie_word_embeddings=False)),
    # CodeGen: 4 heads of 16 over d 64, so each of qkv_proj's 4 shards (16 rows of q, v, k) is one head; half of
    # each head rotated, in adjacent pairs
    "codegen": ("CodeGenConfig", "CodeGenForCausalLM", dict(CODEGEN, n_head=4, rotary_dim=8)),
    # 8 heads of 12 over d 96: a shard of 24 rows holds two heads; 4 rotated dims of 12, a shard boundary inside no
    # head; and 6 heads of 16, where a shard of 24 rows splits heads 1 and 4 in halves
    "codegen-8heads": ("CodeGenConfig", "CodeGenForCausalLM", dict(CODEGEN, n_embd=96, n_head=8, rotary_dim=4)),
    "codegen-6heads": ("CodeGenConfig", "CodeGenForCausalLM", dict(CODEGEN, n_embd=96, n_head=6, rotary_dim=16)),
    # MiniCPM3: latent attention with a compressed query, RoPE in halves; embeddings x 12, branches x 1.4 / sqrt(2),
    # the head's input / (64 / 16)
    "minicpm3": ("MiniCPM3Config", "MiniCPM3ForCausalLM", dict(MINICPM3)),
    # one q_proj (q_lora_rank null), an untied head, and LongRoPE: 24 positions pretrained, stretched to 96: the
    # 13-20-token prompts take the short factors, the decoding steps past position 24 the long ones (over keys cached
    # with the short ones, as in transformers), cos and sin x sqrt(1 + ln 4 / ln 24)
    "minicpm3-longrope": ("MiniCPM3Config", "MiniCPM3ForCausalLM",
                          dict(MINICPM3, q_lora_rank=None, tie_word_embeddings=False, max_position_embeddings=96,
                               rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                                "original_max_position_embeddings": 24,
                                                "short_factor": [1.0 + 0.1 * i for i in range(4)],
                                                "long_factor": [1.0 + 0.5 * i for i in range(4)]})),
}


def build_hf(case, tmp_path):
    return test_dense_families.build_hf(case, tmp_path, CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    ours = test_dense_families.check_case(case, tmp_path, CASES)
    assert from_hf(tmp_path / "out").config.to_dict() == {**ours.config.to_dict(), "name": ours.config.name}


def test_nanochat_refuses_what_it_cannot_compute():
    with pytest.raises(LlmarchError, match="hidden_act 'silu' is not supported"):
        hf_model_config(dict(COMMON, model_type="nanochat", hidden_act="silu"))


def test_dbrx_reads_the_published_rope_theta_and_refuses_what_it_cannot_compute():
    published = dict(DBRX, model_type="dbrx", attn_config=dict(kv_n_heads=2, clip_qkv=8, rope_theta=500000),
                     ffn_config=dict(DBRX_FFN, moe_top_k=2))
    del published["rope_parameters"]  # as dbrx-base and dbrx-instruct's config.json: attn_config's theta only
    assert hf_model_config(published).rope_theta == 500000.0
    with pytest.raises(LlmarchError, match="ffn_act_fn"):
        hf_model_config(dict(published, ffn_config=dict(DBRX_FFN, ffn_act_fn={"name": "silu", "alpha": 2})))
    with pytest.raises(LlmarchError, match="tie_word_embeddings"):
        hf_model_config(dict(published, tie_word_embeddings=True))
    with pytest.raises(LlmarchError, match="router_renorm_p=2.0 must be positive, and other than 1 only"):
        hf_model_config(published).replace(router_renormalize=False, router_renorm_p=2.0)


@pytest.mark.parametrize("attn, problem", [(dict(qk_ln=True), "qk_ln=True"), (dict(alibi=False), "alibi=False"),
                                           (dict(alibi_bias_max=16), "alibi_bias_max=16"),
                                           (dict(attn_type="multiquery_attention"), "attn_type")])
def test_mpt_refuses_switches_transformers_ignores(attn, problem):
    with pytest.raises(LlmarchError, match=f"mpt: attn_config.{problem}"):
        hf_model_config(dict(MPT, model_type="mpt", attn_config=attn))
    with pytest.raises(LlmarchError, match="no_bias=false"):
        hf_model_config(dict(MPT, model_type="mpt", no_bias=False))


@pytest.mark.parametrize("case", ["nanochat-bias", "dbrx", "mpt-untied", "codegen-6heads"])
def test_to_hf_writes_back_every_tensor_it_read_exactly(case, tmp_path):
    """The layouts split and re-fuse exactly: CodeGen's sharded [q v k] rows, nanochat's swapped RoPE halves,
    DBRX's experts fused across experts."""
    from safetensors.torch import load_file

    from llmarch.interop import to_hf

    build_hf(case, tmp_path)
    to_hf(from_hf(tmp_path / "hf"), tmp_path / "out")
    read, written = load_file(tmp_path / "hf" / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    tied = "lm_head.weight" not in written
    assert set(read) - ({"lm_head.weight"} if tied else set()) == set(written)
    assert all(torch.equal(read[k], written[k]) for k in written)


def test_codegen_refuses_a_config_transformers_cannot_run():
    with pytest.raises(LlmarchError, match="rotary_dim must be given"):
        hf_model_config(dict(CODEGEN, model_type="codegen", n_head=4, rotary_dim=None))
    with pytest.raises(LlmarchError, match="multiple of 4"):
        hf_model_config(dict(CODEGEN, model_type="codegen", n_embd=66, n_head=6, rotary_dim=4))


def test_minicpm3_longrope_past_the_pretraining_context(tmp_path):
    """A 40-token sequence, past the 24 pretrained positions: the long factors, in one forward."""
    hf = build_hf("minicpm3-longrope", tmp_path)
    ours = from_hf(tmp_path / "hf")
    ids = torch.randint(0, 128, (1, 40))
    with torch.no_grad():
        assert (ours(ids).logits - hf(ids).logits).abs().max() <= 1e-4


def test_minicpm3_refuses_what_it_cannot_compute():
    yarn = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 64}
    with pytest.raises(LlmarchError, match="minicpm3: rope type 'yarn' is not supported"):
        hf_model_config(dict(MINICPM3, model_type="minicpm3", rope_parameters=yarn))
    with pytest.raises(LlmarchError, match="attention_bias"):
        hf_model_config(dict(MINICPM3, model_type="minicpm3", attention_bias=True))
