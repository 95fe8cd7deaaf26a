"""Chameleon's text model (interop/chameleon.py) against transformers, through files: tiny seeded
ChameleonForConditionalGeneration models (a tiny VQ-VAE beside, not read; every norm gain and bias perturbed, the
per-head QK-norms' (H, D) ones included) with pre-norm blocks and biases on q, k, v, o, and with swin_norm (a norm on
each sublayer's output) and a biased MLP; both with image tokens in two ranges of the vocabulary map, whose logits
transformers sets to the dtype's lowest. Logits on a left-padded batch within 1e-4 (fp32), 32 greedy tokens equal to
transformers' (never an image token), cached decoding equal to the whole forward, a to_hf round trip that
transformers loads to the same logits and llmarch to the same config. GGUF `chameleon` (interop/gguf_archs/chameleon.py)
out and in, its image ids 4-8195 (what llama.cpp's graph suppresses): read back to equal logits, and llama.cpp decodes
the F32 file to llmarch's greedy tokens, logits within 1e-4; swin_norm refused both ways (llama.cpp computes it
otherwise)."""
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop import FAMILIES
from llmarch.interop.chameleon import vocabulary_map
from llmarch.interop.gguf_writer import to_gguf

from conftest import assert_cached_decoding_and_config_round_trip, gguf_reads_back, perturbed_from_hf
from test_hf_families import assert_matches_transformers

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

IMAGES = [*range(4, 68), *range(100, 104)]  # two ranges of image ids
VOCAB_MAP = {"<image>": 3, **{f"IMGIMG{chr(ord('A') + i % 10)}{chr(ord('A') + i // 10)}Z": t
                              for i, t in enumerate(IMAGES)}}
VQ = dict(embed_dim=4, num_embeddings=16, latent_channels=4, resolution=32, base_channels=32, channel_multiplier=[1],
          num_res_blocks=1, attn_resolutions=[])
TEXT = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            vq_config=VQ, vocabulary_map=VOCAB_MAP)
CASES = {"pre": dict(TEXT, attention_bias=True),
         "swin": dict(TEXT, swin_norm=True, mlp_bias=True, rms_norm_eps=1e-6,
                      rope_parameters={"rope_type": "default", "rope_theta": 5000.0})}
# llama.cpp's chameleon graph suppresses ids 4-8195 whatever the file says: a vocabulary past them, no biases
GGUF = dict(TEXT, vocab_size=8320, vocabulary_map=vocabulary_map([[4, 8196]]))


def build(case, folder, fields=None):
    torch.manual_seed(0)
    hf = transformers.ChameleonForConditionalGeneration(transformers.ChameleonConfig(**(fields or CASES[case])))
    hf.eval()
    with torch.no_grad():  # the QK-norms' gains and biases are (H, D): perturbed() moves 1-D ones only
        for name, p in hf.named_parameters():
            if "_norm." in name and p.dim() == 2:
                p.add_(torch.randn_like(p) * 0.1)
    ours = perturbed_from_hf(hf, folder)
    hf.generation_config.eos_token_id = None
    return hf, ours


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_generation_cached_decoding_and_round_trip(case, tmp_path):
    hf, ours = build(case, tmp_path / "hf")
    cfg = ours.config
    assert (cfg.hf_model_type, cfg.qk_norm, cfg.qk_norm_kind, cfg.qk_norm_bias) == ("chameleon", "per_head",
                                                                                   "layernorm", True)
    assert cfg.norm_placement == ("res_post" if case == "swin" else "pre")
    assert cfg.suppressed_logits == [[4, 68], [100, 104]]
    ids, mask, generated = assert_matches_transformers(hf, ours, "ChameleonForConditionalGeneration", tmp_path)
    assert not set(generated[:, ids.shape[1]:].flatten().tolist()) & set(IMAGES)
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, tmp_path / "out")


def test_defaults_and_what_cannot_be_written():
    family = FAMILIES["chameleon"]
    cfg = family.to_config({"model_type": "chameleon"})  # ChameleonConfig's defaults: chameleon-7b's text model
    assert (cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.n_kv_heads, cfg.rope_theta, cfg.suppressed_logits) == (
        65536, 4096, 32, 32, 10000.0, None)
    for change in (dict(qk_norm="head"), dict(qk_norm_eps=1e-6), dict(qk_norm_bias=None)):
        with pytest.raises(LlmarchError, match="chameleon cannot express"):
            family.from_config(cfg.replace(**change))
    with pytest.raises(LlmarchError, match="suppressed_logits"):
        llmarch.build("llama-tiny", vocab_size=64, suppressed_logits=[[60, 65]])


def test_gguf_round_trip_and_llama_cpp(tmp_path):
    gguf = pytest.importorskip("gguf")
    _, ours = build(None, tmp_path / "hf", GGUF)
    path = tmp_path / "x.gguf"
    to_gguf(ours, path, "f32", ByteTokenizer())
    reader = gguf.GGUFReader(str(path), "r+")
    assert (reader.fields["general.architecture"].contents(), reader.fields["chameleon.swin_norm"].contents()) == (
        "chameleon", False)
    back = gguf_reads_back(path, ours)
    fields = ("hf_model_type", "norm_placement", "qk_norm", "qk_norm_kind", "qk_norm_eps", "qk_norm_bias",
              "suppressed_logits", "n_kv_heads")
    assert [getattr(back.config, f) for f in fields] == [getattr(ours.config, f) for f in fields]
    reader.fields["chameleon.swin_norm"].parts[-1][0] = True  # llama.cpp's swin_norm is not transformers'
    del reader
    with pytest.raises(LlmarchError, match="swin_norm is not read"):
        llmarch.from_gguf(path)


def test_gguf_refuses_what_llama_cpp_computes_otherwise(tmp_path):
    cfg = FAMILIES["chameleon"].to_config(GGUF)
    for change, problem in ((dict(suppressed_logits=[[4, 68]]), "suppresses the logits of ids"),  # llama.cpp: 4-8195
                            (dict(qkv_bias=True, o_bias=True), "no attention or MLP biases"),
                            (dict(norm_placement="res_post"), "swin_norm")):
        with pytest.raises(LlmarchError, match=problem):
            to_gguf(llmarch.build(cfg.replace(**change)), tmp_path / "x.gguf", "f32")
