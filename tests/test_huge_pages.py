"""huge_pages.huge_page_weights: a model's weights moved into 2 MiB-aligned mappings advised MADV_HUGEPAGE, with
nothing else about the model changed (values, strides, ties, the Parameters themselves, saving)."""
import pytest
import torch

import llmarch
from conftest import tiny
from llmarch.checkpoint import save_model
from llmarch.huge_pages import PAGE, available, huge_page_weights
from llmarch import transforms
from llmarch.transforms import for_cpu_decoding, transposed_weight_layout

needs_thp = pytest.mark.skipif(not available(), reason="no transparent huge pages here (not Linux, or THP `never`)")


def advised(ptr: int) -> bool:
    """Whether the mapping holding address ptr is private (a shared anonymous one is shmem, which THP's `madvise`
    mode keeps in 4 KiB pages) and advised huge pages (`hg` among its VmFlags in /proc/self/smaps)."""
    private = None
    with open("/proc/self/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and ":" not in fields[0]:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                private = fields[1].endswith("p") if start <= ptr < end else None
            elif private is not None and fields[0] == "VmFlags:":
                return private and "hg" in fields[1:]
    return False


@needs_thp
def test_weights_move_into_advised_2mib_aligned_memory_and_nothing_else_changes(tmp_path):
    model = tiny(vocab_size=8192, tie_embeddings=True)  # an 8192 x 64 fp32 embedding tied to the head: 2 MiB
    transposed_weight_layout(model)  # non-contiguous weights keep their strides
    params = dict(model.named_parameters())
    before = {k: (v.detach().clone(), v.stride()) for k, v in model.state_dict().items()}
    # the layout's copy of the widening head (the embedding, tied) went into huge pages itself; the rest is torch's
    # allocator's memory
    assert model.embed.weight.untyped_storage().data_ptr() % PAGE == 0 and advised(model.embed.weight.data_ptr())
    rest = [p for p in params.values() if p.untyped_storage().data_ptr() % PAGE]
    assert len(rest) == len(params) - 1

    moved = huge_page_weights(model, min_bytes=1)
    assert moved >= sum(p.numel() * p.element_size() for p in rest)
    for name, p in model.named_parameters():
        assert p is params[name]  # the same Parameters: optimizers and hooks holding them still do
        assert p.untyped_storage().data_ptr() % PAGE == 0
    assert advised(model.embed.weight.data_ptr())
    assert model.lm_head.weight.untyped_storage().data_ptr() == model.embed.weight.untyped_storage().data_ptr()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k][0]) and v.stride() == before[k][1], k
    assert huge_page_weights(model, min_bytes=1) == 0  # already moved

    save_model(model, tmp_path / "m")  # safetensors, whose writer refuses tensors it finds sharing memory
    assert torch.equal(llmarch.load(tmp_path / "m").embed.weight, before["embed.weight"][0])
    with torch.no_grad():  # writable, and the tie holds
        model.embed.weight[0].zero_()
    assert not model.lm_head.weight[0].any()


@needs_thp
def test_decoding_on_cpu_moves_the_large_weights_and_keeps_the_logits(monkeypatch):
    """for_cpu_decoding (which generate applies) moves every weight of 2 MiB or more, which a decoded token
    streams; smaller ones, which fill no huge page, stay where they are."""
    model = tiny(vocab_size=8192)
    ids = torch.randint(0, 8192, (1, 5), generator=torch.Generator().manual_seed(0))
    small = next(model.blocks[0].parameters())
    address = small.data_ptr()
    with torch.no_grad():
        want = model(ids).logits
    llmarch.generate(model, ids, max_new_tokens=2)
    assert model.embed.weight.untyped_storage().data_ptr() % PAGE == 0 and advised(model.embed.weight.data_ptr())
    assert small.data_ptr() == address
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, want, atol=1e-5)  # (the split head sums in another order)
    # a switch of layout (eager <-> a compiled step's) copies a widening weight once, into huge pages already:
    # for_cpu_decoding's own huge_page_weights then finds nothing to move (it moved the layout's copy again)
    moved = []
    monkeypatch.setattr(transforms, "huge_page_weights", lambda m: moved.append(huge_page_weights(m)))
    for compiled in (True, False):
        for_cpu_decoding(model, split=True, compiled=compiled)
        assert model.lm_head.weight.untyped_storage().data_ptr() % PAGE == 0
    assert moved == [0, 0]


@needs_thp
def test_a_large_kv_cache_is_zeroed_memory_in_huge_pages_and_a_small_one_ordinary():
    """A compiled step reads its whole static cache every token: a cache of 2 MiB or more is allocated in huge
    pages (huge_pages.zeros), zeroed like torch.zeros; a smaller one, which would fill no huge page, is not."""
    from llmarch.layers.kv_cache import KVCache

    big = KVCache(1, 4, 2048, 64, torch.float32)  # 2 MiB each for k and v
    small = KVCache(1, 4, 64, 64, torch.float32)
    for t in (big.k, big.v):
        assert t.data_ptr() % PAGE == 0 and advised(t.data_ptr()) and not t.any()
        assert t.shape[2] == 2048 and t.dtype == torch.float32
    # torch's allocator's memory (not `advised`: another library in the process may have advised its heap)
    assert small.k.data_ptr() % PAGE and not small.k.any()
    big.update(torch.tensor([5]), torch.ones(1, 4, 1, 64), torch.ones(1, 4, 1, 64))  # writable
    assert big.k[0, :, 5].eq(1).all() and big.k.sum() == 4 * 64
