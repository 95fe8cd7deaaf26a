"""transformers' GPT-2 family has no token-type table: given token_type_ids, GPT-2, GPT-Neo, GPT-J, CodeGen,
GPT-BigCode, openai-gpt and CTRL add the token table's rows for them (CTRL's scaled by sqrt(d_model) as its tokens
are). Their checkpoints load with type_ids_from_tokens set, and llmarch's logits with token types follow theirs
(fp32, within 1e-4). Until 2026-12-07 llmarch ignored them for these families, as transformers does only for
models with nothing to read them (a LLaMA, DeBERTa-v3)."""
import pytest
import torch

import llmarch

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

GPT = dict(vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=32)
CASES = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", GPT),
    "gpt_neo": ("GPTNeoConfig", "GPTNeoForCausalLM", dict(vocab_size=96, hidden_size=32, num_layers=2, num_heads=4,
                                                          attention_types=[[["global", "local"], 1]],
                                                          max_position_embeddings=32, window_size=4)),
    "gptj": ("GPTJConfig", "GPTJForCausalLM", dict(GPT, rotary_dim=4)),
    "codegen": ("CodeGenConfig", "CodeGenForCausalLM", dict(GPT, rotary_dim=4)),
    "gpt_bigcode": ("GPTBigCodeConfig", "GPTBigCodeForCausalLM", GPT),
    "openai-gpt": ("OpenAIGPTConfig", "OpenAIGPTLMHeadModel", GPT),
    "ctrl": ("CTRLConfig", "CTRLLMHeadModel", dict(GPT, dff=64)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_token_types_are_added_as_token_rows_as_transformers_does(case, tmp_path):
    conf_cls, model_cls, kwargs = CASES[case]
    torch.manual_seed(0)
    hf = getattr(transformers, model_cls)(getattr(transformers, conf_cls)(**kwargs)).eval()
    hf.save_pretrained(tmp_path)
    ours = llmarch.from_hf(tmp_path).eval()
    assert ours.config.type_ids_from_tokens
    ids = torch.randint(0, 96, (2, 10))
    types = torch.randint(0, 4, (2, 10))
    with torch.no_grad():
        want, got = hf(ids, token_type_ids=types).logits, ours(ids, token_type_ids=types).logits
        assert (got - want).abs().max() < 1e-4
        assert (want - hf(ids).logits).abs().max() > 1e-2  # the types changed transformers' logits
