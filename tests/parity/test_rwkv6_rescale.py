"""RWKV-6 GGUF files with `rwkv6.rescale_every_n_layers` n > 0, as every released Finch file has (n = 6): the
converter divides layer j's time_mix_output and channel_mix_value by 2^(j // n) and llama.cpp halves the residual
stream after every n-th layer; llmarch reads them back multiplied and gives the norms of layer j the epsilon
eps 4^(j // n), the output norm eps 4^(layers // n) (gguf_archs/rwkv6.py). The file here is such a file built as the
converter builds it (gguf's writer, from llmarch's own unrescaled file: the two weights divided, the key set), of a
tiny random model of 7 layers with n = 3 (three groups, weights divided up to by 4), its stream kept small (the
embedding norm's gains and the blocks' output weights shrunk) so that the epsilons matter: llama.cpp's logits at
every position of a prompt decoded in one batch are 1.8e-7 from the read model's (its greedy decoding 1.5e-7 from
llmarch's, to the same tokens), 0.094 from the same weights run with plain epsilons (and 3.5e-3 from them read
without the division undone). Heads of 64 (test_rwkv6.py), one of them."""
import re

import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.interop.gguf_writer import to_gguf

from conftest import assert_cached_equals_whole, llama_cpp_against, llama_cpp_prompt_logits
from test_gguf_older import rewrite
from test_rwkv6 import tiny_rwkv6

EVERY, LAYERS = 3, 7
PROMPT = [3, 141, 59, 26, 5, 35, 89, 79, 32, 38, 46, 26]


def _divided(every: int):
    """The converter's division (Rwkv6Model.modify_tensors): layer j's two output weights by 2^(j // every)."""
    def divide(tensors: dict) -> dict:
        out = {}
        for name, array in tensors.items():
            m = re.match(r"blk\.(\d+)\.(time_mix_output|channel_mix_value)\.weight$", name)
            out[name] = array / np.float32(2 ** (int(m[1]) // every)) if m else array
        return out
    return divide


def _rescaled_file(src, dst, every: int) -> None:
    rewrite(src, dst, "rwkv6", tensors=_divided(every),
            keys=lambda k, v: every if k == "rwkv6.rescale_every_n_layers" else v)


@pytest.fixture(scope="module")
def rescaled(tmp_path_factory):
    """(the model, its rescaled file, the model read from that file)."""
    model = tiny_rwkv6(d_model=64, n_heads=1, ffn_hidden=128, n_layers=2 * LAYERS,
                       layer_types=["time_mix", "channel_mix"] * LAYERS)
    with torch.no_grad():  # a stream of about 1e-4 variance, where eps 1e-5 x 4^k is no longer negligible
        model.embed_norm.weight.mul_(0.02)
        model.embed_norm.bias.mul_(0.02)
        for i, block in enumerate(model.blocks):
            (block.mixer.output if i % 2 == 0 else block.mixer.value).weight.mul_(0.02)
    folder = tmp_path_factory.mktemp("rwkv6_rescale")
    to_gguf(model, folder / "plain.gguf", "f32", ByteTokenizer())
    _rescaled_file(folder / "plain.gguf", folder / "rescaled.gguf", EVERY)
    return model, folder / "rescaled.gguf", llmarch.from_gguf(folder / "rescaled.gguf")


def test_llama_cpp_decodes_the_rescaled_file(rescaled):
    model, path, read = rescaled
    cfg = read.config
    assert cfg.layer_types[-2:] == ["time_mix_2", "channel_mix_2"]
    assert [cfg.for_layer(i).norm_eps / cfg.norm_eps for i in (5, 6, 13)] == [1, 4, 16]
    assert cfg.final_norm_eps == pytest.approx(16e-5)
    for i in (4, 7, 12, 13):  # the division undone exactly (powers of 2)
        name = "output" if i % 2 == 0 else "value"
        assert torch.equal(getattr(read.blocks[i].mixer, name).weight, getattr(model.blocks[i].mixer, name).weight)
    theirs = llama_cpp_prompt_logits(path, PROMPT, 272)
    with torch.no_grad():
        ours = read(torch.tensor([PROMPT])).logits[0].numpy()
        plain = model(torch.tensor([PROMPT])).logits[0].numpy()
    assert np.abs(theirs - ours).max() <= 1e-4
    assert np.abs(theirs - plain).max() > 1e-2  # the same weights with plain epsilons: the test can fail
    seq, greedy, diff = llama_cpp_against(path, read, PROMPT[:6], exact=True)
    assert seq == greedy and diff <= 1e-4


def test_cached_decoding_and_what_is_not_written(rescaled, tmp_path):
    read = rescaled[2]
    torch.manual_seed(2)
    ids = torch.randint(1, 272, (2, 9))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    assert_cached_equals_whole(read, ids, 6, mask)
    with pytest.raises(llmarch.LlmarchError, match="rescale_every_n_layers 3\\) cannot be written"):
        to_gguf(read, tmp_path / "x.gguf", "f32", ByteTokenizer())
    with pytest.raises(llmarch.LlmarchError, match="rescale_every_n_layers 3\\) cannot be written"):
        llmarch.to_hf(read, tmp_path / "hf")
    assert not (tmp_path / "x.gguf").exists() and not (tmp_path / "hf").exists()  # refused before writing


def test_the_released_files_every_6_layers(rescaled):
    """n = 6, the released files' (the HF configs' rescale_every): layer 6 alone in the second group, and the output
    norm; llama.cpp's logits for a prompt in one batch within 1e-4 of the read model's (measured 1.5e-7; 0.023 with
    plain epsilons)."""
    model, path, _ = rescaled
    _rescaled_file(path.parent / "plain.gguf", path.parent / "six.gguf", 6)
    read = llmarch.from_gguf(path.parent / "six.gguf")
    eps = [read.config.for_layer(i).norm_eps / read.config.norm_eps for i in range(0, 2 * LAYERS, 2)]
    assert eps == [1] * 6 + [4] and read.config.final_norm_eps == pytest.approx(4e-5)
    with torch.no_grad():
        ours = read(torch.tensor([PROMPT])).logits[0].numpy()
    assert np.abs(llama_cpp_prompt_logits(path.parent / "six.gguf", PROMPT, 272) - ours).max() <= 1e-4
