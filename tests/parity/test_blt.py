"""BLT (`model_type: blt`, Meta's Byte Latent Transformer) against transformers, through files: a tiny seeded
BltForCausalLM (1-D parameters perturbed; its entropy model's head scaled so next-byte entropies spread, and the
patching threshold set amid them, away from each, so the batch splits into patches of several lengths,
transformers' padded lengths 0 and -1 included) with hash n-gram embeddings, cross_attn_k 2 and a global transformer
wider than the k pooled vectors (its input projection), with and without a local attention window, and a case with
grouped key/value heads, two hash functions and stacks of different depths; read by from_hf: logits on a left-padded
batch within 1e-4 (fp32; transformers given the positions its generate gives), 16 greedy tokens equal to
transformers' generate (which recomputes the whole forward each step: its cached path fails in BltModel), decoding
over the decode state equal to the whole forward, a to_hf round trip that transformers loads to the same logits."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import to_hf
from llmarch.interop.hf import hf_model_config

from conftest import assert_cached_decoding_and_config_round_trip, perturbed

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


def blt_config(window, grouped=False):
    """grouped: grouped key/value heads in the entropy model and the global transformer, the entropy model's own
    window, two hash functions over six n-gram sizes, a one-layer local encoder beside a three-layer decoder."""
    local = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 hidden_size_global=48)
    more = dict(kv=2, sizes=[3, 4, 5, 6, 7, 8], functions=2, window=4, enc=1, dec=3) if grouped else \
        dict(kv=None, sizes=[3, 4], functions=1, window=None, enc=2, dec=2)
    return transformers.BltConfig(
        vocab_size=260, patch_size=4, local_attention_window_len=window, cross_attn_k=2,
        encoder_hash_byte_group_size=more["sizes"], encoder_hash_byte_group_vocab=50,
        encoder_hash_byte_group_nb_functions=more["functions"],
        patcher_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=more["kv"],
                            intermediate_size=48, sliding_window=more["window"]),
        encoder_config=dict(local, num_hidden_layers=more["enc"], cross_attn_all_layers=False),
        decoder_config=dict(local, num_hidden_layers=more["dec"], cross_attn_all_layers=True),
        global_config=dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=more["kv"],
                           intermediate_size=96),
        pad_token_id=0, bos_token_id=1, eos_token_id=2)


def batch():
    torch.manual_seed(1)
    ids = torch.randint(3, 260, (2, 14))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0
    return ids, mask


def hf_logits(hf, ids, mask):
    with torch.no_grad():  # the positions transformers' generate passes (its plain forward counts from the padding)
        return hf(ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0), use_cache=False).logits


def threshold_between(entropy):
    """A threshold amid the entropies, halfway across the widest gap between two of them in the middle third: an
    entropy at the threshold itself would flip its patch on a rounding difference (the patching is a step)."""
    e = entropy[:, 1:].flatten().sort().values
    n = len(e)
    j = max(range(n // 3, 2 * n // 3), key=lambda i: e[i + 1] - e[i])
    return float(e[j] + e[j + 1]) / 2


@pytest.fixture(scope="module", params=[(None, False), (3, False), (5, True)], ids=["full", "window3", "grouped"])
def blt(request, tmp_path_factory):
    return seeded(request.param, tmp_path_factory.mktemp("blt") / "hf")


def seeded(params, folder):
    """(transformers' model, llmarch's read from its files in folder) for blt_config(*params)."""
    torch.manual_seed(0)
    hf = perturbed(transformers.BltForCausalLM(blt_config(*params)))
    ids, _ = batch()
    with torch.no_grad():
        hf.model.patcher.lm_head.weight.mul_(torch.rand(260, 1) * 20)
        entropy = hf.model.patcher(ids, patch_size=None)[0]
    hf.config.patching_threshold = threshold_between(entropy)
    hf.save_pretrained(folder)
    hf.generation_config.eos_token_id = None
    return hf, llmarch.from_hf(folder)


def test_logits_generation_cached_decoding_and_round_trip(blt, tmp_path):
    hf, ours = blt
    ids, mask = batch()
    with torch.no_grad():
        lengths = hf.model.patcher(ids, patch_size=4, threshold=hf.config.patching_threshold)[1]
        mine = ours(ids, attention_mask=mask).logits
    assert lengths.shape[1] > 4 and len(set(lengths.flatten().tolist())) > 3  # patches of several lengths
    real = mask.bool()
    assert (mine - hf_logits(hf, ids, mask))[real].abs().max() <= 1e-4

    theirs = hf.generate(ids, attention_mask=mask, max_new_tokens=16, do_sample=False, use_cache=False)
    generated = llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=16)
    assert torch.equal(generated, theirs)

    to_hf(ours, tmp_path / "out")
    again = transformers.BltForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert (hf_logits(again, ids, mask) - mine)[real].abs().max() <= 1e-4
    assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, tmp_path / "out")


def test_unsupported_configs_are_refused():
    base = {**blt_config(None).to_dict(), "model_type": "blt"}
    for change, problem in ((dict(max_patch_length=8), "max_patch_length"),
                            (dict(patching_mode="space"), "entropy patching"),
                            (dict(encoder_config={**base["encoder_config"], "cross_attn_all_layers": True}),
                             "cross-attention after"),
                            (dict(decoder_config={**base["decoder_config"], "num_key_value_heads": 1}),
                             "key/value heads")):
        with pytest.raises(LlmarchError, match=problem):
            hf_model_config({**base, **change})


def test_byte_latent_stacks_must_be_prenorm_attention_blocks():
    cfg = hf_model_config({**blt_config(None).to_dict(), "model_type": "blt"})
    for change in (dict(block="parallel"), dict(norm_placement="post")):
        with pytest.raises(LlmarchError, match="pre-norm sequential attention blocks"):
            cfg.replace(**change)


def test_a_step_over_the_whole_static_cache_returns_the_slots_it_wrote(blt):
    """The compiled step runs over the whole static cache (kv_len None): its logits are those of the slots written,
    not the cache's last ones (the later, empty slots change nothing before them: the model is causal)."""
    hf, ours = blt
    if hf.config.local_attention_window_len is not None:
        pytest.skip("one case is enough")
    ids, mask = batch()
    B, T = ids.shape
    ours.setup_cache(B, T + 3)
    try:
        slots, full = torch.arange(T), torch.nn.functional.pad(mask, (0, 3), value=1)
        with torch.no_grad():
            want = ours.step(ids, slots, T, full, last_only=False).logits
            got = ours.step(ids, slots, None, full, last_only=False).logits
    finally:
        ours.clear_cache()
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-5)


@pytest.mark.slow  # 41 s on two cores; the test above covers the step it compiles
def test_compiled_decoding_reads_the_slots_it_wrote(blt):
    """The compiled step runs over the whole static cache (kv_len None): the logits are those of the slot written,
    not of the cache's last slot, and the tokens those of eager decoding."""
    hf, ours = blt
    if hf.config.local_attention_window_len is not None:
        pytest.skip("one case is enough")
    ids, mask = batch()
    eager = llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=4)
    assert torch.equal(llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=4, compile=True), eager)


def test_flops_run_the_global_transformer_over_patches(tmp_path, capsys):
    """llmarch info's training FLOPs per byte are within 3% of a forward's counted FLOPs (conftest's
    measured_flops_per_token) given the forward's own mean patch length (mean_patch_length = T / P, 14 bytes in 6
    patches here): the global transformer and the patch projections once a patch, the cross-attentions over P*k x T
    pairs, the byte tables read, not multiplied by. Until 2026-12-07 all ran once a byte: 37% over. Full attention
    only: a local window runs through the blockwise CPU path, whose padded blocks cost more than T keys at T = 14.
    `llmarch info` states the mean it assumes."""
    from conftest import measured_flops_per_token
    from llmarch.analysis.accounting import model_facts

    _, ours = seeded((None, False), tmp_path)
    ids = batch()[0][:1]
    T = ids.shape[1]
    patches = []
    # the global transformer's output, (1, P, G), enters decoder_patches
    ours.decoder_patches.register_forward_pre_hook(lambda module, args: patches.append(args[0].shape[1]))
    measured = measured_flops_per_token(ours, ids, tokens=T)
    assert patches == [6]
    cfg = ours.config.replace(context_length=T, mean_patch_length=T / patches[0])
    assert abs(model_facts(cfg)["flops_per_token"] / measured - 1) < 0.03
    from llmarch.cli import main

    assert main(["info", str(tmp_path), "--mean-patch-length", "6"]) == 0
    assert "(per byte, at a mean patch of 6 bytes: --mean-patch-length)" in capsys.readouterr().out
