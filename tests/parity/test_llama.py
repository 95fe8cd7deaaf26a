"""llmarch's LLaMA (RoPE, RMSNorm, SwiGLU, GQA) against transformers' LlamaForCausalLM (fp32, <= 1e-4)."""
import pytest
import torch

import llmarch
from llmarch.interop import export_state, import_state
from llmarch.interop.llama import RULES, hf_config

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_llama_logits_match_transformers(kv_heads):
    torch.manual_seed(0)
    ours = llmarch.build("llama-tiny", n_layers=2, d_model=128, n_heads=4, n_kv_heads=kv_heads, ffn_hidden=256,
                         vocab_size=1000, context_length=64, rope_theta=500000.0).eval()
    cfg = ours.config
    conf = transformers.LlamaConfig(**hf_config(cfg))
    hf = transformers.LlamaForCausalLM(conf).eval()
    hf.load_state_dict(export_state(ours.state_dict(), RULES, cfg), strict=True)
    x = torch.randint(0, 1000, (2, 40))
    mask = torch.ones_like(x)
    mask[1, :9] = 0  # left padding
    with torch.no_grad():
        assert (ours(x).logits - hf(x).logits).abs().max().item() <= 1e-4
        a, b = ours(x, attention_mask=mask).logits, hf(x, attention_mask=mask).logits
    assert (a[0] - b[0]).abs().max().item() <= 1e-4
    assert (a[1, 9:] - b[1, 9:]).abs().max().item() <= 1e-4
    back = import_state(hf.state_dict(), RULES, cfg)  # HF's separate q, k, v fuse back exactly
    assert back.keys() == ours.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in ours.state_dict().items())
