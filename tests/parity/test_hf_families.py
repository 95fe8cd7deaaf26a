"""Each Hugging Face family in scope, through files: a tiny seeded random `transformers` model is saved,
loaded with `llmarch.from_hf`, and compared on a left-padded batch (fp32, max |dlogit| <= 1e-4); greedy
generation of 32 tokens matches `transformers`' generate; `to_hf` output loads back into `transformers`
with the same logits."""
import pytest
import torch

import llmarch
from llmarch.interop import from_hf, to_hf

transformers = pytest.importorskip("transformers")

COMMON = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96)
FALCON = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_hidden_size=96)
CASES = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=128)),
    "llama-gqa": ("LlamaConfig", "LlamaForCausalLM", dict(COMMON, num_key_value_heads=2, rope_theta=5e5)),
    "llama-linear": ("LlamaConfig", "LlamaForCausalLM",
                     dict(COMMON, rope_scaling={"rope_type": "linear", "factor": 4.0})),
    "llama-dynamic": ("LlamaConfig", "LlamaForCausalLM",
                      dict(COMMON, max_position_embeddings=16, rope_scaling={"rope_type": "dynamic", "factor": 4.0})),
    "llama3": ("LlamaConfig", "LlamaForCausalLM",
               dict(COMMON, num_key_value_heads=1, rope_theta=5e5, max_position_embeddings=64,
                    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
    # prompts of 13-20 tokens + 32 generated: longer than the window in prefill and in decoding
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(COMMON, num_key_value_heads=2, sliding_window=8)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(COMMON, num_key_value_heads=2)),
    "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(COMMON, num_key_value_heads=1, head_dim=32)),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM", dict(COMMON, max_position_embeddings=128)),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM",
                dict(COMMON, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2)),
    # layer 0 dense (intermediate_size), layer 1 a mixture (moe_intermediate_size); raw top-k weights
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                  dict(COMMON, num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                       decoder_sparse_step=2, norm_topk_prob=False, head_dim=24)),
    "qwen3_moe-renormalised": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM",
                               dict(COMMON, num_key_value_heads=1, num_experts=4, num_experts_per_tok=3,
                                    moe_intermediate_size=32, norm_topk_prob=True)),
    "gpt_neox-sequential": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
                            dict(COMMON, use_parallel_residual=False, rotary_pct=0.5)),
    # Falcon's fused query_key_value: [q heads, k, v] (multi_query), per kv-head groups (new architecture),
    # per head (neither); shared norm, two norms (ln_attn, ln_mlp), sequential
    "falcon-7b-style": ("FalconConfig", "FalconForCausalLM",
                        dict(FALCON, multi_query=True, parallel_attn=True, new_decoder_architecture=False,
                             rope_theta=5e5)),
    "falcon-40b-style": ("FalconConfig", "FalconForCausalLM",
                         dict(FALCON, new_decoder_architecture=True, num_kv_heads=2, num_ln_in_parallel_attn=2,
                              bias=True)),
    "falcon2-11b-style": ("FalconConfig", "FalconForCausalLM",
                          dict(FALCON, new_decoder_architecture=True, num_kv_heads=2, num_ln_in_parallel_attn=1)),
    "falcon-sequential": ("FalconConfig", "FalconForCausalLM",
                          dict(FALCON, multi_query=False, parallel_attn=False, bias=True, tie_word_embeddings=False,
                               rope_scaling={"rope_type": "linear", "factor": 2.0})),
    # state-space and hybrid stacks; mamba2's chunk of 8 splits the 20-token prompts into 3 chunks
    "mamba": ("MambaConfig", "MambaForCausalLM", dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, state_size=8)),
    "mamba2": ("Mamba2Config", "Mamba2ForCausalLM",
               dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, state_size=8, num_heads=8, head_dim=16,
                    n_groups=2, chunk_size=8)),
    # attention on layers 1 and 3, experts on layers 1 and 3, Mamba (with dt/B/C norms) and dense FFNs elsewhere
    "jamba": ("JambaConfig", "JambaForCausalLM",
              dict(COMMON, num_hidden_layers=4, num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                   attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1,
                   mamba_d_state=8, max_position_embeddings=256)),
}
NO_POSITION_IDS = ("mamba", "mamba2")


def build_hf(case, tmp_path):
    conf_cls, model_cls, kwargs = CASES[case]
    torch.manual_seed(0)
    hf = getattr(transformers, model_cls)(getattr(transformers, conf_cls)(**kwargs)).eval()
    with torch.no_grad():  # random non-trivial norm gains and biases, so a swapped one cannot hide
        for name, p in hf.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
            if name.endswith("feed_forward.router.weight"):  # 0.02 init: near-uniform routing would hide swaps
                p.mul_(20.0)
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp_path / "hf")
    return hf


def padded_batch(vocab, lengths=(20, 13)):
    T = max(lengths)
    ids = torch.randint(0, vocab, (len(lengths), T))
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, T - n:] = 1
    return ids, mask


def hf_logits(hf, ids, mask):
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    kw = {} if hf.config.model_type in NO_POSITION_IDS else {"position_ids": pos}
    with torch.no_grad():
        return hf(ids, attention_mask=mask, **kw).logits


def assert_close_on_real_tokens(a, b, mask):
    real = mask.bool()
    assert (a[real] - b[real]).abs().max().item() <= 1e-4


def assert_matches_transformers(hf, ours, exported: str, tmp_path):
    """The checks every family's parity test makes: logits on a left-padded batch (fp32, max |dlogit| <= 1e-4 on
    real tokens), 32 greedy tokens equal to `transformers`' generate, and `to_hf` output that transformers'
    class `exported` loads to the same logits. Returns the batch, its mask and the generated ids."""
    ids, mask = padded_batch(ours.config.vocab_size)
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask).logits
    assert_close_on_real_tokens(mine, hf_logits(hf, ids, mask), mask)

    theirs = hf.generate(ids, attention_mask=mask, max_new_tokens=32, do_sample=False, pad_token_id=0)
    generated = llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=32)
    assert torch.equal(generated, theirs)

    to_hf(ours, tmp_path / "out")
    again = getattr(transformers, exported).from_pretrained(tmp_path / "out").eval()
    assert_close_on_real_tokens(hf_logits(again, ids, mask), mine, mask)
    return ids, mask, generated


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_and_round_trip(case, tmp_path):
    hf = build_hf(case, tmp_path)
    assert_matches_transformers(hf, from_hf(tmp_path / "hf"), CASES[case][1], tmp_path)


def test_sharded_checkpoint_written_by_transformers(tmp_path):
    hf = build_hf("llama-gqa", tmp_path)
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="50KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    ours = from_hf(tmp_path / "sharded")
    ids, mask = padded_batch(ours.config.vocab_size)
    with torch.no_grad():
        assert_close_on_real_tokens(ours(ids, attention_mask=mask).logits, hf_logits(hf, ids, mask), mask)
