import json
import os
from pathlib import Path

import pytest
import torch

import llmarch

# Under pytest-xdist each worker takes one core: two workers with two threads each would fight for two cores
# (OpenMP threads wait for a descheduled peer at every op). The commands a test runs inherit the same limit.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


# The longest tests (9-48 s each on the 2-core VM), run first: xdist's worksteal scheduler hands each worker a
# contiguous half of the collection and lets an idle one take from the other's end, so short tests left last fill
# both workers to the finish; these sat at the collection's end (test_train, test_seq2seq_train ...), where one
# worker ran a 40 s test alone while the other had nothing left.
LONG_FIRST = ("tests/test_train.py::test_demo_recipe", "tests/test_seq2seq_train.py::test_seq2seq_default_task",
              "tests/test_finetune.py::test_finetuning_beats", "tests/test_resume.py::test_killed_at_random",
              "tests/test_distributed.py", "tests/test_scaling.py::test_sweep_under_torchrun",
              "tests/test_gated_deltanet.py::test_gated_deltanet_tiny_learns", "tests/test_ssm.py::test_tiny_presets",
              "tests/test_quant.py::test_every_tiny_preset", "tests/test_scaling.py::test_tiny_sweep")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: not item.nodeid.startswith(LONG_FIRST))  # stable: the rest keep their order


@pytest.fixture(autouse=True, scope="session")
def _cache(tmp_path_factory):
    """A fresh tokenizer and token cache for the session, shared by its xdist workers (the parent of a worker's
    base temporary directory is the session's): the default BPE tokenizer and the corpus' tokens took about 45 s
    to make, once in each worker. The library locks an entry while it fills it (data/dataset.py's `filling`)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.getbasetemp().parent / "llmarch-cache"
        folder.mkdir(exist_ok=True)
    else:
        folder = tmp_path_factory.mktemp("llmarch-cache")
    os.environ["LLMARCH_CACHE"] = str(folder)


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


def assert_cached_decoding_and_config_round_trip(ours, ids, mask, generated, written) -> None:
    """After a parity check (test_hf_families.assert_matches_transformers: ids, mask and the generated rows, the
    model written by to_hf in `written`): decoding from the cache, the prompt then one token per call, gives the
    whole forward's logits within 1e-4 on every real position, and the written model reads back to the same
    config."""
    from llmarch.interop import from_hf

    full_mask = torch.cat([mask, torch.ones(mask.shape[0], generated.shape[1] - ids.shape[1], dtype=mask.dtype)], 1)
    assert_cached_equals_whole(ours, generated, ids.shape[1], full_mask)
    cfg = ours.config
    assert from_hf(written).config.to_dict() == {**cfg.to_dict(), "name": cfg.name}


def assert_cached_equals_whole(model, ids, prompt_len: int, mask) -> None:
    """Decoding from the cache (stepwise_logits: the first prompt_len tokens, then one per call) gives the whole
    forward's logits within 1e-4 on every real position of mask (fp32)."""
    with torch.no_grad():
        whole = model(ids, attention_mask=mask).logits
    step = stepwise_logits(model, ids, prompt_len, mask)
    assert (step - whole)[mask.bool()].abs().max() <= 1e-4


def stepwise_logits(model, ids, prompt_len: int, mask=None) -> torch.Tensor:
    """(B, T, V): the logits of ids' first prompt_len tokens in one call, then of one token per call over the
    model's decode state (mask: the left-padded rows' real tokens), to compare with the whole forward's."""
    T = ids.shape[1]
    with torch.no_grad():
        model.setup_cache(ids.shape[0] // max(model.config.codebooks, 1), T)  # K codebook rows share a sequence
        try:
            steps = [model(ids[:, :prompt_len], attention_mask=mask, input_pos=torch.arange(prompt_len),
                           kv_len=prompt_len).logits]
            steps += [model(ids[:, t:t + 1], attention_mask=mask, input_pos=torch.tensor([t]), kv_len=t + 1).logits
                      for t in range(prompt_len, T)]
        finally:
            model.clear_cache()
    return torch.cat(steps, dim=1)


@torch.no_grad()
def routed_apart(hf):
    """A transformers MoE's routers made decisive: its 0.02-init router weights routed near-uniformly, so a wrong
    choice of experts would hide; an expert bias (0 at init) moved, so that it changes the choice. A router initialised
    to zeros (AFMoE's) is drawn first, as the others are."""
    for name, p in hf.named_parameters():
        if name.endswith(("mlp.gate.weight", "mlp.gate.wg.weight", "router.layer.weight", "feed_forward.gate.weight",
                          "mlp.router.gate.weight", "block_sparse_moe.router.weight")):
            if not p.any():
                p.normal_(0.0, 0.02)
            p.mul_(20.0)
    for name, b in [*hf.named_buffers(), *hf.named_parameters()]:
        if name.endswith(("e_score_correction_bias", "feed_forward.expert_bias", "mlp.expert_bias")):
            b.copy_(torch.randn_like(b) * 0.5)
    return hf


def image_token_batch(lengths, runs, token: int, seed: int = 1):
    """ids (B, T) of random tokens below 99 left-padded to the longest of `lengths` (real tokens per row), row r
    holding `token` in runs[r]'s (start, count) runs, start counted from its first real token; its mask; and the
    generator, to draw the images from next (the vision parity tests' batches)."""
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids, mask = torch.randint(0, 99, (len(lengths), T), generator=g), torch.zeros(len(lengths), T, dtype=torch.long)
    for row, (n, spans) in enumerate(zip(lengths, runs)):
        mask[row, T - n:] = 1
        for start, count in spans:
            ids[row, T - n + start:T - n + start + count] = token
    return ids, mask, g


def prefilled_then_stepped(model, ids, mask, P: int, embeds, **step_args) -> torch.Tensor:
    """Logits (B, T - P + 1, V) of ids (B, T): the first P tokens prefilled in one step from `embeds` (B, P, C) (the
    images' embed_inputs; step_args: the step's others, e.g. prefix_mask), then each later token decoded alone over
    the cache; what a test compares with the whole forward's logits from position P - 1 on."""
    B, T = ids.shape
    with torch.no_grad():
        model.setup_cache(B, T)
        try:
            steps = [model.step(ids[:, :P], torch.arange(P), P, mask, embeds=embeds, **step_args).logits]
            steps += [model(ids[:, t:t + 1], attention_mask=mask, input_pos=torch.tensor([t]), kv_len=t + 1).logits
                      for t in range(P, T)]
        finally:
            model.clear_cache()
    return torch.cat(steps, 1)


def perturbed(model):
    """Every 1-D parameter (norm gains, biases) moved off its init by N(0, 0.1), so a missing or swapped one shows;
    in eval mode."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def seq2seq_pair(name, ref, tmp_path_factory, prepare=None):
    """A seq2seq `pair` fixture's value, (name, ref, llmarch's model read from ref's checkpoint): ref perturbed and
    its logits bias (BART's final_logits_bias) drawn too, then `prepare(ref)`, if given, before it is saved."""
    perturbed(ref)
    if hasattr(ref, "final_logits_bias"):
        with torch.no_grad():
            ref.final_logits_bias.normal_()
    if prepare is not None:
        prepare(ref)
    path = tmp_path_factory.mktemp(name)
    ref.save_pretrained(path)
    return name, ref, llmarch.from_hf(path)


def saved_with_processor(hf, folder, eos_token_id: int, *parts):
    """A random transformers model perturbed, its generation config stopping at no EOS (greedy runs as long as
    asked), saved to `folder` with its processor's `parts` (a processor, or its tokenizer and image processor) and a
    generation_config.json naming eos_token_id for llmarch; the model (the image-file tests' checkpoints)."""
    perturbed(hf).generation_config.eos_token_id = None
    for part in (hf, *parts):
        part.save_pretrained(folder)
    (Path(folder) / "generation_config.json").write_text(json.dumps({"eos_token_id": eos_token_id}))
    return hf


def perturbed_from_hf(hf, folder):
    """A random transformers model, perturbed, saved to `folder` and read back by llmarch.from_hf: what the parity
    tests compare against."""
    perturbed(hf).save_pretrained(folder)
    return llmarch.from_hf(folder)


def gguf_reads_back(path, model, vocab: int = 256, exact: bool = True, apart: float = 1e-4):
    """The F32 .gguf file at `path`, written from `model`: read back by llmarch to logits within 1e-4, then
    decoded by llama.cpp (the test skips without llama-cpp-python; with `exact`, an F32 KV cache and no flash
    attention) to llmarch's greedy tokens, its logits within `apart` of llmarch's. Returns the model read back."""
    back = llmarch.from_gguf(path)
    torch.manual_seed(1)
    ids = torch.randint(0, vocab, (1, 24))
    with torch.no_grad():
        assert (back(ids).logits - model(ids).logits).abs().max() <= 1e-4
    seq, ours, diff = llama_cpp_against(path, model, ids[0, :8].tolist(), exact=exact)
    assert diff <= apart and ours == seq
    return back


def scaled(cfg):
    """A random model of `cfg`, 1-D parameters perturbed, matrices x5 (logits up to ~3, where a wrong layer shows)."""
    torch.manual_seed(0)
    model = perturbed(llmarch.build(cfg))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5.0)
    return model


def gguf_written_and_decoded(model, tmp_path, apart: float = 1e-4):
    """model's F32 GGUF read back and decoded by llama.cpp as llmarch decodes it (gguf_reads_back, within `apart`);
    its cached decoding over a left-padded batch equal to the whole forward; its config.json read back to the same
    model. Returns the GGUF reader and the config.json."""
    import json

    import gguf

    from llmarch.data.tokenizer import ByteTokenizer
    from llmarch.interop.gguf_writer import to_gguf

    path = tmp_path / "x.gguf"
    to_gguf(model, path, "f32", ByteTokenizer())
    gguf_reads_back(path, model, apart=apart)
    torch.manual_seed(2)
    ids = torch.randint(0, 256, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    assert_cached_equals_whole(model, ids, 7, mask)
    llmarch.to_hf(model, tmp_path / "hf")
    back = llmarch.from_hf(tmp_path / "hf")
    assert back.config.to_dict() == model.config.to_dict()
    with torch.no_grad():
        assert torch.equal(back(ids).logits, model(ids).logits)
    return gguf.GGUFReader(str(path)), json.loads((tmp_path / "hf" / "config.json").read_text())


def llama_cpp_against(path, model, prompt: list[int], exact: bool = False):
    """test_llama_cpp.greedy_against_llmarch (llama.cpp's greedy tokens on the file, llmarch's by `model`, their
    largest logit difference); the test skips where llama-cpp-python is not installed."""
    llama_cpp_test = pytest.importorskip("test_llama_cpp", reason="llama-cpp-python is not installed")
    return llama_cpp_test.greedy_against_llmarch(path, model, prompt, exact=exact)


def llama_cpp_prompt_logits(path, prompt: list[int], vocab: int):
    """llama.cpp's logits (len(prompt), vocab) for every position of `prompt` decoded in one batch (one thread, its
    multi-token path); the test skips where llama-cpp-python is not installed."""
    import numpy as np

    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    import llama_cpp._logger

    llama_cpp._logger.set_verbose(False)
    params = llama_cpp.llama_model_default_params()
    params.use_extra_bufts = False  # as test_llama_cpp.LlamaCpp
    lm = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    ctx_params = llama_cpp.llama_context_default_params()
    ctx_params.n_ctx, ctx_params.n_threads, ctx_params.n_threads_batch = 64, 1, 1
    ctx = llama_cpp.llama_init_from_model(lm, ctx_params)
    batch = llama_cpp.llama_batch_init(len(prompt), 0, 1)
    try:
        for i, token in enumerate(prompt):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, i, 1, True
            batch.seq_id[i][0] = 0
        batch.n_tokens = len(prompt)
        assert llama_cpp.llama_decode(ctx, batch) == 0
        return np.stack([np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, i), shape=(vocab,)).copy()
                         for i in range(len(prompt))])
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(lm)


def llama_cpp_embedding(path, text: str) -> tuple:
    """llama.cpp's token ids for `text` (with bos, special tokens as such) and its unnormalised sentence embedding of
    it, from the GGUF file at `path`; the test skips where llama-cpp-python is not installed."""
    import numpy as np

    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    lc = llama_cpp.Llama(model_path=str(path), embedding=True, n_ctx=128, n_threads=1, verbose=False)
    try:
        return lc.tokenize(text.encode(), add_bos=True, special=True), np.array(lc.embed(text, normalize=False))
    finally:
        lc.close()


def byte_checkpoint(folder, context_length: int = 64):
    """A tiny random LLaMA (2 layers of 64, byte vocabulary) saved with its byte tokenizer: the base the
    fine-tuning tests (SFT, DPO, QLoRA) load from disk. Returns the checkpoint's path."""
    from llmarch.checkpoint import save_model
    from llmarch.data import ByteTokenizer

    path = folder / "ckpt"
    torch.manual_seed(0)
    save_model(llmarch.build("llama-tiny", vocab_size=257, n_layers=2, d_model=64, n_heads=4, n_kv_heads=2,
                             ffn_hidden=128, context_length=context_length), path)
    ByteTokenizer().save(path)
    return path


def assert_multimodal_reads_as_text(folder, mm, ids, published, text_type: str, ours):
    """mm (a transformers multimodal model holding the text model `ours` was read from) saved to `folder`, in
    transformers' names and in the published ones (published: name -> name), each read by from_hf as its text model
    `text_type`: logits on ids within 1e-4 of mm's, equal to ours'. Returns the model read."""
    from safetensors.torch import load_file, save_file

    mm.save_pretrained(folder)
    with torch.no_grad():
        theirs = mm(input_ids=ids).logits
    file = next(folder.glob("*.safetensors"))
    saved = load_file(file)
    for names in (saved, {published(k): v for k, v in saved.items()}):
        save_file(names, file, metadata={"format": "pt"})
        read = llmarch.from_hf(folder)
        assert read.config.hf_model_type == text_type
        with torch.no_grad():
            assert (read(ids).logits - theirs).abs().max() <= 1e-4
            assert (read(ids).logits - ours(ids).logits).abs().max() == 0
    return read


def assert_encoder_round_trip(hf, ours, written, real, inputs: dict, labels: list[str] | None = None):
    """An encoder's checks (fp32): our logits for `inputs` (forward's keywords, input_ids first) equal transformers'
    within 1e-4 where `real` selects (a mask of real tokens, or a slice for a classifier's rows); to_hf into
    `written` loads in transformers' class to the same logits and reads back to the same config. Returns our logits
    and the reloaded transformers model."""
    from llmarch.interop import from_hf, to_hf

    with torch.no_grad():
        mine = ours(**inputs).logits
        assert (mine - hf(**inputs).logits)[real].abs().max().item() <= 1e-4
    to_hf(ours, written, labels=labels)
    again = type(hf).from_pretrained(written).eval()
    with torch.no_grad():
        assert (again(**inputs).logits - mine)[real].abs().max().item() <= 1e-4
    cfg = ours.config
    assert from_hf(written).config.to_dict() == {**cfg.to_dict(), "name": cfg.name}
    return mine, again


def measured_flops_per_token(model, *inputs, tokens: int) -> float:
    """The truth `llmarch info`'s training FLOPs per token are checked against: 3 times (forward, then a backward of
    twice its cost) the FLOPs torch's FlopCounterMode counts in one forward of `model` over `inputs`, per token.
    It counts matrix multiplies and attention only (no norms, biases or softmax), and on the CPU's SDPA kernel,
    which it has no formula for, torch's own sdpa formula (full scores: causal masking saves nothing, as PaLM's count
    assumes)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    sdpa = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
            lambda q, k, v, *args, out_shape=None, **kwargs: sdpa_flop_count(q, k, v)}
    with FlopCounterMode(display=False, custom_mapping=sdpa) as counter:  # with grad: its module tracker needs it
        model(*inputs)
    return 3 * counter.get_total_flops() / tokens


def trained_bpe(special: list[str], text: str, vocab_size: int = 300):
    """A small byte-level BPE (a `tokenizers.Tokenizer`) trained on `text`, with `special` tokens first (ids 0..):
    what the multimodal prompt tests wrap in transformers' PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.train_from_iterator([text] * 20, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tk
