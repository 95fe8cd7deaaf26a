import os

import pytest
import torch

import llmarch

# Under pytest-xdist each worker takes one core: two workers with two threads each would fight for two cores
# (OpenMP threads wait for a descheduled peer at every op). The commands a test runs inherit the same limit.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True, scope="session")
def _cache(tmp_path_factory):
    os.environ["LLMARCH_CACHE"] = str(tmp_path_factory.mktemp("llmarch-cache"))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A few real standard-library modules as a directory source."""
    from llmarch.data import read_documents

    folder = tmp_path_factory.mktemp("corpus")
    for doc in read_documents()[:30]:
        (folder / doc.name.replace("/", "_")).write_text(doc.text)
    return str(folder)


TINY = dict(vocab_size=97, d_model=64, n_layers=2, n_heads=4, context_length=64)


def tiny(base: str = "llama-tiny", **overrides):
    torch.manual_seed(0)
    return llmarch.build(base, **{**TINY, **overrides}).eval()
