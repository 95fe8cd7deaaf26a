"""RWKV-6 "Finch" (mixer "rwkv6", layers/rwkv6.py, with RWKV-4's channel mix "rwkv_channel"; family rwkv6, GGUF
rwkv6). transformers has no RWKV-6 (the HF checkpoints run remote code), so the reference is llama.cpp
(llama-cpp-python 0.3.36): a tiny random llmarch RWKV-6 (every LoRA drawn, every token shift, decay and bonus moved
off its init, every 1-D parameter perturbed) written by to_gguf in F32 decodes in llama.cpp to llmarch's greedy
tokens, llama.cpp's logits within 1e-4 of llmarch's at every position, token by token and for the whole prompt in one
batch (measured 3e-7); the file reads back to the same logits. Besides: the chunked WKV equals the recurrence,
cached decoding equals the whole forward, a left-padded row equals the row alone, the rwkv6 table's to_hf round
trip, what the table and the GGUF reader cannot hold refused, and rwkv6-tiny trains. QRWKV6 (family and GGUF
rwkv6qwen2: the time mixing without bonus or group norm in Qwen2.5's blocks) the same way through llama.cpp. Heads of
64, as test_rwkv7.py (llama.cpp's CPU WKV kernels step through a head in SIMD strides)."""
import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back, llama_cpp_against, llama_cpp_prompt_logits, perturbed
from test_gguf_older import rewrite
from test_recurrent import assert_left_padding_kept_out
from test_rwkv7 import assert_cached_and_padded, assert_prompt_logits_are_llama_cpps

SHAPE = dict(vocab_size=272, d_model=128, n_heads=2, head_dim=64, ffn_hidden=256, n_layers=4,
             layer_types=["time_mix", "channel_mix"] * 2, context_length=128)
LORAS = ("time_maa_w1", "time_maa_w2", "time_decay_w1", "time_decay_w2")


def tiny_rwkv6(**changes):
    torch.manual_seed(0)
    model = llmarch.build("rwkv6-tiny", **{**SHAPE, **changes})
    with torch.no_grad():  # the LoRAs drawn large enough that the token shifts and decays vary with the input
        for name, p in model.named_parameters():
            last = name.rsplit(".", 1)[-1]
            if last in LORAS:
                p.normal_(0.0, 0.3)
            elif last.startswith("time_"):  # token shifts (both mixers), decay biases, bonuses
                p.add_(torch.randn_like(p) * 0.3)
    return perturbed(model)


@pytest.fixture(scope="module")
def rwkv6(tmp_path_factory):
    model = tiny_rwkv6()
    path = tmp_path_factory.mktemp("rwkv6") / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    return model, path


def test_gguf_decodes_in_llama_cpp(rwkv6):
    import gguf

    model, path = rwkv6
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == "rwkv6"
    assert [reader.fields[f"rwkv6.{k}"].contents() for k in ("wkv.head_size", "time_mix_extra_dim",
                                                             "time_decay_extra_dim")] == [64, 32, 64]
    back = gguf_reads_back(path, model, vocab=272, exact=True)
    assert back.config.hf_model_type == "rwkv6" and back.config.layer_types == model.config.layer_types


def test_the_file_is_laid_out_as_the_converter_writes_it(rwkv6):
    """Rwkv6Model's layout: the five lerps as time_mix_lerp_fused (5, 1, 1, d) in the order w k v r g, time_maa_w1
    and the decay LoRA transposed, time_maa_w2 as (5, d, R), vectors squeezed; the HF names without .weight given it."""
    import gguf

    model, path = rwkv6
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    shapes = {n[6:]: tuple(int(d) for d in reversed(t.shape)) for n, t in tensors.items() if n.startswith("blk.1.")}
    assert {k: shapes[k] for k in ("time_mix_lerp_fused.weight", "time_mix_w1.weight", "time_mix_w2.weight",
                                   "time_mix_decay_w1.weight", "time_mix_lerp_x.weight", "channel_mix_lerp_k.weight",
                                   "time_mix_first.weight")} == {
        "time_mix_lerp_fused.weight": (5, 1, 1, 128), "time_mix_w1.weight": (160, 128),
        "time_mix_w2.weight": (5, 128, 32), "time_mix_decay_w1.weight": (64, 128), "time_mix_lerp_x.weight": (128,),
        "channel_mix_lerp_k.weight": (128,), "time_mix_first.weight": (2, 64)}
    mixer = model.blocks[2].mixer
    fused = np.array(tensors["blk.1.time_mix_lerp_fused.weight"].data).reshape(5, 128)
    assert np.array_equal(fused[3], mixer.time_maa_r.detach().reshape(-1).numpy())


def test_unfused_lerps_and_f16_read(rwkv6, tmp_path):
    """A file with the lerps unfused (time_mix_lerp_w ... g: llama.cpp's older form, which it still reads) reads to
    the model's logits and decodes in llama.cpp to its tokens; an F16 file (lerps, w1, w2, bonus and decay LoRA kept
    F32, as the converter keeps them) decodes in llama.cpp to llmarch's tokens on the same file (measured 2.2e-4)."""
    def unfused(tensors):
        out = {}
        for name, array in tensors.items():
            if name.endswith("time_mix_lerp_fused.weight"):
                for letter, row in zip("wkvrg", array.reshape(5, -1)):
                    out[name.replace("lerp_fused", f"lerp_{letter}")] = row.copy()
            else:
                out[name] = array
        return out

    model, path = rwkv6
    rewrite(path, tmp_path / "unfused.gguf", "rwkv6", tensors=unfused)
    gguf_reads_back(tmp_path / "unfused.gguf", model, vocab=272, exact=True)
    to_gguf(model, tmp_path / "f16.gguf", "f16", ByteTokenizer())
    seq, ours, diff = llama_cpp_against(tmp_path / "f16.gguf", llmarch.from_gguf(tmp_path / "f16.gguf"),
                                        [3, 141, 59, 26, 5, 35], exact=True)
    assert seq == ours and diff <= 1e-3


def test_llama_cpp_whole_prompt_logits(rwkv6):
    """llama.cpp's logits for every position of a 12-token prompt decoded in one batch (its multi-token WKV6 path)."""
    assert_prompt_logits_are_llama_cpps(*rwkv6)


def test_cached_decoding_and_left_padding(rwkv6):
    assert_cached_and_padded(rwkv6[0])


def test_to_hf_round_trip(rwkv6, tmp_path):
    """The table's layout: HF's (1, 1, d) token shifts, the channel mix's as 1 - RWKV-4's mu."""
    from safetensors.torch import load_file

    model = rwkv6[0]
    llmarch.to_hf(model, tmp_path)
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert stored["rwkv.blocks.1.attention.time_maa_w2"].shape == (5, 32, 128)
    assert torch.equal(stored["rwkv.blocks.0.feed_forward.time_maa_k"], 1 - model.blocks[1].mixer.time_mix_key)
    back = llmarch.from_hf(tmp_path)
    ids = torch.randint(0, 272, (1, 10))
    with torch.no_grad():
        assert (back(ids).logits - model(ids).logits).abs().max() <= 1e-6
    assert back.config.to_dict() == {**model.config.to_dict(), "name": back.config.name}


def test_a_finch_checkpoint_reads_and_decodes_in_llama_cpp(rwkv6, tmp_path):
    """HF -> llmarch -> GGUF -> llama.cpp, the only check the HF layout has (no transformers reference): the
    checkpoint's config.json as the RWKV/v6-Finch-*-HF ones have it (remote code, rescale_every 6, which the HF code
    applies only in fp16 and bf16, so not in fp32), read to the model's logits and written as GGUF that llama.cpp
    decodes to llmarch's greedy tokens."""
    import json

    model = rwkv6[0]
    llmarch.to_hf(model, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    config.update(rescale_every=6, bos_token_id=0, eos_token_id=0, use_cache=True, auto_map={
        "AutoConfig": "configuration_rwkv6.Rwkv6Config", "AutoModelForCausalLM": "modeling_rwkv6.Rwkv6ForCausalLM"})
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    read = llmarch.from_hf(tmp_path / "hf")
    to_gguf(read, tmp_path / "x.gguf", "f32", ByteTokenizer())
    gguf_reads_back(tmp_path / "x.gguf", model, vocab=272, exact=True)


def test_chunked_form_equals_the_recurrence():
    """wkv6_chunked against the recurrence y_t = r_t (diag(u) k_t^T v_t + S_{t-1}), S_t = diag(w_t) S_{t-1} + k_t^T v_t,
    from a nonzero state, with decays down to e^{-e^4} a step, for chunks that split the sequence unevenly, one
    token each, and one chunk for all."""
    from llmarch.layers.rwkv6 import wkv6_chunked

    torch.manual_seed(0)
    r, k, v = (torch.randn(2, 37, 2, 16) for _ in range(3))
    logw, u, S = -torch.exp(2 * torch.randn(2, 37, 2, 16)), torch.randn(2, 16), torch.randn(2, 2, 16, 16)
    S0, ys = S, []
    for t in range(37):
        kv = k[:, t, :, :, None] * v[:, t, :, None, :]
        ys.append((r[:, t, :, :, None] * (u[:, :, None] * kv + S)).sum(-2))
        S = S * logw[:, t].exp()[..., None] + kv
    y = torch.stack(ys, dim=1)
    for chunk in (1, 5, 16, 64):
        y_c, S_c = wkv6_chunked(r, logw, k, v, u, S0, chunk)
        assert (y_c - y).abs().max() <= 1e-5 * y.abs().max() and (S_c - S).abs().max() <= 1e-4


def test_refusals(rwkv6, tmp_path):
    with pytest.raises(llmarch.LlmarchError, match="n_heads x head_dim = d_model"):
        llmarch.build("rwkv6-tiny", d_model=96)
    with pytest.raises(llmarch.LlmarchError, match="rwkv6_mix_rank must be a positive"):
        llmarch.build("rwkv6-tiny", rwkv6_mix_rank=0)
    with pytest.raises(llmarch.LlmarchError, match="final norm eps of 1e-05"):
        llmarch.to_hf(llmarch.build("rwkv6-tiny", **SHAPE, norm_eps=1e-6), tmp_path / "eps")
    with pytest.raises(llmarch.LlmarchError, match="alternating"):
        llmarch.to_hf(llmarch.build("rwkv6-tiny", **{**SHAPE, "layer_types": ["time_mix"] * 2 + ["channel_mix"] * 2}),
                      tmp_path / "order")
    rewrite(rwkv6[1], tmp_path / "eps.gguf", "rwkv6",
            keys=lambda k, v: 1e-6 if k == "rwkv6.attention.layer_norm_epsilon" else v)
    with pytest.raises(llmarch.LlmarchError, match="layer_norm_epsilon 9.99.*e-07 is not supported"):
        llmarch.from_gguf(tmp_path / "eps.gguf")


def test_rwkv6_tiny_trains():
    """rwkv6-tiny's parts (shrunk to one layer of 32) learn a repeated sequence: the loss halves in 20 steps."""
    torch.manual_seed(0)
    model = llmarch.build("rwkv6-tiny", vocab_size=32, d_model=32, n_heads=1, head_dim=32, ffn_hidden=64, n_layers=2,
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


QRWKV = dict(vocab_size=272, head_dim=64, ffn_hidden=256, n_layers=2, mixer="rwkv6",
             rwkv6_qrwkv=True, positions="none", bias=False, hf_model_type="rwkv6qwen2", context_length=128,
             ssm_chunk=16)


@pytest.mark.parametrize("heads, kv_heads, qkv_bias", [(4, 2, True), (2, 2, False)])
def test_qrwkv6_gguf_and_round_trip(heads, kv_heads, qkv_bias, tmp_path):
    """QRWKV6 (family rwkv6qwen2, GGUF rwkv6qwen2: RWKV-6's time mixing without bonus or group norm in Qwen2.5's
    blocks), four heads sharing two key/value heads (so that repeating them in the wrong order shows) with q/k/v
    biases, and two heads of their own without: llama.cpp decodes the F32 file to llmarch's greedy tokens, its logits
    at every position of a prompt within 1e-4; the to_hf round trip (the token-shift LoRA's slices stored r k v w g).
    That order only the converter's code tells (its reordering undone here and in the GGUF table alike)."""
    import gguf

    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", **QRWKV, d_model=64 * heads, n_heads=heads, n_kv_heads=kv_heads,
                          qkv_bias=qkv_bias)
    with torch.no_grad():
        for name, p in model.named_parameters():
            last = name.rsplit(".", 1)[-1]
            if last in LORAS:
                p.normal_(0.0, 0.3)
            elif last.startswith("time_"):
                p.add_(torch.randn_like(p) * 0.3)
    perturbed(model)
    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path))
    assert reader.fields["general.architecture"].contents() == "rwkv6qwen2"
    assert reader.fields["rwkv6qwen2.attention.head_count_kv"].contents() == kv_heads
    back = gguf_reads_back(path, model, vocab=272, exact=True)
    assert (back.config.n_kv_heads, back.config.qkv_bias) == (kv_heads, qkv_bias)
    prompt = [3, 141, 59, 26, 5, 35, 89, 79, 32, 38, 46, 26]
    with torch.no_grad():
        ours = model(torch.tensor([prompt])).logits[0].numpy()
    assert np.abs(llama_cpp_prompt_logits(path, prompt, 272) - ours).max() <= 1e-4
    llmarch.to_hf(model, tmp_path / "hf")
    ids = torch.randint(0, 272, (1, 10))
    with torch.no_grad():
        assert (llmarch.from_hf(tmp_path / "hf")(ids).logits - model(ids).logits).abs().max() <= 1e-6
    assert_left_padding_kept_out(model)  # with key biases too: a pad's key is zeroed
