"""DiffLlama against transformers, through files: a tiny seeded random model with differential attention (GQA with
4 KV heads, so the values' split along KV heads and the query-head pairing both matter; q/k/v/o biases), its
lambda vectors and norm gains moved off their init, compared on a left-padded batch (fp32, max |dlogit| <= 1e-4),
greedy generation of 32 tokens, cached decoding equal to the full forward, and the to_hf round trip."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf

from conftest import assert_cached_equals_whole
from test_hf_families import assert_close_on_real_tokens, assert_matches_transformers, hf_logits, padded_batch

transformers = pytest.importorskip("transformers")
CONFIG = dict(vocab_size=128, hidden_size=64, num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=4,
              head_dim=16, intermediate_size=96, attention_bias=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diffllama")
    torch.manual_seed(0)
    hf = transformers.DiffLlamaForCausalLM(transformers.DiffLlamaConfig(**CONFIG)).eval()
    with torch.no_grad():  # norm gains, biases and the lambda vectors (N(0, 0.1) at init) moved
        for name, p in hf.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * (0.3 if "lambda" in name else 0.1))
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp / "hf")
    return hf, from_hf(tmp / "hf"), tmp


def test_config(models):
    _, ours, _ = models
    cfg = ours.config
    assert (cfg.attention, cfg.n_kv_heads, cfg.qkv_bias, cfg.o_bias, cfg.bias) == ("differential", 4, True, True,
                                                                                  False)


def test_matches_transformers(models, tmp_path):
    hf, ours, _ = models
    assert_matches_transformers(hf, ours, "DiffLlamaForCausalLM", tmp_path)


def test_eager_kernel_too(models):
    """The eager kernel (which materialises both maps' patterns) gives the same logits as sdpa."""
    hf, ours, _ = models
    eager = llmarch.build(ours.config.replace(attn_impl="eager")).eval()
    eager.load_state_dict(ours.state_dict())
    ids, mask = padded_batch(128)
    with torch.no_grad():
        assert_close_on_real_tokens(eager(ids, attention_mask=mask).logits, hf_logits(hf, ids, mask), mask)


def test_cached_decoding_equals_the_full_forward(models):
    _, ours, _ = models
    ids, mask = padded_batch(128, (24, 17))
    assert_cached_equals_whole(ours, ids, 16, mask)


def test_odd_kv_heads_are_refused():
    with pytest.raises(LlmarchError, match="n_kv_heads must be even"):
        llmarch.build("llama-tiny", n_heads=6, n_kv_heads=3, head_dim=16, attention="differential")
