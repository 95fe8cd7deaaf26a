"""Speculative decoding with a drafter that reads its target's states (models/drafter.py: Gemma 4's assistants),
as transformers' SinglePositionMultiTokenCandidateGenerator drives Gemma4AssistantForCausalLM. The first round, the
target reads the prompt alone and gives its token; every later round the drafter proposes up to k tokens from one
position, the last token's: step 1 reads [the target's embedding of the last token; the target's final hidden state
at the slot before it] and the target's keys and values of every slot it has read (its KV cache, of the last layer
of each attention kind), step i + 1 the same keys and values with [the embedding of drafted token i; the state the
drafter returned]. The target then reads the last token and the drafts in one forward, keeps them as draft_model.py
does (greedy: while they are its argmax, so the output is its own greedy decoding; sampled: Leviathan et al.'s
rejection rule, with the drafts drawn from the drafter's q), and its hidden state after the last kept token starts
the next round.

One difference from transformers: after a round that rejects a draft, transformers hands the drafter one key and
value more than the target has read (shared_kv_states cut to the sequence length, whose last slot then holds the
rejected draft's); the drafter here reads the slots the target has read, as after a round that keeps every draft."""
from __future__ import annotations

from dataclasses import fields

import torch

from ..errors import LlmarchError
from .engine import Engine
from .penalties import Penalties
from .sampling import draw
from .speculative import Speculator


def _keys(lc) -> tuple:
    """What a layer's cached keys and values are made with, as a drafter's queries must match them: heads, widths,
    norms and every positions field."""
    return (lc.n_kv_heads, lc.head_dim, lc.value_width, lc.qk_norm, lc.v_norm,
            *(getattr(lc, f.name) for f in fields(lc) if f.name.startswith(("rope_", "positions"))))


def sources(target, drafter) -> dict[str, int]:
    """Attention kind -> the target layer whose KV cache the drafter's layers of that kind read: the owner of the
    cache of the target's last layer of that kind. Raises (one line) where the drafter does not fit the target."""
    cfg, dcfg = target.config, drafter.config
    if cfg.is_encoder_decoder or not cfg.causal or cfg.head != "lm" or cfg.draft_target_width \
            or cfg.prefix_bidirectional:
        raise LlmarchError(f"speculative decoding with a drafter: the target {cfg.name} is not a decoder-only "
                           "language model")
    if dcfg.draft_target_width != cfg.d_model or dcfg.vocab_size != cfg.vocab_size or not cfg.embed_scale:
        raise LlmarchError(f"the drafter {dcfg.name} reads a target of width {dcfg.draft_target_width} and "
                           f"{dcfg.vocab_size} tokens whose embeddings are scaled by sqrt(width) (Gemma 4); the target "
                           f"{cfg.name} has width {cfg.d_model}, {cfg.vocab_size} tokens, "
                           f"embed_scale={cfg.embed_scale}")
    out = {}
    for i, kind in enumerate(drafter.kinds()):
        layers = [j for j in range(cfg.n_layers) if cfg.layer_mixer(j) == "attention"
                  and cfg.for_layer(j).attention == kind]
        j = cfg.kv_source(layers[-1]) if layers else None
        if j is None or _keys(cfg.for_layer(j)) != _keys(dcfg.for_layer(i)):
            raise LlmarchError(f"the drafter {dcfg.name}'s layer {i} reads keys of a {kind} layer with its heads, "
                               f"widths, norms and RoPE, which the target {cfg.name} has no layer of")
        out[kind] = j
    return out


def check_assistant(target, drafter, num_draft: int) -> dict[str, int]:
    """sources(target, drafter), with num_draft >= 1."""
    if num_draft < 1:
        raise LlmarchError(f"num_draft must be >= 1, got {num_draft}")
    return sources(target, drafter)


class Assisted(Speculator):
    """Rounds of a drafter proposing up to num_draft tokens from the target's states and the target checking them in
    one forward, for sequences of up to `total` tokens. sampler: draft_model.Sampler."""

    def __init__(self, target, drafter, total: int, num_draft: int, sampler, penalties: Penalties | None = None):
        self.sources = check_assistant(target, drafter, num_draft)
        self.drafter, self.total, self.num_draft, self.sampler = drafter, total, num_draft, sampler
        self.scale = target.config.d_model ** 0.5
        self.state = None  # (1, 1, W): the target's final hidden state at the slot before the last token
        super().__init__([(Engine(target, 1, total), "speculative decoding")], penalties)

    @torch.inference_mode()
    def step(self, seq: list[int]) -> list[int]:
        big = self.target
        device = big.slots.device
        if big.length == 0:  # the drafter starts from the target's state: the target reads the prompt first
            out = big.read(torch.tensor([seq], device=device), last_only=True)
            self.state = out.hidden_states[:, -1:]
            p = self.sampler.distribution(self.penalized(seq, out.logits[0, -1:]))
            return self.took([int(p.argmax(-1) if self.sampler.greedy else draw(p, self.sampler.generator))])
        # the target reads len(seq) + k slots, and a round adds <= k + 1
        k = max(0, min(self.num_draft, self.total - len(seq) - 1))
        proposal, q = self.propose(seq, k)
        out = big.read(torch.tensor([seq[big.length:] + proposal], device=device))
        p = self.sampler.distribution(self.penalized(seq, out.logits[0], proposal))  # (k + 1, V)
        n, token = self.sampler.verify(p, q, proposal)
        big.rewind(len(seq) + n)  # it has read seq and the n kept drafts; `token` is read next round
        self.state = out.hidden_states[:, n:n + 1]  # after the last kept token: what chose `token`
        self.count(k, n)
        return self.took(proposal[:n] + [token])

    def propose(self, seq: list[int], k: int) -> tuple[list[int], torch.Tensor | None]:
        """k tokens from the drafter after seq, and q (k, V), the distribution each was drawn from (None: greedy)."""
        if k == 0:
            return [], None
        model, drafter = self.target.model, self.drafter
        dtype = drafter.pre_proj.weight.dtype
        read = self.target.length  # slots the target has read; the last token sits at the next
        kv = {}
        for kind, j in self.sources.items():
            cache = model.blocks[j].seq_mixer.cache
            kv[kind] = cache.k.to(dtype), cache.v.to(dtype)
        pos = torch.tensor([[read]], device=self.target.slots.device)
        last, state = torch.tensor([[seq[-1]]], device=pos.device), self.state
        tokens, dists = [], []
        for _ in range(k):
            embeds = model.embed(last) * torch.tensor(self.scale, dtype=model.embed.weight.dtype)  # as the target's
            out = drafter(torch.cat([embeds, state], dim=-1).to(dtype), kv, read, pos)
            drafted = torch.cat(tokens).tolist() if tokens else []
            q = self.sampler.distribution(self.penalized(seq, out.logits[0], drafted))  # (1, V)
            token = q.argmax(-1) if self.sampler.greedy else draw(q, self.sampler.generator)  # (1,)
            tokens.append(token)
            dists.append(q)
            last, state = token[None], out.hidden_states.to(state.dtype)
        return torch.cat(tokens).tolist(), None if self.sampler.greedy else torch.cat(dists)
