"""GGUF `bitnet` (interop/gguf_archs/bitnet.py) is refused both ways, in one line: llama.cpp 0.3.36's bitnet graph
gates its FFN by SiLU (it reads no hidden_activation for bitnet), BitNet b1.58 and llmarch's family by squared ReLU.
The test that found it is kept: a tiny BitNet's weights written as a bitnet file by hand decode in llama.cpp to the
tokens of llmarch's same weights with a SiLU-gated FFN, and not to the BitNet's."""
import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

from conftest import llama_cpp_against

gguf = pytest.importorskip("gguf")


def bitnet():
    from llmarch.interop.hf import hf_model_config

    torch.manual_seed(0)
    cfg = hf_model_config(dict(model_type="bitnet", vocab_size=272, hidden_size=64, intermediate_size=96,
                               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                               tie_word_embeddings=True))
    model = llmarch.build(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def write_by_hand(model, path):
    """The file convert_hf_to_gguf.py's BitnetModel would write from full-precision weights: LLaMA's keys under
    bitnet.*, q and k unpermuted, the sub-norms as attn_sub_norm / ffn_sub_norm, no output tensor."""
    from llmarch.interop.gguf_tokenizer import write_tokenizer
    from llmarch.interop.gguf_writer import _writer_class

    cfg = model.config
    w = _writer_class()(str(path), "bitnet")
    for add, value in [(w.add_block_count, cfg.n_layers), (w.add_context_length, cfg.context_length),
                       (w.add_embedding_length, cfg.d_model), (w.add_feed_forward_length, cfg.ffn_hidden),
                       (w.add_head_count, cfg.n_heads), (w.add_head_count_kv, cfg.n_kv_heads),
                       (w.add_layer_norm_rms_eps, cfg.norm_eps), (w.add_rope_freq_base, cfg.rope_theta),
                       (w.add_rope_dimension_count, cfg.head_dim)]:
        add(value)
    write_tokenizer(w, ByteTokenizer(), cfg.vocab_size)
    d, kv = cfg.d_model, cfg.n_kv_heads * cfg.head_dim
    tensors = {"token_embd.weight": model.embed.weight, "output_norm.weight": model.ln_final.weight}
    for i, b in enumerate(model.blocks):
        q, k, v = b.attn.qkv_proj.weight.split([d, kv, kv])
        gate, up = b.mlp.gate_up.weight.chunk(2)
        tensors.update({f"blk.{i}.attn_norm.weight": b.ln1.weight, f"blk.{i}.attn_q.weight": q,
                        f"blk.{i}.attn_k.weight": k, f"blk.{i}.attn_v.weight": v,
                        f"blk.{i}.attn_sub_norm.weight": b.attn.sub_norm.weight,
                        f"blk.{i}.attn_output.weight": b.attn.o_proj.weight, f"blk.{i}.ffn_norm.weight": b.ln2.weight,
                        f"blk.{i}.ffn_gate.weight": gate, f"blk.{i}.ffn_up.weight": up,
                        f"blk.{i}.ffn_sub_norm.weight": b.mlp.sub_norm.weight,
                        f"blk.{i}.ffn_down.weight": b.mlp.down.weight})
    for name, t in tensors.items():
        w.add_tensor(name, np.ascontiguousarray(t.detach().float().numpy()))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_bitnet_is_refused_both_ways_and_llama_cpp_gates_by_silu(tmp_path):
    model = bitnet()
    with pytest.raises(LlmarchError, match="SiLU") as e:
        to_gguf(model, tmp_path / "x.gguf", "f32", ByteTokenizer())
    assert "\n" not in str(e.value) and not (tmp_path / "x.gguf").exists()
    write_by_hand(model, tmp_path / "x.gguf")
    with pytest.raises(LlmarchError, match="squared ReLU"):
        llmarch.from_gguf(tmp_path / "x.gguf")
    silu = llmarch.build(model.config.replace(ffn="swiglu")).eval()
    silu.load_state_dict(model.state_dict())
    prompt = torch.randint(0, 256, (8,)).tolist()
    seq, ours, diff = llama_cpp_against(tmp_path / "x.gguf", silu, prompt, exact=True)
    assert seq == ours and diff <= 1e-5
    assert llama_cpp_against(tmp_path / "x.gguf", model, prompt, exact=True)[2] > 1e-2
