"""xLSTM (`model_type: xlstm`, the mLSTM mixer: layers/mlstm.py) against transformers, through files: a tiny seeded
xLSTMForCausalLM (1-D parameters perturbed, the gates' zero-initialised weights drawn, so the gates vary per token;
q/k width 64 and v width 128 over 4 heads; an FFN rounded to 16; gate and logit soft caps of 5 and 3, small enough
to bite; mLSTM eps 1e-3, norm eps 1e-5, so either read from the other field shows; chunk 8 over 21-token prompts,
so transformers runs two chunks then 5 recurrent steps) read by from_hf: logits within 1e-4 (fp32), greedy tokens
equal to transformers' generate, cached decoding equal to the whole forward, a to_hf round trip that transformers
loads to the same logits and that reads back to the same config.

RWKV-4 (`model_type: rwkv`, mixers "rwkv" and "rwkv_channel": layers/rwkv.py) the same way: a tiny seeded
RwkvForCausalLM (1-D parameters perturbed: the decays, bonuses, norms; intermediate_size 80, layer_norm_epsilon
1e-4, so the final norm's own 1e-5 shows; rescale_every 1, so transformers halves the stream after each layer and
the norms' epsilons grow 4x a layer), read by from_hf and compared with chunks of 8 (21-token prompts: three
chunks, the last partial) as well as one: logits, greedy tokens, cached decoding, round trip.

Unpadded batches: transformers' xLSTM and RWKV read no attention mask (a left-padded row's pads enter its state);
llmarch keeps padding out of the state, tested against its own unpadded rows."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.interop.hf import hf_model_config

from conftest import perturbed_from_hf, stepwise_logits

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

XLSTM = dict(vocab_size=128, hidden_size=64, num_hidden_layers=2, num_heads=4, qk_dim_factor=1.0, v_dim_factor=2.0,
             ffn_proj_factor=1.5, ffn_round_up_to_multiple_of=16, chunk_size=8, gate_soft_cap=5.0, eps=1e-3,
             norm_eps=1e-5, output_logit_soft_cap=3.0)


def logits(model, ids, **kw):
    with torch.no_grad():
        return model(ids, **kw).logits


def assert_round_trip(ours, hf_class, folder, ids, mine):
    """to_hf, then transformers' hf_class loads the files to the same logits and llmarch reads back the config."""
    to_hf(ours, folder / "out")
    again = hf_class.from_pretrained(folder / "out").eval()
    assert (logits(again, ids) - mine).abs().max() <= 1e-4
    cfg = ours.config
    assert from_hf(folder / "out").config.to_dict() == {**cfg.to_dict(), "name": cfg.name}


def assert_left_padding_kept_out(ours, padded_by=None):
    """Row 1 of a batch, left-padded by 5, gives the logits (run through `padded_by`, default ours) and the greedy
    tokens of that row alone."""
    torch.manual_seed(1)
    ids = torch.randint(1, 128, (2, 14))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0
    alone = ids[1:, 5:]
    padded = logits(ours if padded_by is None else padded_by, ids, attention_mask=mask)
    assert (padded[1, 5:] - logits(ours, alone)[0]).abs().max() <= 1e-4
    generated = llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=6)
    assert torch.equal(generated[1, 5:], llmarch.generate(ours, alone, max_new_tokens=6)[0])


@pytest.fixture(scope="module")
def xlstm(tmp_path_factory):
    torch.manual_seed(0)
    hf = transformers.xLSTMForCausalLM(transformers.xLSTMConfig(**XLSTM)).eval()
    with torch.no_grad():  # transformers zeroes the gates' weights: drawn, so i and f depend on the token
        for name, p in hf.named_parameters():
            if "gate_preact" in name and p.dim() == 2:
                p.normal_(0.0, 0.3)
    folder = tmp_path_factory.mktemp("xlstm")
    ours = perturbed_from_hf(hf, folder / "hf").eval()
    hf.generation_config.eos_token_id = None
    return hf, ours, folder


def test_xlstm_logits_generation_cache_and_round_trip(xlstm):
    hf, ours, folder = xlstm
    cfg = ours.config
    assert (cfg.mixer, cfg.n_heads, cfg.head_dim, cfg.delta_value_dim, cfg.ffn_hidden) == ("mlstm", 4, 16, 32, 96)
    assert (cfg.mlstm_gate_softcap, cfg.mlstm_eps, cfg.norm_eps, cfg.final_softcap) == (5.0, 1e-3, 1e-5, 3.0)
    torch.manual_seed(1)
    ids = torch.randint(0, 128, (2, 21))
    mine = logits(ours, ids)
    assert (mine - logits(hf, ids)).abs().max() <= 1e-4

    theirs = hf.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert torch.equal(llmarch.generate(ours, ids, max_new_tokens=12), theirs)
    # a prompt, then one token per call: the whole forward's logits
    assert (stepwise_logits(ours, theirs, 21) - logits(ours, theirs)).abs().max() <= 1e-4

    assert_round_trip(ours, transformers.xLSTMForCausalLM, folder, ids, mine)


def test_xlstm_left_padding_is_kept_out(xlstm):
    """A left-padded row's logits and greedy tokens are those of the row alone: its pads neither write nor decay
    the mLSTM's state."""
    assert_left_padding_kept_out(xlstm[1])


def test_xlstm_what_llmarch_cannot_hold_is_named():
    hf = {**XLSTM, "model_type": "xlstm"}
    for change, message in [(dict(weight_mode="fused"), "weight_mode 'fused'"), (dict(use_bias=True), "use_bias"),
                            (dict(add_out_norm=False), "add_out_norm"), (dict(num_heads=3), "multiples of num_heads")]:
        with pytest.raises(LlmarchError, match=message):
            hf_model_config({**hf, **change})
    cfg = hf_model_config(hf)
    with pytest.raises(LlmarchError, match="needs tie_embeddings=False"):
        to_hf(llmarch.build(cfg.replace(tie_embeddings=True), device="meta"), "/nonexistent")
    with pytest.raises(LlmarchError, match="as many value heads"):
        cfg.replace(delta_value_heads=8)


RWKV = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, intermediate_size=80, context_length=64,
            layer_norm_epsilon=1e-4, rescale_every=1)


@pytest.fixture(scope="module")
def rwkv(tmp_path_factory):
    torch.manual_seed(0)
    hf = transformers.RwkvForCausalLM(transformers.RwkvConfig(**RWKV)).eval()
    folder = tmp_path_factory.mktemp("rwkv")
    ours = perturbed_from_hf(hf, folder / "hf").eval()
    hf.generation_config.eos_token_id = None
    return hf, ours, folder


def test_rwkv_logits_generation_cache_and_round_trip(rwkv):
    hf, ours, folder = rwkv
    cfg = ours.config
    assert [cfg.layer_mixer(i) for i in range(4)] == ["rwkv", "rwkv_channel"] * 2
    assert [cfg.for_layer(i).norm_eps for i in range(4)] == [1e-4, 1e-4, 4e-4, 4e-4]  # the stream halved once
    assert (cfg.ffn, cfg.ffn_hidden, cfg.embed_norm, cfg.final_norm_eps) == ("none", 80, True, 1.6e-4)
    chunked = llmarch.build(cfg.replace(ssm_chunk=8)).eval()
    chunked.load_state_dict(ours.state_dict())
    torch.manual_seed(1)
    ids = torch.randint(0, 128, (2, 21))
    mine, theirs = logits(ours, ids), logits(hf, ids)
    assert (mine - theirs).abs().max() <= 1e-4 and (logits(chunked, ids) - theirs).abs().max() <= 1e-4

    generated = hf.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert torch.equal(llmarch.generate(ours, ids, max_new_tokens=12), generated)
    assert (stepwise_logits(chunked, generated, 21) - logits(ours, generated)).abs().max() <= 1e-4

    assert_round_trip(ours, transformers.RwkvForCausalLM, folder, ids, mine)


def test_rwkv_left_padding_is_kept_out(rwkv):
    """A left-padded row's logits and greedy tokens are those of the row alone: pads write no key and their zeroed
    inputs are what the first real token's shift reads, as a row alone reads zeros."""
    ours = rwkv[1]
    chunked = llmarch.build(ours.config.replace(ssm_chunk=4)).eval()
    chunked.load_state_dict(ours.state_dict())
    assert_left_padding_kept_out(ours, padded_by=chunked)


def test_rwkv_what_llmarch_cannot_hold_is_named():
    hf = {**RWKV, "model_type": "rwkv"}
    with pytest.raises(LlmarchError, match="attention_hidden_size 64"):
        hf_model_config({**hf, "attention_hidden_size": 64})
    cfg = hf_model_config(hf)
    with pytest.raises(LlmarchError, match="alternating mixers"):
        to_hf(llmarch.build(cfg.replace(n_layers=3, layer_types=None, layer_overrides=None), device="meta"),
              "/nonexistent")
    with pytest.raises(LlmarchError, match="norm epsilons as transformers' rescale_every"):
        to_hf(llmarch.build(cfg.replace(final_norm_eps=None), device="meta"), "/nonexistent")


def test_rwkv_4_169m_preset_counts_as_transformers():
    """RWKV/rwkv-4-169m-pile's config.json (12 layers of 768, 50,277 tokens): read by llmarch, it is the
    rwkv-4-169m preset's shape, with transformers' parameter count."""
    hf = transformers.RwkvConfig(vocab_size=50277, hidden_size=768, num_hidden_layers=12, context_length=1024)
    cfg = hf_model_config({**hf.to_dict(), "model_type": "rwkv"})
    preset = llmarch.preset("rwkv-4-169m")
    assert cfg.replace(name=preset.name, eos_id=None) == preset
    with torch.device("meta"):
        theirs = transformers.RwkvForCausalLM(hf).num_parameters()
    assert sum(p.numel() for p in llmarch.build(cfg, device="meta").parameters()) == theirs == 169_342_464
