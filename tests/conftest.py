import os

import pytest
import torch

import llmarch


@pytest.fixture(autouse=True, scope="session")
def _cache(tmp_path_factory):
    os.environ["LLMARCH_CACHE"] = str(tmp_path_factory.mktemp("llmarch-cache"))


TINY = dict(vocab_size=97, d_model=64, n_layers=2, n_heads=4, context_length=64)


def tiny(base: str = "llama-tiny", **overrides):
    torch.manual_seed(0)
    return llmarch.build(base, **{**TINY, **overrides}).eval()
