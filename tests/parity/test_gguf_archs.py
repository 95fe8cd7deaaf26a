"""GGUF architectures beyond llama/qwen2: a tiny random `transformers` Qwen3, Gemma 2, Gemma 3 (text) and Phi-3
written as GGUF the way llama.cpp's convert_hf_to_gguf.py writes them (its metadata keys, tensor names from
the gguf package's map, Gemma's norms stored as 1 + g, Phi-3's fused qkv and gate_up kept fused, LongRoPE
factors as tensors), loaded with llmarch.from_gguf: logits equal transformers' (fp32, max |dlogit| <= 1e-4)."""
import math

import numpy as np
import pytest
import torch

import llmarch

from test_hf_families import COMMON, assert_close_on_real_tokens, hf_logits, padded_batch

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

GEMMA = dict(vocab_size=128, hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
             intermediate_size=96, sliding_window=6, query_pre_attn_scalar=16)
LONGROPE = {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.0 + 0.1 * i for i in range(8)],
            "long_factor": [1.0 + 0.5 * i for i in range(8)]}
CASES = {
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(COMMON, num_key_value_heads=2, head_dim=24)),
    # sliding layers 0 and 2 over 6 keys, both caps low enough to bite
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM",
               dict(GEMMA, num_hidden_layers=4, attn_logit_softcapping=2.0, final_logit_softcapping=3.0)),
    # llama.cpp's pattern: five sliding layers (local RoPE base 10k), then a full one (1M, linear scaling 8)
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM",
               dict(GEMMA, num_hidden_layers=6, final_logit_softcapping=3.0,
                    rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                                     "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(COMMON, num_key_value_heads=2, pad_token_id=0,
                                                   partial_rotary_factor=0.5)),
    # 24 positions pretrained, 96 reached: the 30-token prompt takes the long factors, the 13-token one the short
    "phi3-longrope": ("Phi3Config", "Phi3ForCausalLM",
                      dict(COMMON, pad_token_id=0, max_position_embeddings=96, original_max_position_embeddings=24,
                           rope_parameters=LONGROPE)),
}


def build(case, amplify=True, **changes):
    conf_cls, model_cls, kwargs = CASES[case]
    torch.manual_seed(0)
    hf = getattr(transformers, model_cls)(getattr(transformers, conf_cls)(**{**kwargs, **changes})).eval()
    with torch.no_grad():  # non-trivial norm gains; scores and logits large enough for Gemma's caps to bite
        for name, p in hf.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
            elif amplify and case.startswith("gemma") and name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(10.0)
            elif amplify and case.startswith("gemma") and name.endswith("embed_tokens.weight"):
                p.mul_(20.0)
    return hf


def _rope(c) -> dict:
    params = c.rope_parameters
    return params.get("full_attention", params)


def write_like_llama_cpp(hf, path, arch: str, vocab=None) -> None:
    """convert_hf_to_gguf.py's Qwen3Model, Gemma2Model, Gemma3Model and Phi3MiniModel, as far as these configs
    need: set_gguf_parameters' keys, modify_tensors' changes (Gemma: + 1 on every norm.weight, no lm_head).
    vocab: a function that adds a vocabulary's metadata to the writer (llama.cpp will not load a file without)."""
    c = hf.config
    w = gguf.GGUFWriter(str(path), arch)
    if vocab is not None:
        vocab(w)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    rope = _rope(c)
    if arch in ("qwen3", "gemma2", "gemma3"):
        w.add_key_length(c.head_dim)
        w.add_value_length(c.head_dim)
    if arch in ("qwen3", "gemma3", "phi3"):
        w.add_rope_freq_base(rope["rope_theta"])
    if arch == "gemma2":
        w.add_attn_logit_softcapping(c.attn_logit_softcapping)
        w.add_final_logit_softcapping(c.final_logit_softcapping)
        w.add_sliding_window(c.sliding_window)
    if arch == "gemma3":
        if rope.get("rope_type") == "linear":
            w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            w.add_rope_scaling_factor(rope["factor"])
        if c.final_logit_softcapping:
            w.add_final_logit_softcapping(c.final_logit_softcapping)
        w.add_sliding_window(c.sliding_window)
    extra = {}
    if arch == "phi3":
        original = rope.get("original_max_position_embeddings", c.max_position_embeddings)
        w.add_rope_scaling_orig_ctx_len(original)
        w.add_rope_dimension_count(int(rope.get("partial_rotary_factor", 1.0) * c.hidden_size) // c.num_attention_heads)
        w.add_sliding_window(c.sliding_window or 0)
        if rope.get("long_factor"):
            scale = c.max_position_embeddings / original
            w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(original)))
            extra = {"rope_factors_long.weight": torch.tensor(rope["long_factor"]),
                     "rope_factors_short.weight": torch.tensor(rope["short_factor"])}
    names = gguf.get_tensor_name_map({v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch], c.num_hidden_layers)
    for name, t in hf.state_dict().items():
        if arch.startswith("gemma") and name == "lm_head.weight":
            continue
        if arch.startswith("gemma") and name.endswith("norm.weight"):
            t = t + 1
        w.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), t.float().numpy())
    for name, t in extra.items():
        w.add_tensor(name, t.float().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("case", sorted(CASES))
def test_llama_cpp_style_gguf_logits_equal_transformers(case, tmp_path):
    hf = build(case)
    write_like_llama_cpp(hf, tmp_path / "tiny.gguf", case.split("-")[0])
    ours = llmarch.from_gguf(tmp_path / "tiny.gguf")
    torch.manual_seed(1)
    ids, mask = padded_batch(128, lengths=(30, 13))
    with torch.no_grad():
        got = ours(ids, attention_mask=mask).logits
    assert_close_on_real_tokens(got, hf_logits(hf, ids, mask), mask)


def _metadata(path) -> dict:
    reader = gguf.GGUFReader(str(path))
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith(("GGUF.", "general."))}


@pytest.mark.parametrize("case", sorted(CASES))
def test_to_gguf_writes_as_llama_cpp_does(case, tmp_path):
    """llmarch's writer on the model it read: every key and tensor llama.cpp's converter wrote, with its value
    (floats to float32), and logits equal (F32) or close (Q8_0, Q4_0; the weights not amplified here)."""
    from llmarch.interop.gguf_writer import to_gguf

    arch = case.split("-")[0]
    write_like_llama_cpp(build(case, amplify=False), tmp_path / "theirs.gguf", arch)
    ours = llmarch.from_gguf(tmp_path / "theirs.gguf")
    torch.manual_seed(1)
    ids, mask = padded_batch(128, lengths=(30, 13))
    real = mask.bool()
    with torch.no_grad():
        want = ours(ids, attention_mask=mask).logits[real]
    spread = {}
    for kind in ("f32", "q8_0", "q4_0"):
        to_gguf(ours, tmp_path / f"{kind}.gguf", kind)
        with torch.no_grad():
            got = llmarch.from_gguf(tmp_path / f"{kind}.gguf")(ids, attention_mask=mask).logits[real]
        spread[kind] = ((got - want).norm() / want.norm()).item()  # relative RMS error of the logits
    theirs, mine = _metadata(tmp_path / "theirs.gguf"), _metadata(tmp_path / "f32.gguf")
    for key, value in theirs.items():
        got = mine.get(key)
        assert got == value if isinstance(value, str) else np.allclose(got, value, rtol=1e-6), (key, got, value)
    names = {t.name for t in gguf.GGUFReader(str(tmp_path / "theirs.gguf")).tensors}
    assert names == {t.name for t in gguf.GGUFReader(str(tmp_path / "f32.gguf")).tensors}
    # relative RMS logit error, measured: Q8_0 0.9-1.2% (Gemma 2.3-3.2%: its post-norms rescale the small
    # random sublayer outputs, noise included), Q4_0 15-19% (Gemma 30-53%) on these random tiny models
    assert spread["f32"] < 1e-6 and spread["q8_0"] < 0.05 and spread["q8_0"] < spread["q4_0"] < 0.7, spread


@pytest.mark.parametrize("kwargs,problem", [
    (dict(GEMMA, num_hidden_layers=2, attn_logit_softcapping=None), "attn_softcap=None"),  # would read as 50
    (dict(GEMMA, num_hidden_layers=2, query_pre_attn_scalar=24), "attn_scale="),  # llama.cpp: 1/sqrt(head_dim)
])
def test_to_gguf_refuses_what_llama_cpp_would_misread(kwargs, problem, tmp_path):
    from llmarch.errors import LlmarchError
    from llmarch.interop.gguf_writer import to_gguf

    torch.manual_seed(0)
    transformers.Gemma2ForCausalLM(transformers.Gemma2Config(**kwargs)).save_pretrained(tmp_path / "hf")
    with pytest.raises(LlmarchError, match=problem):
        to_gguf(llmarch.from_hf(tmp_path / "hf"), tmp_path / "x.gguf", "f16")
    assert not (tmp_path / "x.gguf").exists()


def test_convert_to_gguf_refusal_is_one_line_and_leaves_no_file(tmp_path, capsys):
    from llmarch.checkpoint import save_model
    from llmarch.cli import main
    from llmarch.data.tokenizer import ByteTokenizer

    torch.manual_seed(0)
    hf = transformers.Gemma2ForCausalLM(transformers.Gemma2Config(**{**GEMMA, "vocab_size": 272}, num_hidden_layers=2,
                                                                  final_logit_softcapping=None))
    hf.save_pretrained(tmp_path / "hf")
    save_model(llmarch.from_hf(tmp_path / "hf"), tmp_path / "ckpt")
    ByteTokenizer().save(tmp_path / "ckpt")  # convert --to-gguf refuses a checkpoint without a tokenizer
    capsys.readouterr()
    assert main(["convert", "--to-gguf", str(tmp_path / "ckpt"), "--gguf-type", "q4_0",
                 "--out", str(tmp_path / "x.gguf")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "final_softcap=None" in err, err
    assert not list(tmp_path.glob("*.gguf*"))
