"""RWKV-7 (mixers "rwkv7" and "rwkv7_channel", layers/rwkv7.py; family rwkv7, GGUF rwkv7). transformers has no
RWKV-7, so the reference is llama.cpp (llama-cpp-python 0.3.36): a tiny random llmarch RWKV-7 (every LoRA drawn,
every 1-D parameter moved off its init) written by to_gguf in F32 decodes in llama.cpp to llmarch's greedy tokens,
llama.cpp's logits within 1e-4 of llmarch's at every position, token by token and for the whole prompt in one batch
(measured 3e-7); the file reads back to the same logits, and so does a file laid out as the converter writes one;
an F16 file decodes too. Besides: the chunked form equals the recurrence, cached decoding equals the whole forward,
a left-padded row equals the row alone, the rwkv7 table's to_hf round trip, what the table cannot hold refused, and
rwkv7-tiny trains. ARWKV-7 (family arwkv7, GGUF arwkv7: the same time mixing in Qwen2.5's blocks), with and without
its output gate and group norm, the same way through llama.cpp (measured 1.3e-6 and 4e-7). Heads of 64: llama.cpp's
CPU WKV7 kernel steps through a head in SIMD strides of up to 64 channels, and on this machine (AVX-512) gave wrong
outputs for heads of 16 (measured: 0.05 logits apart)."""
import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.interop.gguf_writer import to_gguf

from conftest import (assert_cached_equals_whole, gguf_reads_back, llama_cpp_against, llama_cpp_prompt_logits,
                      perturbed)
from test_recurrent import assert_left_padding_kept_out

SHAPE = dict(vocab_size=272, d_model=128, n_heads=2, head_dim=64, ffn_hidden=256, n_layers=4,
             layer_types=["time_mix", "channel_mix"] * 2, context_length=128)


def tiny_rwkv7(**changes):
    torch.manual_seed(0)
    model = llmarch.build("rwkv7-tiny", **{**SHAPE, **changes})
    with torch.no_grad():  # the LoRAs drawn large enough that decay, learning rate, value gate and gate vary
        for name, p in model.named_parameters():
            if p.dim() == 2 and name.rsplit(".", 2)[-2] in ("w1", "w2", "a1", "a2", "v1", "v2", "g1", "g2"):
                p.normal_(0.0, 0.3)
    return perturbed(model)


@pytest.fixture(scope="module")
def rwkv7(tmp_path_factory):
    model = tiny_rwkv7()
    path = tmp_path_factory.mktemp("rwkv7") / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    return model, path


def test_layout(rwkv7):
    cfg = rwkv7[0].config
    assert [cfg.layer_mixer(i) for i in range(4)] == ["rwkv7", "rwkv7_channel"] * 2
    blocks = rwkv7[0].blocks
    assert not hasattr(blocks[0].mixer, "v0") and blocks[2].mixer.v1.weight.shape == (32, 128)  # v_first's layer


def test_gguf_decodes_in_llama_cpp(rwkv7):
    import gguf

    model, path = rwkv7
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == "rwkv7"
    assert reader.fields["rwkv7.wkv.head_size"].contents() == 64
    back = gguf_reads_back(path, model, vocab=272, exact=True)
    assert back.config.hf_model_type == "rwkv7" and back.config.layer_types == model.config.layer_types


def test_f16_file_keeps_the_lerps_f32(rwkv7, tmp_path):
    """An F16 file (the token-shift lerps and decay LoRA kept F32, as the converter keeps them: llama.cpp's lerp
    aborts on an F16 one, measured) decodes in llama.cpp to llmarch's tokens on the same file (measured 1.8e-4)."""
    import gguf

    path = tmp_path / "x.gguf"
    to_gguf(rwkv7[0], path, "f16", ByteTokenizer())
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}
    assert (types["blk.0.time_mix_lerp_fused.weight"], types["blk.0.time_mix_key.weight"]) == ("F32", "F16")
    seq, ours, diff = llama_cpp_against(path, llmarch.from_gguf(path), [3, 141, 59, 26, 5, 35], exact=True)
    assert seq == ours and diff <= 1e-3


def write_like_the_converter(folder, path) -> None:
    """convert_hf_to_gguf.py's Rwkv7Model on the rwkv7 table's checkpoint in `folder`: its keys (no
    token_shift_count, a context of 2^20), tensors squeezed and renamed by the name map, the lerps stacked, the
    LoRAs transposed, layer 0's v0 v1 v2 copies of its a0 a1 a2; with llmarch's byte vocabulary."""
    import json

    import gguf
    from safetensors.torch import load_file

    from llmarch.interop.gguf_writer import _writer_class
    from llmarch.interop.gguf_tokenizer import write_tokenizer

    hf = json.loads((folder / "config.json").read_text())
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.RWKV7, hf["num_hidden_layers"])
    w = _writer_class()(str(path), "rwkv7")
    write_tokenizer(w, ByteTokenizer(), hf["vocab_size"])
    w.add_context_length(1048576)
    w.add_embedding_length(hf["hidden_size"])
    w.add_block_count(hf["num_hidden_layers"])
    w.add_layer_norm_eps(hf["layer_norm_epsilon"])
    w.add_wkv_head_size(hf["head_size"])
    w.add_decay_lora_rank(hf["lora_rank_decay"])
    w.add_iclr_lora_rank(hf["lora_rank_iclr"])
    w.add_value_residual_mix_lora_rank(hf["lora_rank_value_residual_mix"])
    w.add_gate_lora_rank(hf["lora_rank_gate"])
    w.add_feed_forward_length(hf["intermediate_size"])
    w.add_head_count(0)
    for name, t in load_file(str(folder / "model.safetensors")).items():
        if name.endswith("attention.x_x.weight"):
            w.add_tensor(f"blk.{name.split('.')[2]}.time_mix_lerp_fused.weight", t.reshape(6, 1, 1, -1).numpy())
            continue
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        t = t.squeeze()
        if any(new.endswith(f"time_mix_{p}.weight") for p in ("w1", "w2", "a1", "a2", "v1", "v2", "g1", "g2")):
            t = t.t().contiguous()
        if new.startswith("blk.0.time_mix_a"):
            w.add_tensor(new.replace("time_mix_a", "time_mix_v"), t.numpy())
        w.add_tensor(new, t.numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_a_converter_style_file_reads(rwkv7, tmp_path):
    """A file laid out as the converter writes one (layer 0's v0 v1 v2 copies of a0 a1 a2, which llmarch does not
    read) reads to the model's logits, and llama.cpp decodes it to the same tokens."""
    model = rwkv7[0]
    llmarch.to_hf(model, tmp_path / "hf")
    write_like_the_converter(tmp_path / "hf", tmp_path / "x.gguf")
    back = gguf_reads_back(tmp_path / "x.gguf", model, vocab=272, exact=True)
    assert back.config.context_length == 1048576


def test_llama_cpp_whole_prompt_logits(rwkv7):
    """llama.cpp's logits for every position of a 12-token prompt decoded in one batch (its multi-token WKV7 path)."""
    assert_prompt_logits_are_llama_cpps(*rwkv7)


def assert_prompt_logits_are_llama_cpps(model, path):
    """A 12-token prompt's logits at every position, within 1e-4 of llama.cpp's on the same file (RWKV-6's, -7's)."""
    prompt = [3, 141, 59, 26, 5, 35, 89, 79, 32, 38, 46, 26]
    theirs = llama_cpp_prompt_logits(path, prompt, 272)
    with torch.no_grad():
        ours = model(torch.tensor([prompt])).logits[0].numpy()
    assert np.abs(theirs - ours).max() <= 1e-4


def test_cached_decoding_and_left_padding(rwkv7):
    assert_cached_and_padded(rwkv7[0])


def assert_cached_and_padded(model):
    """Cached decoding of a left-padded pair of rows equals the whole forward, and padding never reaches the state."""
    torch.manual_seed(2)
    ids = torch.randint(1, 272, (2, 16))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    assert_cached_equals_whole(model, ids, 7, mask)
    assert_left_padding_kept_out(model)


def test_to_hf_round_trip(rwkv7, tmp_path):
    model = rwkv7[0]
    llmarch.to_hf(model, tmp_path)
    back = llmarch.from_hf(tmp_path)
    ids = torch.randint(0, 272, (1, 10))
    with torch.no_grad():
        assert (back(ids).logits - model(ids).logits).abs().max() <= 1e-6
    assert back.config.to_dict() == {**model.config.to_dict(), "name": back.config.name}


@pytest.mark.parametrize("changes, problem", [
    (dict(rwkv7_group_norm_eps=1e-5), "rwkv7_group_norm_eps=0.00064"),
    (dict(layer_types=["time_mix", "time_mix", "channel_mix", "channel_mix"]), "alternating"),
])
def test_what_the_table_cannot_hold_is_refused(changes, problem, tmp_path):
    with pytest.raises(llmarch.LlmarchError, match=problem):
        to_gguf(tiny_rwkv7(**changes), tmp_path / "x.gguf", "f32")


def test_chunked_form_equals_the_recurrence():
    """wkv7_chunked (training, prefill) against wkv7 (decoding's one step at a time), from a nonzero state, for chunks
    that split the sequence unevenly, one token each, and one chunk for all."""
    from llmarch.layers.rwkv7 import wkv7, wkv7_chunked

    torch.manual_seed(0)
    r, k, v, kk = (torch.randn(2, 37, 2, 64) for _ in range(4))
    kk = torch.nn.functional.normalize(kk, dim=-1)
    logw, a = -0.6065 * torch.rand(2, 37, 2, 64), torch.rand(2, 37, 2, 64)
    S0 = torch.randn(2, 2, 64, 64)
    y, S = wkv7(r, logw.exp(), k, v, kk, a, S0)
    for chunk in (1, 5, 16, 64):
        y_c, S_c = wkv7_chunked(r, logw, k, v, kk, a, S0, chunk)
        assert (y_c - y).abs().max() <= 1e-6 * y.abs().max() * 64 and (S_c - S).abs().max() <= 1e-4


def test_bad_shapes_are_refused():
    with pytest.raises(llmarch.LlmarchError, match="n_heads x head_dim = d_model"):
        llmarch.build("rwkv7-tiny", d_model=96)
    with pytest.raises(llmarch.LlmarchError, match="rwkv7_gate_rank must be a positive"):
        llmarch.build("rwkv7-tiny", rwkv7_gate_rank=0)
    with pytest.raises(llmarch.LlmarchError, match="at most 128"):
        llmarch.build("rwkv7-tiny", ssm_chunk=256)


def test_rwkv7_tiny_trains():
    """rwkv7-tiny's parts (shrunk to one layer of 32) learn a repeated sequence: the loss halves in 20 steps."""
    torch.manual_seed(0)
    model = llmarch.build("rwkv7-tiny", vocab_size=32, d_model=32, n_heads=1, head_dim=32, ffn_hidden=64, n_layers=2,
                          layer_types=["time_mix", "channel_mix"])
    ids = torch.randint(0, 32, (2, 6)).repeat(1, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        logits = model(ids[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 32), ids[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2


ARWKV = dict(vocab_size=272, d_model=128, n_heads=2, head_dim=64, n_kv_heads=2, ffn_hidden=256, n_layers=2,
             mixer="rwkv7", positions="none", hf_model_type="arwkv7", context_length=128)


@pytest.mark.parametrize("gate", [True, False])
def test_arwkv7_gguf_and_round_trip(gate, tmp_path):
    """With the output gate and the group norm, and with neither (ARWKV's wkv_has_gate: false, no ln_x)."""
    import gguf

    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", **ARWKV, rwkv7_gate=gate, rwkv7_group_norm=gate)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and name.rsplit(".", 2)[-2] in ("w1", "w2", "a1", "a2", "v1", "v2", "g1", "g2"):
                p.normal_(0.0, 0.3)
    perturbed(model)
    to_gguf(model, tmp_path / "x.gguf", "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(tmp_path / "x.gguf"))
    assert reader.fields["general.architecture"].contents() == "arwkv7"
    assert ("blk.0.time_mix_g1.weight" in {t.name for t in reader.tensors}) == gate
    back = gguf_reads_back(tmp_path / "x.gguf", model, vocab=272, exact=True)
    assert (back.config.rwkv7_gate, back.config.rwkv7_group_norm) == (gate, gate)
    llmarch.to_hf(model, tmp_path / "hf")
    ids = torch.randint(0, 272, (1, 10))
    with torch.no_grad():
        assert (llmarch.from_hf(tmp_path / "hf")(ids).logits - model(ids).logits).abs().max() <= 1e-6


def test_arwkv7_refuses_positions(tmp_path):
    model = llmarch.build("llama-tiny", **{**ARWKV, "positions": "rope"})
    with pytest.raises(llmarch.LlmarchError, match="positions='none'"):
        llmarch.to_hf(model, tmp_path)
