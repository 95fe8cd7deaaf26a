"""Gemma 4's assistant drafters (gemma4_assistant over a gemma4_text target, gemma4_unified_assistant over a
gemma4_unified_text one) against transformers, through files: tiny seeded targets and assistants (1-D weights
perturbed, embeddings scaled so that logits are decisive) saved with save_pretrained and read by from_hf.
- The drafter's logits and next state for the same target states (keys and values of 12 slots, left-padded, a window
  of 4, so the sliding layers' last w + 1 slots matter) within 1e-4 in fp32, with the full head and with the
  centroid-masked one; a to_hf round trip that transformers loads to the same outputs.
- Greedy speculative decoding with it (generate(target, ..., draft=assistant)) gives the target's own greedy tokens,
  and in every round the same drafts, hence the same kept tokens, as transformers' assisted generation, with its
  keys and values cut to the slots the target has read (transformers hands the drafter one slot more after a round
  that rejects a draft: the rejected draft's; see generate/assistant.py), and in the first drafting round the same
  drafts as transformers unpatched. Windows there span the whole sequence: past the window transformers' sliding
  caches hand the drafter their last w - 1 slots and the whole verified block, rejected drafts included.
- Sampled rounds verify with the drafter's own distribution q; drafters that do not fit a target are refused."""
import contextlib
import io

import pytest
import torch

import llmarch
from llmarch.analysis import model_facts
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError
from llmarch.generate.assistant import Assisted
from llmarch.generate.draft_model import Sampler
from llmarch.generate.sampling import probabilities
from llmarch.interop import from_hf, to_hf

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
from transformers.generation.candidate_generator import SinglePositionMultiTokenCandidateGenerator  # noqa: E402

S, F = "sliding_attention", "full_attention"
TEXT = dict(vocab_size=32, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, global_head_dim=32, intermediate_size=96, sliding_window=4, layer_types=[S, F, S, F],
            attention_k_eq_v=True, num_global_key_value_heads=1, final_logit_softcapping=30.0)
DRAFT = dict(hidden_size=32, num_hidden_layers=2, layer_types=[S, F], intermediate_size=48)
KINDS = {"gemma4_assistant": ("Gemma4TextConfig", "Gemma4ForCausalLM", "Gemma4AssistantConfig",
                              "Gemma4AssistantForCausalLM", "gemma4_text"),
         "gemma4_unified_assistant": ("Gemma4UnifiedTextConfig", "Gemma4UnifiedForCausalLM",
                                      "Gemma4UnifiedAssistantConfig", "Gemma4UnifiedAssistantForCausalLM",
                                      "gemma4_unified_text")}


@torch.no_grad()
def build_pair(kind, folder, centroids=False, backbone=64, **text):
    """A target and its assistant, seeded, perturbed and saved under folder/target and folder/assistant."""
    *classes, text_type = KINDS[kind]
    text_cls, target_cls, config_cls, assistant_cls = (getattr(transformers, n) for n in classes)
    torch.manual_seed(0)
    extra = {} if text_type == "gemma4_unified_text" else dict(hidden_size_per_layer_input=0)
    target = target_cls(text_cls(**{**TEXT, **text, **extra})).eval()
    draft_text = {**TEXT, **text, **DRAFT, "model_type": text_type}
    if text_type == "gemma4_text":
        draft_text.update(hidden_size_per_layer_input=0, vocab_size_per_layer_input=0)
    ordered = dict(use_ordered_embeddings=True, num_centroids=4, centroid_intermediate_top_k=2) if centroids else {}
    assistant = assistant_cls(config_cls(text_config=draft_text, backbone_hidden_size=backbone, **ordered)).eval()
    for model, scale in ((target, 20.0), (assistant, 5.0)):
        for name, p in model.named_parameters():
            if p.dim() == 1:  # gains off their init, so a swapped norm cannot hide
                p.add_(torch.randn_like(p) * 0.1)
            elif name.endswith("embed_tokens.weight"):  # decisive logits: greedy choices far from ties
                p.mul_(scale)
        for name, b in model.named_buffers():
            if name.endswith("layer_scalar"):
                b.copy_(torch.rand(1) + 0.5)
    if centroids:  # the vocabulary in clusters of tokens out of order, so a wrong gather shows
        assistant.masked_embedding.token_ordering.copy_(torch.randperm(TEXT["vocab_size"]))
    target.generation_config.eos_token_id = None
    target.save_pretrained(folder / "target")
    assistant.save_pretrained(folder / "assistant")
    return target, assistant


@torch.no_grad()
def target_states(target):
    """transformers' target on a left-padded batch of 12 slots: (the drafters' inputs, keys and values, mask)."""
    torch.manual_seed(1)
    ids = torch.randint(1, TEXT["vocab_size"], (2, 12))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    out = target(ids, attention_mask=mask, output_hidden_states=True, return_shared_kv_states=True)
    inputs = torch.cat([target.get_input_embeddings()(ids[:, -1:]), out.hidden_states[-1][:, -1:]], dim=-1)
    return inputs, out.shared_kv_states, mask


@torch.no_grad()
def assert_drafts_alike(ours, hf, inputs, kv, mask):
    pos = torch.tensor([[12], [9]])  # each row's last token's position
    ref = hf(inputs_embeds=inputs, position_ids=pos, shared_kv_states=kv, attention_mask=mask)
    got = ours(inputs, {"full": kv[F], "sliding_window": kv[S]}, 12, pos, mask.bool())
    gaps = (got.logits - ref.logits).abs().max().item(), (got.hidden_states - ref.last_hidden_state).abs().max().item()
    assert max(gaps) < 1e-4, gaps
    return gaps


@pytest.mark.parametrize("kind,centroids", [("gemma4_assistant", False), ("gemma4_unified_assistant", True)])
def test_drafter_matches_transformers(kind, centroids, tmp_path):
    target, hf = build_pair(kind, tmp_path, centroids)
    ours = from_hf(tmp_path / "assistant")
    cfg = ours.config
    assert (cfg.hf_model_type, cfg.draft_target_width, cfg.kv_shared_layers, cfg.draft_centroids) == \
        (kind, 64, 2, 4 if centroids else 0)
    facts = model_facts(cfg)  # no decode state of its own: it reads the target's
    assert (facts["parameters"], facts["kv_cache_bytes_per_token"]) == (sum(p.numel() for p in hf.parameters()), 0)
    inputs, kv, mask = target_states(target)
    assert_drafts_alike(ours, hf, inputs, kv, mask)
    to_hf(ours, tmp_path / "written")
    again = getattr(transformers, KINDS[kind][3]).from_pretrained(tmp_path / "written").eval()
    assert_drafts_alike(ours, again, inputs, kv, mask)
    assert from_hf(tmp_path / "written").config == cfg


def rounds_of(spec, prompt, total):
    """Each round's (sequence length, drafts) and the final sequence, driving the speculator as generate does."""
    seq, drafts = list(prompt), []
    propose = spec.propose

    def recorded(s, k):
        out = propose(s, k)
        if out[0]:
            drafts.append((len(s), out[0]))
        return out

    spec.propose = recorded
    while len(seq) < total:
        seq += spec.step(seq)[:total - len(seq)]
    return drafts, seq


@torch.no_grad()
def transformers_rounds(target, assistant, prompt, new, monkeypatch, cut=True):
    """transformers' assisted generation, each round's (sequence length, drafts); cut: with the drafter reading the
    slots the target has read (its keys, values and mask cut to them)."""
    drafts, get = [], SinglePositionMultiTokenCandidateGenerator.get_candidates

    def get_candidates(self, input_ids, model_outputs=None, model_kwargs=None, **kw):
        read = input_ids.shape[1] - 1
        if model_outputs is not None and cut:
            model_outputs.shared_kv_states = {k: (v[0][:, :, :read], v[1][:, :, :read])
                                              for k, v in model_outputs.shared_kv_states.items()}
            mask = model_kwargs.get("attention_mask")  # None here: no padding
            model_kwargs = dict(model_kwargs, attention_mask=None if mask is None else mask[:, :read])
        ids, logits = get(self, input_ids, model_outputs=model_outputs, model_kwargs=model_kwargs, **kw)
        if ids.shape[1] > input_ids.shape[1]:
            drafts.append((input_ids.shape[1], ids[0, input_ids.shape[1]:].tolist()))
        return ids, logits

    monkeypatch.setattr(SinglePositionMultiTokenCandidateGenerator, "get_candidates", get_candidates)
    assistant.generation_config.num_assistant_tokens = 3
    ids = torch.tensor([prompt])
    out = target.generate(ids, attention_mask=torch.ones_like(ids), assistant_model=assistant, max_new_tokens=new,
                          do_sample=False)
    return drafts, out[0].tolist()


@pytest.mark.parametrize("kind", list(KINDS))
def test_greedy_rounds_match_transformers_assisted_generation(kind, tmp_path, monkeypatch):
    target, hf = build_pair(kind, tmp_path, vocab_size=8, sliding_window=32)
    ours, drafter = from_hf(tmp_path / "target"), from_hf(tmp_path / "assistant")
    prompt, new = [5, 3, 3, 6, 7], 24
    with Assisted(ours, drafter, len(prompt) + new, 3, Sampler(0.0, None, None, None)) as spec:
        drafts, seq = rounds_of(spec, prompt, len(prompt) + new)
        counts = spec.counts
    theirs, reference = transformers_rounds(target, hf, prompt, new, monkeypatch)
    assert seq == reference == llmarch.generate(ours, [prompt], new)[0]  # lossless: the target's greedy tokens
    assert drafts == theirs  # every round's drafts, so every round keeps as many
    assert drafts[0] == transformers_rounds(target, hf, prompt, new, monkeypatch, cut=False)[0][0]
    assert counts["accepted"] >= 3 and counts["accepted"] < counts["drafted"]  # rounds keep some and reject some
    stats = {}
    assert llmarch.generate(ours, [prompt], new, draft=drafter, num_draft=3, stats=stats)[0] == seq
    assert stats == counts


def test_sampled_rounds_verify_with_the_drafters_distribution(tmp_path, monkeypatch):
    """Each round's q is the distribution the drafts were drawn from (softmax of the drafter's logits under the
    sampling settings), so the rejection rule (draft_model.Sampler, Leviathan et al.) samples the target's p."""
    build_pair("gemma4_assistant", tmp_path, vocab_size=8, sliding_window=32)
    ours, drafter = from_hf(tmp_path / "target"), from_hf(tmp_path / "assistant")
    settings = dict(temperature=0.9, top_k=6, top_p=None)
    seen, verify = [], Sampler.verify

    def checked(self, p, q, proposal):
        seen.append((p, q, proposal))
        return verify(self, p, q, proposal)

    monkeypatch.setattr(Sampler, "verify", checked)
    logits, run = [], drafter.forward

    def recorded(*args):
        out = run(*args)
        logits.append(out.logits[0])
        return out

    monkeypatch.setattr(drafter, "forward", recorded)
    out = llmarch.generate(ours, [[5, 3, 3, 6, 7]], 12, draft=drafter, num_draft=3,
                           seed=0, **settings)
    assert len(out[0]) == 17 and seen
    rounds = [(q, x) for _, q, x in seen if x]  # the last round drafts nothing (the sequence's end)
    assert torch.allclose(torch.cat([q for q, _ in rounds]), probabilities(torch.cat(logits), **settings))
    assert all(q[range(len(x)), x].min() > 0 for q, x in rounds)  # each draft drawn where q has mass


def test_drafters_that_do_not_fit_are_refused(tmp_path):
    build_pair("gemma4_assistant", tmp_path)
    drafter = from_hf(tmp_path / "assistant")
    torch.manual_seed(0)
    llama = llmarch.build("llama-tiny", vocab_size=32, d_model=64)
    for target, message in ((llama, "whose embeddings are scaled"),
                            (from_hf(tmp_path / "target"), None)):
        if message is None:
            narrow = target.config
            target.config = narrow.replace(layer_overrides={**narrow.layer_overrides,
                                                            F: {**narrow.layer_overrides[F], "head_dim": 16}})
            message = "layer 1 reads keys of a full layer"
        with pytest.raises(LlmarchError, match=message):
            llmarch.generate(target, [[1, 2]], 4, draft=drafter)
    with pytest.raises(LlmarchError, match="decodes as generate"):
        llmarch.generate(drafter, [[1, 2]], 4)


def test_the_command_takes_an_assistant(tmp_path):
    from llmarch.cli import main

    build_pair("gemma4_assistant", tmp_path, vocab_size=257, sliding_window=32)
    ByteTokenizer().save(tmp_path / "target")  # the assistant's folder has none: it reads the target's ids
    base = ["generate", "--checkpoint", str(tmp_path / "target"), "--prompt", "abcabc", "--temperature", "0",
            "--max-new-tokens", "8"]
    outputs = []
    for extra in ([], ["--draft", str(tmp_path / "assistant"), "--num-draft", "2"]):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            assert main(base + extra) == 0, err.getvalue()
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1] and "drafted tokens accepted" in err.getvalue()
    build_pair("gemma4_assistant", tmp_path / "wide", backbone=96, vocab_size=257)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(base + ["--draft", str(tmp_path / "wide" / "assistant")]) == 2
    assert "reads a target of width 96" in err.getvalue() and len(err.getvalue().strip().splitlines()) == 1


@pytest.mark.parametrize("fields,message", [
    (dict(draft_target_width=64), "all read their target's keys and values"),
    (dict(draft_target_width=64, kv_shared_layers=2, draft_centroids=5), "must divide vocab_size 32"),
    (dict(draft_target_width=64, kv_shared_layers=2, draft_centroids=4, draft_centroid_top_k=5), "1 to 4"),
])
def test_the_drafter_fields_check_themselves(fields, message):
    with pytest.raises(LlmarchError, match=message):
        llmarch.resolve("llama-tiny", n_layers=2, vocab_size=32, **fields)
