"""MRA (Zeng et al. 2022; attention 'mra', interop/mra.py) against transformers' MraForMaskedLM in fp32, <= 1e-4 on a
right-padded batch of 128 tokens (4 blocks of 32 a row, a budget of 4 or 8 of the 16 block pairs), and a to_hf round
trip that transformers reads to the same logits.

transformers computes MRA only with its CUDA kernels: on a CPU its mra2_attention returns zeros. The reference here is
transformers' own model with those three kernels (kernels-community/mra's cuda_kernel.cu: mm_to_sparse,
sparse_dense_mm, index_max) written out in PyTorch below, from the kernels' source; everything else (block means,
choice of pairs, priors, both resolutions and their rescaling, masks, the warp padding of narrow heads) is
transformers' code as it runs."""
import types

import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import to_hf

from conftest import perturbed_from_hf

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
modeling_mra = pytest.importorskip("transformers.models.mra.modeling_mra")


def _mm_to_sparse(a, b, indices):
    """a (N, An, dim, 32) query blocks, b (N, Bn, dim, 32) key blocks -> (N, K, 32 keys, 32 queries) of pair i:
    query block indices // Bn, key block indices % Bn."""
    n, idx = torch.arange(a.shape[0])[:, None], indices.long()
    return torch.einsum("nkdi,nkdj->nkji", a[n, idx // b.shape[1]], b[n, idx % b.shape[1]])


def _sparse_dense_mm(sparse, indices, b, a_blocks):
    """sum over the pairs of each query block of b's key block (dim, 32 keys) @ sparse (32 keys, 32 queries) ->
    (N, a_blocks, dim, 32)."""
    N, K = indices.shape
    n, idx = torch.arange(N)[:, None], indices.long()
    prod = b[n, idx % b.shape[1]] @ sparse  # (N, K, dim, 32)
    out = torch.zeros(N, a_blocks, *prod.shape[2:], dtype=prod.dtype)
    return out.scatter_add(1, (idx // b.shape[1])[..., None, None].expand_as(prod), prod)


def _index_max(vals, indices, a_blocks, b_blocks):
    """vals (N, 32, K): each pair's per-query maximum; the maximum over each query block's pairs, kept (atomicMax) as
    int(value * 1000) from -1e8, then / 1000: (N, a_blocks * 32) and scattered back to (N, 32, K)."""
    N, _, K = vals.shape
    pos = (indices.long() // b_blocks)[:, None, :] * 32 + torch.arange(32)[None, :, None]  # (N, 32, K)
    buf = torch.full((N, a_blocks * 32), -1e8).scatter_reduce(1, pos.flatten(1), torch.trunc(vals * 1000).flatten(1),
                                                              "amax")
    best = buf / 1000
    return best, best.gather(1, pos.flatten(1)).view(N, 32, K)


KERNELS = types.SimpleNamespace(mm_to_sparse=_mm_to_sparse, sparse_dense_mm=_sparse_dense_mm, index_max=_index_max)
MRA = dict(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
           max_position_embeddings=128)  # 4 block rows; heads of 8, zero-padded to 32 by transformers
CASES = {"full": dict(block_per_row=1), "priors": dict(block_per_row=2, initial_prior_first_n_blocks=1,
                                                        initial_prior_diagonal_n_blocks=1),
         "sparse": dict(block_per_row=2, approx_mode="sparse", initial_prior_diagonal_n_blocks=1)}


@pytest.fixture
def kernels(monkeypatch):
    monkeypatch.setattr(modeling_mra, "mra_cuda_kernel", KERNELS)


def right_padded(T: int = 128, real: int = 70):
    ids = torch.randint(4, 96, (2, T), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, real:], ids[1, real:] = 0, 1  # the second row: 2 real blocks, one partly real, one all padding
    return ids, mask


def build(case, tmp_path, **more):
    torch.manual_seed(0)
    hf = transformers.MraForMaskedLM(transformers.MraConfig(**MRA, **CASES[case], **more)).eval()
    with torch.no_grad():  # sharper and larger attention, so that a block pair scored or weighed wrongly shows
        for layer in hf.mra.encoder.layer:
            for w in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value,
                      layer.attention.output.dense):
                w.weight.mul_(6)
    return hf, perturbed_from_hf(hf, tmp_path)


def rows_alone(hf, ids, mask):
    """transformers' logits, each row run alone: in a batch its MraSelfAttention interleaves the rows' masks
    (`attention_mask.squeeze().repeat(1, H, 1).reshape(B * H, T)` gives head h of row b the mask of row (b H + h) mod
    B), so its padded batch attends by other rows' padding; one row at a time it masks its own."""
    return torch.cat([hf(ids[r:r + 1], attention_mask=mask[r:r + 1]).logits for r in range(len(ids))])


@pytest.mark.parametrize("case", sorted(CASES))
def test_mra_matches_transformers_and_round_trips(case, kernels, tmp_path):
    hf, ours = build(case, tmp_path / "hf")
    cfg = ours.config
    assert (cfg.attention, cfg.attention_block, cfg.attn_scale) == ("mra", 32, 32 ** -0.5)
    per_row, mode = CASES[case]["block_per_row"], CASES[case].get("approx_mode", "full")
    assert (cfg.mra_blocks, cfg.mra_approx) == (4 * per_row, mode)
    ids, mask = right_padded()
    real = mask.bool()
    with torch.no_grad():
        theirs = rows_alone(hf, ids, mask)
        mine = ours(ids, attention_mask=mask).logits
        diff = (mine - theirs)[real].abs().max().item()
        assert diff <= 1e-4, diff  # 1.2e-7 seen in each case
        assert torch.equal(mine.argmax(-1)[real], theirs.argmax(-1)[real])
        every = llmarch.build(cfg.replace(mra_blocks=16)).eval()  # all 16 pairs at full resolution: the blocks matter
        every.load_state_dict(ours.state_dict())
        assert (every(ids, attention_mask=mask).logits - mine)[real].abs().max() > 1e-3
        # a length no multiple of 32 is padded inside as padding tokens would be: row 1 cut to its 70 real tokens is
        # transformers' row of 96 (3 blocks; not of 128: a padded block's zero score enters its row's maximum)
        inside = ours(ids[1:, :70]).logits
        assert (inside - rows_alone(hf, ids[1:, :96], mask[1:, :96])[:, :70]).abs().max() <= 1e-4
    to_hf(ours, tmp_path / "out")
    back = transformers.MraForMaskedLM.from_pretrained(tmp_path / "out").eval()
    assert back.config.block_per_row == per_row
    with torch.no_grad():
        assert (rows_alone(back, ids, mask) - mine)[real].abs().max() <= 1e-4


def test_mra_token_classifier_base_model_and_wide_heads(kernels, tmp_path):
    """MraForTokenClassification with heads of 32 (no warp padding: scores at 32^-1/2 as head_dim^-1/2), and its body
    (MraModel) read as head 'embed'."""
    torch.manual_seed(0)
    config = transformers.MraConfig(**{**MRA, "hidden_size": 64, "num_attention_heads": 2}, num_labels=3)
    hf = transformers.MraForTokenClassification(config).eval()
    ours = perturbed_from_hf(hf, tmp_path / "tokens")
    assert (ours.config.head, ours.config.attn_scale, ours.config.mra_blocks) == ("tokens", None, 16)
    ids, mask = right_padded()
    body = hf.mra
    body.save_pretrained(tmp_path / "base")
    base = llmarch.from_hf(tmp_path / "base")
    with torch.no_grad():
        assert (rows_alone(hf, ids, mask) - ours(ids, attention_mask=mask).logits)[mask.bool()].abs().max() <= 1e-4
        assert (body(ids).last_hidden_state - base(ids).hidden_states).abs().max() <= 1e-4


def test_mra_refusals(tmp_path):
    hf, ours = build("full", tmp_path)
    with pytest.raises(LlmarchError, match="mra_approx must be one of full, sparse"):
        ours.config.replace(mra_approx="dense")
    with pytest.raises(LlmarchError, match="bidirectional"):
        llmarch.build(ours.config.replace(causal=True))
    with pytest.raises(LlmarchError, match="cannot generate"):
        llmarch.generate(ours, [[5, 6]], max_new_tokens=1)
    with pytest.raises(LlmarchError, match="budget transformers derives"):
        to_hf(llmarch.build(ours.config.replace(mra_blocks=5)), tmp_path / "out")
