"""Older LLaMA-kin GGUF architectures read as llmarch's LLaMA or Qwen2 (gguf_archs/llama_kin.py): llmarch writes
no model as them, so a tiny random model is written in F32 by `to_gguf` as llama (or qwen2) and that file rewritten
as llama.cpp's converter lays the architecture out (its keys under the architecture's name; for qwen q, k, v fused
as attn_qkv and feed_forward_length doubled). The file reads back by from_gguf to the model's logits (max |dlogit|
<= 1e-4), and llama.cpp (llama-cpp-python, where installed) decodes it greedily to llmarch's tokens with llmarch's
logits: what shows the reader undoes the converter's permuted q and k and fused attn_qkv as llama.cpp reads them.
MiniCPM is read as Granite (a Granite file rewritten), Orion as StableLM, CodeShell as StarCoder2; llama-embed as a
LLaMA with head `embed`, its pooled output compared with llama.cpp's embedding."""
import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import _writer_class, to_gguf
from llmarch.models.build import with_head

from conftest import gguf_reads_back, llama_cpp_embedding, perturbed_from_hf

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

SMALL = dict(vocab_size=272, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=128, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)


def rewrite(src, dst, arch: str, tensors=lambda t: t, keys=lambda k, v: v, drop=(), extra=None) -> None:
    """The file `src` written again as architecture `arch`: its `{old}.*` keys as `{arch}.*` (their values through
    keys(key, value); those named in `drop` left out, as the architecture's converter writes none), its tensors
    (name -> array) through tensors(); `extra` keys (key -> (value, GGUFValueType), an array's with its elements'
    type third) added."""
    reader = gguf.GGUFReader(str(src))
    old = reader.fields["general.architecture"].contents()
    w = _writer_class()(str(dst), arch)  # the byte vocabulary's empty merges list: a writer that packs it
    for key, f in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        # an array's element type; the reader lists none for an empty one (the byte vocabulary's merges, strings)
        sub = (f.types[1:] or [gguf.GGUFValueType.STRING])[0] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        key = arch + key[len(old):] if key.startswith(old + ".") else key
        if key in drop:
            continue
        w.add_key_value(key, keys(key, f.contents()), f.types[0], sub_type=sub)
    for key, (value, kind, *sub) in (extra or {}).items():
        w.add_key_value(key, value, kind, sub_type=(sub or [None])[0])
    for name, array in tensors({t.name: np.array(t.data) for t in reader.tensors}).items():
        w.add_tensor(name, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _llama(tmp_path, **changes):
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**SMALL, **changes}))
    model = perturbed_from_hf(hf, tmp_path / "hf")
    to_gguf(model, tmp_path / "llama.gguf", "f32", ByteTokenizer())
    return model


@pytest.mark.parametrize("arch,changes", [
    ("xverse", {}),  # XVERSE: multi-head attention (the converter's k permutation is LLaMA's only so)
    ("internlm2", dict(num_key_value_heads=2, rope_theta=1e6)),  # InternLM2's grouped keys, a base of 1e6
    ("baichuan", dict(num_hidden_layers=32)),  # Baichuan-7B's 32 layers, RoPE's only count in llama.cpp
    ("nanbeige", dict(num_key_value_heads=2, tie_word_embeddings=True)),  # its layers once (num_loops 1), tied
])
def test_llama_layout(arch, changes, tmp_path):
    model = _llama(tmp_path, **changes)
    rewrite(tmp_path / "llama.gguf", tmp_path / "x.gguf", arch)
    if arch == "nanbeige":  # NanbeigeModel's keys
        _add_keys(tmp_path / "x.gguf", {"nanbeige.num_loops": 1, "nanbeige.skip_loop_final_norm": False})
    # llama.cpp: measured xverse 7.5e-8, internlm2 8.9e-8, baichuan 1.6e-7, nanbeige 1.5e-7 apart
    back = gguf_reads_back(tmp_path / "x.gguf", model)
    assert back.config.hf_model_type == "llama" and back.config.n_kv_heads == model.config.n_kv_heads


def _add_keys(path, keys: dict) -> None:
    """`path` written again with `keys` (int as UINT32, bool) added."""
    tmp = path.with_suffix(".tmp")
    path.rename(tmp)
    values = {k: (v, gguf.GGUFValueType.BOOL if isinstance(v, bool) else gguf.GGUFValueType.UINT32)
              for k, v in keys.items()}
    arch = gguf.GGUFReader(str(tmp)).fields["general.architecture"].contents()
    rewrite(tmp, path, arch, extra=values)
    tmp.unlink()


def test_nanbeige_loops_are_refused(tmp_path):
    _llama(tmp_path)
    rewrite(tmp_path / "llama.gguf", tmp_path / "x.gguf", "nanbeige")
    _add_keys(tmp_path / "x.gguf", {"nanbeige.num_loops": 2})
    with pytest.raises(LlmarchError, match="num_loops > 1"):
        llmarch.from_gguf(tmp_path / "x.gguf")


def test_xverse_with_grouped_keys_is_refused(tmp_path):
    _llama(tmp_path, num_key_value_heads=2)
    rewrite(tmp_path / "llama.gguf", tmp_path / "x.gguf", "xverse")
    with pytest.raises(LlmarchError, match="xverse file with grouped keys"):
        llmarch.from_gguf(tmp_path / "x.gguf")


def test_baichuan_other_than_32_layers_is_refused(tmp_path):
    _llama(tmp_path)
    rewrite(tmp_path / "llama.gguf", tmp_path / "x.gguf", "baichuan")
    with pytest.raises(LlmarchError, match="baichuan with RoPE at 32 layers only"):
        llmarch.from_gguf(tmp_path / "x.gguf")


def _fuse_qkv(tensors: dict) -> dict:
    """Each layer's attn_q, attn_k, attn_v (weight and bias) as one attn_qkv, rows all q | all k | all v, where
    Qwen's c_attn (whose rows are so) is kept whole by QwenModel."""
    out = {}
    for name, array in tensors.items():
        if ".attn_q." in name:
            parts = [tensors[name.replace(".attn_q.", f".attn_{p}.")] for p in "qkv"]
            out[name.replace(".attn_q.", ".attn_qkv.")] = np.concatenate(parts, axis=0)
        elif not (".attn_k." in name or ".attn_v." in name):
            out[name] = array
    return out


def test_qwen(tmp_path):
    torch.manual_seed(0)
    hf = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**SMALL, num_key_value_heads=4))
    model = perturbed_from_hf(hf, tmp_path / "hf")
    to_gguf(model, tmp_path / "qwen2.gguf", "f32", ByteTokenizer())
    rewrite(tmp_path / "qwen2.gguf", tmp_path / "x.gguf", "qwen", _fuse_qkv,
            lambda k, v: 2 * v if k == "qwen.feed_forward_length" else v)
    names = {t.name for t in gguf.GGUFReader(str(tmp_path / "x.gguf")).tensors}
    assert {"blk.0.attn_qkv.weight", "blk.0.attn_qkv.bias"} <= names and "blk.0.attn_q.weight" not in names
    back = gguf_reads_back(tmp_path / "x.gguf", model)  # llama.cpp: measured 1.0e-7 apart
    assert back.config.hf_model_type == "qwen2" and back.config.ffn_hidden == 64


@pytest.mark.parametrize("written", [True, False])
def test_minicpm(written, tmp_path):
    """MiniCPM's three scalars as MiniCPMModel writes them (scale_emb 12, scale_depth 1.4 over sqrt(2) layers,
    hidden_size / dim_model_base with a base of 16), or (none written) llama.cpp's defaults, which are these."""
    torch.manual_seed(0)
    hf = transformers.GraniteForCausalLM(transformers.GraniteConfig(
        **{**SMALL, "tie_word_embeddings": True}, num_key_value_heads=2, attention_multiplier=8 ** -0.5,
        embedding_multiplier=12.0, residual_multiplier=1.4 / 2 ** 0.5, logits_scaling=(32 / 16 if written else 8.0)))
    model = perturbed_from_hf(hf, tmp_path / "hf")
    to_gguf(model, tmp_path / "granite.gguf", "f32", ByteTokenizer())
    scalars = ("embedding_scale", "residual_scale", "logit_scale")
    rewrite(tmp_path / "granite.gguf", tmp_path / "x.gguf", "minicpm",
            drop={"minicpm.attention.scale", *(() if written else (f"minicpm.{k}" for k in scalars))})
    back = gguf_reads_back(tmp_path / "x.gguf", model)  # llama.cpp: measured 6.0e-8 (written), 1.5e-8 apart
    assert back.config.hf_model_type == "granite" and back.config.tie_embeddings


def test_orion(tmp_path):
    """Orion as OrionModel writes it: no RoPE keys (llama.cpp's base of 10000, every dim of each head), LayerNorm's
    epsilon."""
    torch.manual_seed(0)
    hf = transformers.StableLmForCausalLM(transformers.StableLmConfig(
        **SMALL, num_key_value_heads=2, partial_rotary_factor=1.0, layer_norm_eps=1e-5))
    model = perturbed_from_hf(hf, tmp_path / "hf")
    to_gguf(model, tmp_path / "stablelm.gguf", "f32", ByteTokenizer())
    rewrite(tmp_path / "stablelm.gguf", tmp_path / "x.gguf", "orion",
            drop={"orion.use_parallel_residual", "orion.rope.dimension_count", "orion.rope.freq_base"})
    names = {t.name for t in gguf.GGUFReader(str(tmp_path / "x.gguf")).tensors}
    assert {"blk.0.attn_norm.bias", "blk.0.ffn_norm.bias", "output_norm.bias", "output.weight"} <= names
    back = gguf_reads_back(tmp_path / "x.gguf", model)  # llama.cpp: measured 1.2e-7 apart
    assert back.config.hf_model_type == "stablelm" and back.config.norm == "layernorm"


def test_codeshell(tmp_path):
    """CodeShell as CodeShellModel writes it: c_attn whole as attn_qkv (with its bias), a linear RoPE scaling of
    factor 1, no rope.dimension_count; grouped keys (num_query_groups)."""
    torch.manual_seed(0)
    hf = transformers.Starcoder2ForCausalLM(transformers.Starcoder2Config(
        **{**SMALL, "intermediate_size": 128}, num_key_value_heads=2, use_bias=True, sliding_window=None))
    model = perturbed_from_hf(hf, tmp_path / "hf")
    to_gguf(model, tmp_path / "starcoder2.gguf", "f32", ByteTokenizer())
    linear = {"codeshell.rope.scaling.type": ("linear", gguf.GGUFValueType.STRING),
              "codeshell.rope.scaling.factor": (1.0, gguf.GGUFValueType.FLOAT32)}
    rewrite(tmp_path / "starcoder2.gguf", tmp_path / "x.gguf", "codeshell", _fuse_qkv,
            drop={"codeshell.rope.dimension_count"}, extra=linear)
    names = {t.name for t in gguf.GGUFReader(str(tmp_path / "x.gguf")).tensors}
    assert {"blk.0.attn_qkv.weight", "blk.0.attn_qkv.bias", "blk.0.attn_output.bias"} <= names
    back = gguf_reads_back(tmp_path / "x.gguf", model)  # llama.cpp: measured 2.1e-5 apart (ggml's GELU)
    assert back.config.hf_model_type == "starcoder2" and back.config.n_kv_heads == 2


@pytest.mark.parametrize("causal,pooling", [(False, "mean"), (True, "last")])
def test_llama_embed(causal, pooling, tmp_path):
    """llama-embed as LlamaEmbedNemotronModel writes it (LLaMA's keys, q and k permuted, no head) with a
    pooling_type, and attention.causal false (bidirectional) or (no key) llama.cpp's causal default: read as a
    LLaMA with head `embed`, the same pooled embedding as llmarch's model given that head; llama.cpp embeds the
    tokens it tokenized to it."""
    model = _llama(tmp_path, num_key_value_heads=2, tie_word_embeddings=True)
    extra = {"llama-embed.pooling_type": (["none", "mean", "cls", "last"].index(pooling), gguf.GGUFValueType.UINT32)}
    if not causal:
        extra["llama-embed.attention.causal"] = (False, gguf.GGUFValueType.BOOL)
    rewrite(tmp_path / "llama.gguf", tmp_path / "x.gguf", "llama-embed", extra=extra)
    back = llmarch.from_gguf(tmp_path / "x.gguf")
    assert (back.config.head, back.config.pooling, back.config.causal) == ("embed", pooling, causal)
    embedder = with_head(model, "embed", pooling=pooling, causal=causal).eval()
    tokens, theirs = llama_cpp_embedding(tmp_path / "x.gguf", "Hello, world! The quick brown fox.")
    with torch.no_grad():
        mine = back(torch.tensor([tokens])).logits[0]
        assert (mine - embedder(torch.tensor([tokens])).logits[0]).abs().max() <= 1e-5
    # llama.cpp: measured 1.7e-7 (bidirectional, mean), 3.6e-7 (causal, last) apart
    assert len(tokens) == 34 and theirs.shape == (32,) and np.abs(theirs - mine.numpy()).max() <= 1e-4
