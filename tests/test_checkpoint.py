import pytest
import torch

import llmarch
from llmarch import LlmarchError
from llmarch.checkpoint import save_model

from conftest import tiny


@pytest.mark.parametrize("base", ["gpt-tiny", "llama-tiny"])
def test_save_load_round_trip_is_bitwise(tmp_path, base):
    model = tiny(base)
    save_model(model, tmp_path)
    loaded = llmarch.load(tmp_path)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randint(0, 97, (2, 10))
    assert torch.equal(model(x).logits, loaded.eval()(x).logits)
    if base == "gpt-tiny":
        assert loaded.lm_head.weight is loaded.embed.weight


def test_every_attention_kind_loads_to_the_same_logits(tmp_path):
    """A checkpoint is built on the meta device and filled from its file: what a kind draws at construction from
    its seed (Performer's random features, LSH's rotations, BigBird's random blocks), and is not saved, must come
    out the same. These three failed to load before (their draws stayed on meta)."""
    from llmarch.layers.attention_kinds import ATTENTION_KINDS

    x = torch.randint(0, 97, (1, 40))
    for kind in ATTENTION_KINDS.names():
        window = {"sliding_window": 16} if ATTENTION_KINDS[kind].windowed else {}
        needs = ATTENTION_KINDS[kind].needs_positions
        # LongT5's transient global tokens have no causal form: a bidirectional stack of blocks of 8
        bidirectional = dict(causal=False, global_block_size=8) if ATTENTION_KINDS[kind].bidirectional_only else {}
        if kind == "global_local":  # PEGASUS-X's: the stack's global tokens and the blocks the kind reads
            bidirectional.update(global_tokens=2, local_block_size=8)
        if kind == "ngram":  # ProphetNet's: the predicting stream the stack appends, placed by absolute positions
            needs = "learned"
            bidirectional.update(ngram_streams=2)
        # no positions but a kind's own (QSA's block keys take RoPE or none, LongT5's global keys no RoPE)
        model = tiny("gpt-tiny", n_layers=2, context_length=64, attention=kind, **window, **bidirectional,
                     positions=needs or "none")
        save_model(model, tmp_path / kind)
        with torch.no_grad():
            assert torch.equal(model(x).logits, llmarch.load(tmp_path / kind).eval()(x).logits), kind


def test_missing_truncated_and_mismatched_checkpoints(tmp_path):
    with pytest.raises(LlmarchError, match="does not exist"):
        llmarch.load(tmp_path / "nowhere")
    with pytest.raises(LlmarchError, match="is not a checkpoint"):
        llmarch.load(tmp_path)
    save_model(tiny(), tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(LlmarchError, match="truncated or corrupt"):
        llmarch.load(tmp_path)
    weights.unlink()
    with pytest.raises(LlmarchError, match="has no model.safetensors"):
        llmarch.load(tmp_path)
    save_model(tiny(), tmp_path)
    tiny(n_layers=3).config.save(tmp_path / "config.json")
    with pytest.raises(LlmarchError, match="missing tensor blocks.2"):
        llmarch.load(tmp_path)
    tiny(d_model=32).config.save(tmp_path / "config.json")
    with pytest.raises(LlmarchError, match="has shape"):
        llmarch.load(tmp_path)


def test_writing_a_directory_in_place_spares_its_neighbours_and_links(tmp_path):
    """atomic_directory moved an existing output aside under the fixed name .NAME.old, deleting whatever the user
    had there first; now a fresh name. An output given as a link to a directory is written where it points, the
    link kept. The directory takes the umask's permissions, not mkdtemp's owner-only ones."""
    import os

    from llmarch.rundir import atomic_directory

    (tmp_path / "out").mkdir()
    (tmp_path / ".out.old").mkdir()
    (tmp_path / ".out.old" / "keep").write_text("precious")
    atomic_directory(tmp_path / "out", lambda d: (d / "a").write_text("1"))
    atomic_directory(tmp_path / "out", lambda d: (d / "b").write_text("2"))
    assert (tmp_path / ".out.old" / "keep").read_text() == "precious"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.old", "out"]  # nothing else left behind
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~umask
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    atomic_directory(tmp_path / "link", lambda d: (d / "c").write_text("3"))
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "c").read_text() == "3"
