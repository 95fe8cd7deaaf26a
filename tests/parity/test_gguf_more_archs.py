"""More GGUF architectures read as one of llmarch's families (Arch.read_only: llmarch writes that family under its
own name): a tiny random model of the family is written in F32 by `to_gguf` and the file rewritten as the
architecture's converter (convert_hf_to_gguf.py) lays it out (test_gguf_older.rewrite); it reads back by from_gguf
to the model's logits (max |dlogit| <= 1e-4), and llama.cpp (llama-cpp-python, where installed) decodes it greedily
to llmarch's tokens with llmarch's logits (gguf_reads_back).

- the text models of vision-language models with M-RoPE (gguf_archs/mrope.py: qwen2vl, qwen3vl, qwen3vlmoe,
  paddleocr): the sections change nothing on text, where every position axis is the same; that is transformers'
  Qwen2-VL, Qwen3-VL and PaddleOCR-VL text models too, whose logits on text equal those of the file read back;
- DeepSeekMoE under LLaMA's attention (gguf_archs/deepseek_moe.py: deepseek, bailingmoe, deepseek2-ocr) as GLM-4.5's
  family with a softmax router: the model they mean is GLM-4.5's weights so routed;
- the diffusion LMs (gguf_archs/diffusion.py: dream, llada, llada-moe, rnd1), bidirectional: llama.cpp's logits of
  one whole-sequence batch;
- CogVLM's language expert (llama_kin.py), its vision expert's tensors beside it unread."""
import re

import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_writer import to_gguf

from conftest import gguf_reads_back, llama_cpp_against, perturbed_from_hf
from test_gguf_older import rewrite

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")
T = gguf.GGUFValueType

SMALL = dict(vocab_size=272, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, bos_token_id=1, eos_token_id=2,
             tie_word_embeddings=False)
QWEN3_MOE = dict(SMALL, head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                 norm_topk_prob=True)


def _written(tmp_path, family: str, fields: dict):
    """A perturbed tiny transformers `family` model read by from_hf, and its F32 GGUF file as to_gguf writes it."""
    torch.manual_seed(0)
    hf = getattr(transformers, f"{family}ForCausalLM")(getattr(transformers, f"{family}Config")(**fields))
    model = perturbed_from_hf(hf, tmp_path / "hf")
    to_gguf(model, tmp_path / "family.gguf", "f32", ByteTokenizer())
    return hf, model


def _as_vl(tmp_path, arch: str, sections: list[int], deepstack: int | None = None, halves: bool = False):
    """family.gguf rewritten as `arch` as Qwen2VLModel / Qwen3VLTextModel (PaddleOCR-VL's converter) write it:
    mrope_section padded to four as rope.dimension_sections and (Qwen3-VL) the count of DeepStack layers; with
    `halves`, a LLaMA's q and k rows back in Hugging Face's order (llama.cpp's M-RoPE turns halves)."""
    extra = {f"{arch}.rope.dimension_sections": (sections, T.ARRAY, T.INT32)}
    if deepstack is not None:
        extra[f"{arch}.n_deepstack_layers"] = (deepstack, T.UINT32)

    def tensors(ts):
        if not halves:
            return ts
        return {k: _unpermuted(v, 4 if ".attn_q." in k else 2) if ".attn_q." in k or ".attn_k." in k else v
                for k, v in ts.items()}

    rewrite(tmp_path / "family.gguf", tmp_path / "x.gguf", arch, tensors, extra=extra)
    return tmp_path / "x.gguf"


def _unpermuted(rows, heads: int):
    """LlamaModel.permute undone: each head's rows in Hugging Face's order (the rotated halves apart) again."""
    return rows.reshape(heads, rows.shape[0] // heads // 2, 2, -1).swapaxes(1, 2).reshape(rows.shape)


# name: (transformers family, its fields, GGUF architecture, sections, DeepStack layers, the family read as). Head
# pairs 8 (head_dim 16). Sections that give every pair one of the three text axes in llama.cpp: Qwen2-VL's runs
# (any, the fourth 0), Qwen3-VL's interleaving where each pair j is below 3 x its section j mod 3 ([3, 3, 2]).
# llama.cpp 0.3.36's qwen2vl reads no attention.layer_norm_rms_epsilon (its RMSNorms add ~0: measured 4.2e-4 apart
# at Qwen2's 1e-6, 4.1e-3 at 1e-5, 1.6e-7 at 1e-12, on tiny random embeddings whose mean square is ~4e-4), so its
# case takes an epsilon of 1e-12, where the two agree; the file reads the epsilon it holds, the converter's.
VL = {
    "qwen2vl": ("Qwen2", dict(SMALL, rms_norm_eps=1e-12), "qwen2vl", [2, 3, 3, 0], None, "qwen2"),
    "qwen3vl": ("Qwen3", dict(SMALL, head_dim=16), "qwen3vl", [3, 3, 2, 0], 3, "qwen3"),
    "qwen3vlmoe": ("Qwen3Moe", QWEN3_MOE, "qwen3vlmoe", [3, 3, 2, 0], 0, "qwen3_moe"),
    "paddleocr": ("Llama", SMALL, "paddleocr", [2, 3, 3, 0], None, "llama"),  # PaddleOCR-VL's text model, a LLaMA
}


@pytest.mark.parametrize("case", sorted(VL))
def test_vl_text_model_reads_as_its_family(case, tmp_path):
    family, fields, arch, sections, deepstack, read_as = VL[case]
    _, model = _written(tmp_path, family, fields)
    # llama.cpp, running its M-RoPE: measured 1.9e-7 (paddleocr) and 2.4e-7 apart
    back = gguf_reads_back(_as_vl(tmp_path, arch, sections, deepstack, halves=family == "Llama"), model)
    assert back.config.hf_model_type == read_as


# the released models' sections scaled to 8 pairs: Qwen2-VL's (PaddleOCR-VL's) [16, 24, 24] of 64, Qwen3-VL's
# [24, 20, 20] of 64 as [4, 2, 2], which leaves the last pair to llama.cpp's fourth axis as [24, 20, 20] leaves pairs
# 61 and 62
@pytest.mark.parametrize("text,family,scaled", [("Qwen2VL", "Qwen2", [2, 3, 3]), ("Qwen3VL", "Qwen3", [4, 2, 2]),
                                                ("PaddleOCR", "Llama", [2, 3, 3])])
def test_vl_text_model_is_transformers_on_text(text, family, scaled, tmp_path):
    """The released models' sections in transformers' own text model: on text its logits are those of the file
    read back as its family."""
    fields = dict(SMALL, rms_norm_eps=1e-6, **(dict(head_dim=16) if family != "Qwen2" else {}))
    hf, model = _written(tmp_path, family, fields)
    text_config = getattr(transformers, f"{text}TextConfig")(
        **fields, rope_parameters=dict(rope_type="default", rope_theta=1e4, mrope_section=scaled))
    text_model = getattr(transformers, f"{text}TextModel")(text_config).eval()
    text_model.load_state_dict(hf.model.state_dict())
    arch = {"PaddleOCR": "paddleocr"}.get(text, text.lower())
    back = llmarch.from_gguf(_as_vl(tmp_path, arch, scaled + [0], 3 if family == "Qwen3" else None,
                                    halves=family == "Llama"))
    ids = torch.randint(0, 272, (2, 16))
    with torch.no_grad():
        theirs = hf.lm_head(text_model(input_ids=ids).last_hidden_state)
        assert (back(ids).logits - theirs).abs().max() <= 1e-4
    if arch == "qwen3vl":
        # llama.cpp leaves pair 7 (on its fourth axis: 7 % 3 == 1, not below 3 x 2) unrotated on text, as it does
        # Qwen3-VL's pairs 61 and 62 of 64: same tokens, logits measured 2.0e-4 apart
        seq, ours, diff = llama_cpp_against(tmp_path / "x.gguf", model, list(range(3, 11)), exact=True)
        assert seq == ours and 1e-5 < diff < 1e-3


@pytest.mark.parametrize("arch", ["qwen2vl", "paddleocr"])
def test_a_fourth_mrope_section_is_refused(arch, tmp_path):
    _written(tmp_path, "Qwen2", SMALL)
    with pytest.raises(LlmarchError, match=f"{arch} file with a fourth M-RoPE section"):
        llmarch.from_gguf(_as_vl(tmp_path, arch, [2, 2, 2, 2]))


def _permuted(rows, heads: int):
    """convert_hf_to_gguf.py's LlamaModel.permute (per head, the two rotated halves interleaved) of a GGUF tensor's
    array (rows first)."""
    return rows.reshape(heads, 2, rows.shape[0] // heads // 2, -1).swapaxes(1, 2).reshape(rows.shape)


def _as_deepseek_moe(tmp_path, arch: str, heads: int, kv_heads: int, norm: bool, keys=lambda k, v: v,
                     more: dict | None = None) -> None:
    """family.gguf (GLM-4.5's glm4moe) rewritten as DeepseekModel / BailingMoeModel / DeepSeek-OCR's converter write
    `arch`: q and k permuted (not deepseek2-ocr's), the FFN's norm as ffn_norm (glm4moe's post_attention_norm), no
    expert bias, no sigmoid gating, groups or MTP keys; bailingmoe's and deepseek2-ocr's expert_weights_norm, and
    `more` keys."""
    def tensors(ts):
        out = {k.replace(".post_attention_norm.", ".ffn_norm."): v for k, v in ts.items() if ".exp_probs_b" not in k}
        for name in [k for k in out if arch != "deepseek2-ocr" and (".attn_q." in k or ".attn_k." in k)]:
            out[name] = _permuted(out[name], heads if ".attn_q." in name else kv_heads)
        return out

    drop = {f"{arch}.{k}" for k in ("expert_gating_func", "expert_group_count", "expert_group_used_count",
                                    "expert_weights_norm", "nextn_predict_layers")}
    extra = {f"{arch}.expert_weights_norm": (norm, T.BOOL)} if arch != "deepseek" else {}
    rewrite(tmp_path / "family.gguf", tmp_path / "x.gguf", arch, tensors, keys, drop=drop,
            extra={**extra, **(more or {})})


# (arch, dense layers, routed scale, renormalised, key heads): layer 0 dense (DeepSeek-MoE's first_k_dense_replace 1;
# Ling has none), then 4 experts, top 2 by softmax, beside two shared ones; llama.cpp's deepseek scales by
# expert_weights_scale (2 here) and never renormalises, bailingmoe and deepseek2-ocr (multi-head only) renormalise
# where the file says (Ling-lite does, DeepSeek-OCR does not: either way the same reading of one key)
DEEPSEEK_MOE = {
    "deepseek": ("deepseek", 1, 2.0, False, 2),
    "bailingmoe": ("bailingmoe", 0, 1.0, True, 2),
    "deepseek2-ocr": ("deepseek2-ocr", 1, 2.0, True, 4),
}


def _glm4_moe(tmp_path, dense: int, scale: float, norm: bool, kv_heads: int = 2):
    """A tiny GLM-4.5 (whole heads rotated, no QK-norm) with decisive routers, written to family.gguf."""
    from conftest import routed_apart

    fields = dict(SMALL, num_key_value_heads=kv_heads, num_hidden_layers=3, head_dim=16, partial_rotary_factor=1.0,
                  n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, n_shared_experts=2,
                  first_k_dense_replace=dense, n_group=1, topk_group=1, norm_topk_prob=norm,
                  routed_scaling_factor=scale, use_qk_norm=False)
    torch.manual_seed(0)
    hf = routed_apart(transformers.Glm4MoeForCausalLM(transformers.Glm4MoeConfig(**fields)))
    model = perturbed_from_hf(hf, tmp_path / "hf")
    to_gguf(model, tmp_path / "family.gguf", "f32", ByteTokenizer())
    return model


@pytest.mark.parametrize("case", sorted(DEEPSEEK_MOE))
def test_deepseek_moe_reads_as_glm4_moe_with_a_softmax_router(case, tmp_path):
    from llmarch.models.build import build_model

    arch, dense, scale, norm, kv_heads = DEEPSEEK_MOE[case]
    model = _glm4_moe(tmp_path, dense, scale, norm, kv_heads)
    _as_deepseek_moe(tmp_path, arch, 4, kv_heads, norm)
    # the model the file means: the same weights routed by softmax scores, no expert bias
    twin = build_model(model.config.replace(router_scoring="softmax", expert_bias=False, router_renormalize=norm))
    twin.load_state_dict({k: v for k, v in model.state_dict().items() if "expert_bias" not in k})
    # llama.cpp: measured 1.5e-7 to 2.1e-7 apart
    back = gguf_reads_back(tmp_path / "x.gguf", twin.eval())
    assert back.config.hf_model_type == "glm4_moe" and back.config.moe_dense_first == dense
    assert (back.config.router_scoring, back.config.router_renormalize, back.config.router_scale) == \
        ("softmax", norm, scale)


@pytest.mark.parametrize("arch,key,value,problem", [
    ("bailingmoe", "leading_dense_block_count", 1, "bailingmoe file with dense layers"),
    ("deepseek", "rope.dimension_count", 8, "deepseek file rotating part of each head"),
    ("deepseek2-ocr", "expert_group_count", 2, "deepseek2-ocr routing other than DeepSeek-V2's"),
])
def test_deepseek_moe_refuses_what_llama_cpp_computes_otherwise(arch, key, value, problem, tmp_path):
    _glm4_moe(tmp_path, 0, 1.0, False)
    dropped = key == "expert_group_count"  # glm4moe's, which _as_deepseek_moe drops: written again
    _as_deepseek_moe(tmp_path, arch, 4, 2, False, keys=lambda k, v: value if k == f"{arch}.{key}" else v,
                     more={f"{arch}.{key}": (value, T.UINT32)} if dropped else None)
    with pytest.raises(LlmarchError, match=problem):
        llmarch.from_gguf(tmp_path / "x.gguf")


def _llama_cpp_forward(path, ids: list[int]):
    """llama.cpp's logits at every position of `ids` decoded as one batch (a bidirectional model's whole forward),
    F32 KV cache, no flash attention."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    import llama_cpp._logger
    import numpy as np

    llama_cpp._logger.set_verbose(False)
    params = llama_cpp.llama_model_default_params()
    params.use_extra_bufts = False  # as test_llama_cpp.LlamaCpp
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    assert model, f"llama.cpp cannot load {path}"
    ctx_params = llama_cpp.llama_context_default_params()
    ctx_params.n_ctx, ctx_params.n_threads, ctx_params.n_threads_batch = 128, 1, 1
    ctx_params.type_k = ctx_params.type_v = 0  # GGML_TYPE_F32
    ctx_params.flash_attn_type = 0
    ctx = llama_cpp.llama_init_from_model(model, ctx_params)
    batch = llama_cpp.llama_batch_init(len(ids), 0, 1)
    try:
        batch.n_tokens = len(ids)
        for i, token in enumerate(ids):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, i, 1, 1
            batch.seq_id[i][0] = 0
        assert llama_cpp.llama_decode(ctx, batch) == 0
        n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        return np.stack([np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, i), shape=(n_vocab,)).copy()
                         for i in range(len(ids))])
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)


# name: (transformers family, its fields, the family read as, top-k renormalised as llama.cpp's graph does: the
# file, written from a Qwen3-MoE that renormalises, is the same either way)
DIFFUSION = {
    "dream": ("Qwen2", SMALL, "qwen2", None),
    "llada": ("Llama", SMALL, "llama", None),
    "llada-moe": ("Qwen3Moe", QWEN3_MOE, "qwen3_moe", False),
    "rnd1": ("Qwen3Moe", QWEN3_MOE, "qwen3_moe", True),
}


@pytest.mark.parametrize("arch", sorted(DIFFUSION))
def test_diffusion_lm_reads_as_its_family_bidirectional(arch, tmp_path):
    """The family's file rewritten as `arch` (the same tensors and keys): read back bidirectional, the logits of
    the same weights with causal False; llama.cpp's logits on one whole-sequence batch equal them."""
    from conftest import routed_apart
    from llmarch.models.build import build_model

    family, fields, read_as, renormalised = DIFFUSION[arch]
    torch.manual_seed(0)
    hf = routed_apart(getattr(transformers, f"{family}ForCausalLM")(getattr(transformers, f"{family}Config")(**fields)))
    model = perturbed_from_hf(hf, tmp_path / "hf")
    to_gguf(model, tmp_path / "family.gguf", "f32", ByteTokenizer())
    rewrite(tmp_path / "family.gguf", tmp_path / "x.gguf", arch)
    renorm = {} if renormalised is None else {"router_renormalize": renormalised}
    twin = build_model(model.config.replace(causal=False, **renorm))
    twin.load_state_dict(model.state_dict())
    back = llmarch.from_gguf(tmp_path / "x.gguf")
    assert (back.config.hf_model_type, back.config.causal) == (read_as, False)
    if renormalised is not None:
        assert back.config.router_renormalize == renormalised
    ids = torch.randint(0, 256, (1, 16))
    with torch.no_grad():
        ours = back(ids).logits[0]
        assert (ours - twin.eval()(ids).logits[0]).abs().max() <= 1e-4
    # llama.cpp: measured 1.8e-7 (dream, llada), 2.1e-7 (llada-moe, rnd1) apart; causally 0.44 to 0.5 apart
    assert abs(_llama_cpp_forward(tmp_path / "x.gguf", ids[0].tolist()) - ours.numpy()).max() <= 1e-4
    with pytest.raises(LlmarchError, match="causal=False"):  # transformers' family would run it causally
        llmarch.to_hf(back, tmp_path / "out")


def _as_cogvlm(ts: dict) -> dict:
    """A LLaMA's tensors as CogVLM's converter lays its language model out: q, k, v (q and k unpermuted) fused in
    attn_qkv, and beside each layer's attention and SwiGLU the vision expert's (random here: text never reads them)."""
    import numpy as np

    rng, out = np.random.default_rng(0), {}
    for name, array in ts.items():
        if ".attn_q." in name:
            q, k, v = (ts[name.replace(".attn_q.", f".attn_{p}.")] for p in "qkv")
            out[name.replace(".attn_q.", ".attn_qkv.")] = np.concatenate([_unpermuted(q, 4), _unpermuted(k, 4), v])
        elif not (".attn_k." in name or ".attn_v." in name):
            out[name] = array
    for name in [n for n in out if re.search(r"\.(attn_qkv|attn_output|ffn_gate|ffn_up|ffn_down)\.", n)]:
        vision = re.sub(r"\.(attn_qkv|attn_output|ffn_gate|ffn_up|ffn_down)\.",
                        lambda m: {"attn_qkv": ".vis_attn_qkv.", "attn_output": ".vis_attn_output.", "ffn_gate":
                                   ".vis_gate.", "ffn_up": ".vis_up.", "ffn_down": ".vis_down."}[m[1]], name)
        out[vision] = rng.standard_normal(out[name].shape).astype(np.float32)
    return out


def test_cogvlm_reads_its_language_expert_as_llama(tmp_path):
    _, model = _written(tmp_path, "Llama", dict(SMALL, num_key_value_heads=4))
    rewrite(tmp_path / "family.gguf", tmp_path / "x.gguf", "cogvlm", _as_cogvlm)
    names = {t.name for t in gguf.GGUFReader(str(tmp_path / "x.gguf")).tensors}
    assert {"blk.0.attn_qkv.weight", "blk.0.vis_attn_qkv.weight", "blk.1.vis_down.weight"} <= names
    back = gguf_reads_back(tmp_path / "x.gguf", model)  # llama.cpp: measured 1.8e-7 apart (6.4e-3 with q, k permuted)
    assert back.config.hf_model_type == "llama" and back.config.n_kv_heads == 4
