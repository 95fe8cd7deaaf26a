"""DeepSeek Sparse Attention (`deepseek_v32`, GLM-5's `glm_moe_dsa`) against transformers: a tiny seeded random
model of each (latent attention with its lightning indexer, index_topk = 6 keys per query where the padded batch's
rows hold 13 and 20 tokens and generation 32 more, so most queries drop keys; V3.2's indexer RoPE in halves under
YaRN, GLM-5's interleaved, GLM-5's shared indexer layers) is saved, loaded with from_hf and compared on a left-padded
batch (fp32, max |dlogit| <= 1e-4), greedy generation equals transformers' generate, to_hf output loads back with the
same logits, and cached decoding (absorbed or expanded) equals the whole forward. The same weights with the
indexer bypassed (dense latent attention) are far from transformers' logits: the selection is what is tested."""
import pytest
import torch

import llmarch
from llmarch import LlmarchError
from llmarch.interop import from_hf
from llmarch.interop.hf import hf_model_config
from llmarch.layers.attention import AttentionContext

from conftest import stepwise_logits
from test_deepseek import perturb
from test_hf_families import assert_close_on_real_tokens, assert_matches_transformers, hf_logits, padded_batch

transformers = pytest.importorskip("transformers")

DSA = dict(vocab_size=128, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
           kv_lora_rank=32, q_lora_rank=48, qk_rope_head_dim=8, qk_nope_head_dim=16, v_head_dim=12,
           moe_intermediate_size=32, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1,
           first_k_dense_replace=1, max_position_embeddings=128, index_topk=6, index_head_dim=16, index_n_heads=8)
YARN = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 32,
        "mscale": 1.0, "mscale_all_dim": 0.8, "beta_fast": 32, "beta_slow": 1}
CASES = {
    # V3.2: 2 of 4 expert groups, YaRN (its attention factor turns the indexer's RoPE dims too)
    "deepseek_v32": ("DeepseekV32Config", "DeepseekV32ForCausalLM",
                     dict(DSA, n_group=4, topk_group=2, routed_scaling_factor=2.5, rope_parameters=YARN)),
    # GLM-5: interleaved indexer RoPE; layers 1 and 2 reuse layer 0's selection, layer 3 selects anew
    "glm_moe_dsa-shared": ("GlmMoeDsaConfig", "GlmMoeDsaForCausalLM",
                           dict(DSA, num_hidden_layers=4, indexer_types=["full", "shared", "shared", "full"],
                                routed_scaling_factor=1.8, attention_bias=True)),
    "glm_moe_dsa": ("GlmMoeDsaConfig", "GlmMoeDsaForCausalLM", dict(DSA, mlp_layer_types=["dense", "dense", "sparse"])),
}


def build_hf(case, folder):
    conf_cls, model_cls, kwargs = CASES[case]
    torch.manual_seed(0)
    hf = perturb(getattr(transformers, model_cls)(getattr(transformers, conf_cls)(**kwargs)).eval())
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(folder)
    return hf


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    hf = build_hf(request.param, folder / "hf")
    return request.param, hf, from_hf(folder / "hf"), folder


def test_logits_generation_and_round_trip(pair):
    case, hf, ours, folder = pair
    assert ours.config.dsa_topk == 6 and ours.blocks[0].attn.indexer is not None
    assert [b.attn.indexer is None for b in ours.blocks] == [t == "shared" for t in
                                                             getattr(hf.config, "indexer_types", ["full"] * 3)]
    assert_matches_transformers(hf, ours, CASES[case][1], folder)


def test_without_the_indexer_the_logits_differ(pair):
    """Bypassing the selection (every key kept) moves the logits far past the tolerance: the cases exercise it."""
    case, hf, ours, _ = pair
    dense = llmarch.build(ours.config.replace(dsa_topk=None, layer_types=None, layer_overrides=None)).eval()
    dense.load_state_dict({k: v for k, v in ours.state_dict().items() if ".indexer." not in k})
    ids, mask = padded_batch(ours.config.vocab_size)
    with torch.no_grad():
        real = mask.bool()
        assert (dense(ids, attention_mask=mask).logits - hf_logits(hf, ids, mask))[real].abs().max() > 1e-2


@pytest.mark.parametrize("absorb", [True, False])
def test_cached_decoding_equals_the_full_forward(pair, absorb):
    _, _, loaded, _ = pair
    ours = llmarch.build(loaded.config.replace(mla_absorb=absorb)).eval()
    ours.load_state_dict(loaded.state_dict())
    ids, mask = padded_batch(ours.config.vocab_size)
    ids = torch.cat((ids, torch.randint(0, ours.config.vocab_size, (2, 12))), dim=1)  # 32 tokens: 26 decoded
    mask = torch.cat((mask, torch.ones(2, 12, dtype=mask.dtype)), dim=1)
    with torch.no_grad():
        full = ours(ids, attention_mask=mask).logits
    assert_close_on_real_tokens(stepwise_logits(ours, ids, 6, mask), full, mask)


def test_config_errors():
    hf = dict(DSA, model_type="glm_moe_dsa", num_hidden_layers=2)
    with pytest.raises(LlmarchError, match="the first full"):
        hf_model_config({**hf, "indexer_types": ["shared", "full"]})
    with pytest.raises(LlmarchError, match="q_lora_rank"):
        hf_model_config({**hf, "model_type": "deepseek_v32", "q_lora_rank": None})
    cfg = hf_model_config(hf)
    with pytest.raises(LlmarchError, match="dsa_topk and dsa_heads must be positive"):
        cfg.replace(dsa_topk=0)
    with pytest.raises(LlmarchError, match="dsa_shared on layer 0"):
        llmarch.build(cfg.replace(layer_types=["s", "f"], layer_overrides={"s": {"dsa_shared": True}}), device="meta")
    with pytest.raises(LlmarchError, match="needs some layer of mixer 'mla'"):
        llmarch.build("llama-tiny", n_layers=1, dsa_topk=4, device="meta")
    # GLM-5's pattern derived from index_topk_freq and index_skip_topk_offset when indexer_types is absent
    cfg = hf_model_config({**hf, "num_hidden_layers": 6, "index_topk_freq": 2, "index_skip_topk_offset": 2})
    assert [cfg.for_layer(i).dsa_shared for i in range(6)] == [False, False, True, False, True, False]


def tiny_dsa(**overrides):
    torch.manual_seed(0)
    return llmarch.build("deepseek-tiny", n_layers=2, vocab_size=61, dsa_topk=4, dsa_heads=4, dsa_head_dim=24,
                         **overrides).eval()


def test_the_future_leaves_earlier_selections_unchanged():
    model = tiny_dsa()
    torch.manual_seed(1)
    ids = torch.randint(0, 61, (2, 32))
    changed = ids.clone()
    changed[:, 20:] = torch.randint(0, 61, (2, 12))
    with torch.no_grad():
        a, b = model(ids).logits, model(changed).logits
    assert (a[:, :20] - b[:, :20]).abs().max() < 1e-5 and (a[:, 20:] - b[:, 20:]).abs().max() > 1e-3


def test_ties_go_to_the_earlier_key_whatever_the_length():
    """With every index score 0 (weights_proj zero: all keys tie), each query keeps its first dsa_topk keys, in the
    whole forward as in cached decoding (torch.topk's choice among ties changes with the number of keys)."""
    model = tiny_dsa(layer_types=["full", "shared"], layer_overrides={"shared": {"dsa_shared": True}})
    indexer = model.blocks[0].attn.indexer
    with torch.no_grad():
        indexer.weights_proj.weight.zero_()
    T = 10
    ctx = AttentionContext(mask=None, causal=True, rope=None, input_pos=torch.arange(T))
    x, cq = torch.randn(1, T, 256), torch.randn(1, T, 128)
    with torch.no_grad():
        chosen = indexer.select(x, cq, indexer.keys(x, ctx), ctx)[0, 0]
    first = torch.ones(T, T, dtype=torch.bool).tril() & (torch.arange(T) < 4)
    assert torch.equal(chosen, first)
    torch.manual_seed(2)
    ids = torch.randint(0, 61, (2, 24))
    with torch.no_grad():
        full = model(ids).logits
    assert (stepwise_logits(model, ids, 8) - full).abs().max() < 1e-4
