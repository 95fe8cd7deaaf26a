"""The residual block. Sequential pre-norm (GPT-2, LLaMA, T5): x += attn(n1(x)); x += ffn(n2(x)).
Sequential post-norm (Vaswani et al. 2017; BERT, BART): x = n1(x + attn(x)); x = n2(x + ffn(x)).
Sandwich (Gemma 2 and 3; the Sandwich-LN of CogView, Ding et al. 2021): pre-norm with a norm on each
sublayer's output too, x += post_ln1(attn(n1(x))); x += post_ln2(ffn(n2(x))), which bounds what each sublayer
adds to the residual stream.
Sequential res-post-norm (Swin Transformer V2, Liu et al. 2022, §3.1; OLMo 2, §3.2): the norm on each
sublayer's output before the residual add and none on its input, x += n1(attn(x)); x += n2(ffn(x)).
Parallel (GPT-NeoX): x += attn(n1(x)) + ffn(n2(x)); with shared_norm (PaLM §2, GPT-J, Falcon) one norm
feeds both: x += attn(n(x)) + ffn(n(x)), so the two input projections could run as one matmul.
A decoder block of an encoder-decoder (Vaswani et al. 2017, §3.1) has a third sublayer between the two,
cross-attention over the encoder output, with its own norm (ln_cross) placed the same way. TrOCR's decoder read
alone holds such a sublayer in each block and never runs it (held_cross_width: a text-only forward has no memory).
The first sublayer mixes across positions: the sequence mixer the config's per-layer pattern names (mixer.py:
attention, held as `attn`, or Mamba, Mamba-2, Hyena, held as `mixer`). With ffn='none' the block is the mixer
alone (Mamba's x += mixer(norm(x)), Gu & Dao 2023 §3.4); with mixer='none' the FFN alone, x += ffn(norm(x))
(Nemotron-H's MLP and MoE layers: no_mixer.py).
Normed-residual (MiniMax-01, arXiv 2501.08313, which uses DeepNorm, Wang et al. 2022): the residual add keeps the
normed input, x = alpha * n1(x) + attn(n1(x)); x = alpha * n2(x) + ffn(n2(x)): DeepNorm's post-norm
n(alpha * x + f(x)) with each norm moved before the sublayer it feeds (the first block's n1 normalises the
embeddings, the final norm the last add). residual_alpha is DeepNorm's alpha on the residual stream in any
sequential placement.
Granite (IBM Granite 3.x; residual_multiplier m) scales what each sublayer adds: x += m * attn(n1(x)); the
hook_attn_out / hook_mlp_out points see the scaled output, so resid_mid = resid_pre + attn_out still holds.
Gemma 4 (layer_scalar) multiplies a sequential block's output, the residual stream itself, by a stored constant;
with per-layer inputs (ple_dim) the block first adds its layer's gated input (layers/per_layer_inputs.py).
Gemma 3n: with LAuReL (laurel_rank; layers/laurel.py) the attention sublayer's residual gains a learned low-rank
term, x = (x + post_ln1(attn(h)) + laurel(h)) / sqrt(2), h = ln1(x); with AltUp (altup_streams; layers/altup.py)
the block's input and output are K residual streams (K, B, T, C): the sublayers run on the active stream's
prediction, the correction carries their result to every stream, and the per-layer input joins streams 1..K-1.
A mixer that takes the norm (Mixer.takes_norm; Zamba's shared block, layers/shared_block.py) gets x and ln1,
x += mixer(x, ctx, ln1), and applies the norm where its computation needs it.
Inkling (canon_out) passes each sublayer's output through a Canon layer, a short causal convolution with a
residual (layers/canon.py), before its residual add: x += canon(attn(n1(x))); x += canon(ffn(n2(x))).
DeBERTa-v2 (side_conv) joins a convolution of block 0's input to its output (layers/side_conv.py).
BitNet b1.58 (bitlinear) makes the projections of its mixer and FFN BitLinear layers (bitlinear.py).
LongCat-Flash (moe_shortcut): a mixture layer's experts read its FFN's normed input beside its dense FFN, and
their output is added at the end of the next block: x += ffn(n2(x)), then in block i + 1 x += ... + moe_i.
Beam, Ergo, Doge and ZAYA1 join each sublayer's output to the stream otherwise than by x + y (residual_mix:
depth-scaled, gated, scaled or affine adds, residual_mix.py).
Inkling 2 (attn_residual_block) carries a stack of block sums instead of one stream, and each sublayer reads a
softmax attention over it (block attention residuals: _depth, depth_attention.py)."""
from __future__ import annotations

import math

import torch
from torch import nn

from .altup import AltUp
from .attention import AttentionContext
from .attention_kinds import ATTENTION_KINDS
from .bitlinear import to_bitlinear
from .canon import Canon
from .cross_attention import CrossAttention
from .depth_attention import DepthAttention
from .loop_messages import MessageGates
from .ffn import ACTIVATIONS, FFN_ACTIVATION
from .ffn_factory import make_ffn, shortcut_moe
from .linear import Linear
from .hooks import HookPoint
from .hyper import HYPER_CONNECTIONS
from .lang_adapters import LanguageAdapters
from .laurel import Laurel
from .mixer import MIXERS, Mixer
from .norms import GatedNorm, make_norm
from .residual_mix import make_residual_mix
from .side_conv import SideConv


def identity(x: torch.Tensor) -> torch.Tensor:
    """A no-op dropout as a plain function: no module dispatch per call."""
    return x


def _post(sub: dict, part: str, ctx: AttentionContext):
    """What a pre-norm sublayer's output goes through before its residual add: the sandwich's norm (post_ln1,
    post_ln2), or a Canon layer (attn_canon, mlp_canon), or nothing."""
    canon = sub.get(f"{part}_canon")
    if canon is not None:
        return lambda y: canon(y, ctx)
    return sub.get("post_ln1" if part == "attn" else "post_ln2")


class Scaled:
    """A sublayer's output through its dropout, then times a constant (residual_multiplier). A plain callable,
    not a module: the block holds the dropout itself, and a multiplier of 1.0 gets no Scaled at all."""

    def __init__(self, drop, factor: float):
        self.drop, self.factor = drop, factor

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        return self.drop(y) * self.factor


class Block(nn.Module):
    def __init__(self, cfg, cross: bool = False, layer: int = 0):
        super().__init__()
        self.placement = cfg.norm_placement
        self.parallel = cfg.block == "parallel"
        mixer = MIXERS[cfg.layer_mixer(layer)]
        # ModernBERT's first block reads the embedding norm's output as it is (first_mixer_norm); a block without a
        # mixer (mixer 'none', mixes False: Nemotron-H's MLP and MoE layers) has no norm for it and skips it
        self.mixes = mixer.mixes
        # a mixer that is the whole block (Mixer.whole_block: Llama 3.2 Vision's cross-attention layer): x -> mixer(x)
        self.whole_block = mixer.whole_block
        # hyper-connections whose gates norm each sublayer's input (Qwen4-Exp's): no ln1 or ln2
        hc = cfg.hyper_connection != "none" and HYPER_CONNECTIONS[cfg.hyper_connection].norms_input
        self.ln1 = None if not mixer.mixes or hc else make_norm(cfg) if layer or cfg.first_mixer_norm else nn.Identity()
        # PEGASUS-X's global tokens (global_tokens: the first G rows) have a pre-attention norm of their own
        self.ln1_global = make_norm(cfg) if cfg.global_tokens and self.ln1 is not None else None
        self.global_tokens = cfg.global_tokens
        self.mixer_attr = mixer.attr
        self.mixer_takes_norm = mixer.takes_norm
        self.add_module(mixer.attr, mixer(cfg, layer))
        # T5Gemma 2's merged attention (attention_kinds/merged.py): the self-attention reads the memory itself
        self.merged = cross and cfg.layer_mixer(layer) == "attention" and ATTENTION_KINDS[cfg.attention].reads_memory
        self.cross = cross and not self.merged
        if self.cross:
            self.ln_cross, self.cross_attn = make_norm(cfg), CrossAttention(cfg)
            self.hook_cross_out = HookPoint()
        elif cfg.held_cross_width:  # held for the round trip and never run (self.cross False: TrOCR's decoder alone)
            self.ln_cross, self.cross_attn = make_norm(cfg), CrossAttention(cfg, cfg.held_cross_width)
        self.ln2 = None if cfg.shared_norm or cfg.ffn == "none" or hc or mixer.holds_ffn else make_norm(cfg)
        if cfg.norm_gate_rank:  # A.X-K2: the mixer's norm and a mixture FFN's with a low-rank gate (norms.py)
            self.ln1 = None if self.ln1 is None else GatedNorm(self.ln1, cfg.d_model, cfg.norm_gate_rank)
            if self.ln2 is not None and cfg.is_moe_layer(layer):
                self.ln2 = GatedNorm(self.ln2, cfg.d_model, cfg.norm_gate_rank)
        # None with ffn='none', or where the mixer runs the FFNs itself (MobileBERT's bottleneck block)
        self.mlp = None if mixer.holds_ffn else make_ffn(cfg, layer)
        self.mlp_reads_residual = getattr(self.mlp, "reads_residual", False)  # Gemma 4's experts beside its FFN
        self.mlp_reads_ctx = getattr(self.mlp, "reads_ctx", False)  # ZAYA1's router state, carried in ctx.carry
        self.mlp_reads_block_input = getattr(self.mlp, "reads_block_input", False)  # SmallThinker's early router
        # Beam's depth-scaled, Ergo's gated, Doge's scaled, ZAYA1's affine residual adds (residual_mix.py)
        self.res_attn = make_residual_mix(cfg, layer, 0) if mixer.mixes else None
        self.res_mlp = make_residual_mix(cfg, layer, 1) if self.mlp is not None else None
        # LongCat-Flash's shortcut-connected MoE (moe_shortcut): a mixture layer runs `moe` on its FFN's normed input
        # beside `mlp`; the next block adds its output at its end (ctx.carry, written and read by index)
        self.moe = shortcut_moe(cfg, layer)
        self.adds_shortcut = cfg.moe_shortcut and layer > 0 and cfg.is_moe_layer(layer - 1)
        if cfg.bitlinear != "none":  # BitNet b1.58: the mixer's and the FFN's projections as BitLinear
            to_bitlinear(self.seq_mixer)
            if self.mlp is not None:
                to_bitlinear(self.mlp)
        # Canon layers on each sublayer's output before its residual add (canon_out; canon.py: Inkling's attn_sconv and
        # mlp_sconv), x += canon(f(n(x)))
        self.attn_canon = Canon(cfg.d_model, cfg.canon_out, cfg.canon_scaled) if cfg.canon_out and mixer.mixes else None
        self.mlp_canon = Canon(cfg.d_model, cfg.canon_out, cfg.canon_scaled) if cfg.canon_out and self.mlp is not None \
            else None
        sandwich = cfg.norm_placement == "sandwich"  # Gemma 2's post_attention_ and post_feedforward_layernorm
        self.post_ln1 = make_norm(cfg) if sandwich else None
        self.post_ln2 = make_norm(cfg) if sandwich and self.mlp is not None else None
        self.post_ln_cross = make_norm(cfg) if sandwich and self.cross else None  # T5Gemma's post_cross_attn_layernorm
        # without dropout a plain function: no module dispatch per call, and no stray hook point named `drop`
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else identity
        # what each sublayer's output goes through before its residual add: the dropout, then times
        # residual_multiplier where one is set. Chosen here, so a model without one calls exactly the dropout;
        # kept out of _modules, where the dropout is registered once, as `drop`
        m = cfg.residual_multiplier
        self.__dict__["branch"] = self.drop if m == 1.0 else Scaled(self.drop, m)
        self.alpha = cfg.residual_alpha  # DeepNorm's alpha: the residual stream's multiplier in each add
        # Gemma 4's layer_scalar: the block's output, the whole residual stream, times a constant of the checkpoint
        # (a buffer, as transformers keeps it: no optimizer moves it)
        # per-layer inputs (ple_dim, Gemma 3n / Gemma 4): x += norm(act(x W_gate) * p_layer W_up) after the FFN
        self.layer = layer
        if cfg.ple_dim:
            self.ple_gate = Linear(cfg.d_model, cfg.ple_dim, bias=False)
            self.ple_proj = Linear(cfg.ple_dim, cfg.d_model, bias=False)
            self.ple_norm = make_norm(cfg)
            self.ple_act = ACTIVATIONS[FFN_ACTIVATION[cfg.ffn]]
        if cfg.layer_scalar:
            self.register_buffer("scalar", torch.ones(1))
        self.laurel = Laurel(cfg) if cfg.laurel_rank else None  # Gemma 3n's learned augmented residual
        self.altup = AltUp(cfg) if cfg.altup_streams > 1 else None  # Gemma 3n's alternating updates
        if cfg.hyper_connection != "none":  # hyper-connections (hyper.py): one around each sublayer
            self.attn_hc = HYPER_CONNECTIONS[cfg.hyper_connection](cfg)
            self.ffn_hc = HYPER_CONNECTIONS[cfg.hyper_connection](cfg)
        self.lang_adapters = LanguageAdapters(cfg) if cfg.languages else None  # X-MOD's, after the FFN
        if cfg.attn_residual_block:  # Inkling 2's block attention residuals (depth_attention.py): _depth
            self.starts_block = layer % cfg.attn_residual_block == 0
            split = cfg.attn_split_inputs  # the keys' and values' inputs each through a norm of its own
            self.attn_depth = DepthAttention(cfg.d_model, 3 if split else 1) if layer else None
            self.mlp_depth = DepthAttention(cfg.d_model)
            self.ln1_k, self.ln1_v = (make_norm(cfg), make_norm(cfg)) if split else (None, None)
            # a looped block of Inkling 2 Loop (recurrence 'loop', loop_message_rank): gates for its messages
            looped = cfg.recurrence == "loop" and cfg.loop_prelude <= layer < cfg.n_layers - cfg.loop_coda
            self.message_gates = MessageGates(cfg) if looped and cfg.loop_message_rank else None
        if cfg.side_conv and layer == 0:
            self.side_conv = SideConv(cfg)
        self.hook_resid_pre, self.hook_resid_mid, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_out, self.hook_mlp_out = HookPoint(), HookPoint()

    def held_modules(self) -> list[nn.Module]:
        """The parts this block holds and never runs: TrOCR's held cross-attention (held_cross_width) and a mixer
        that holds a layer its block skips in text-only use (Mixer.runs False: Llama 3.2 Vision's cross-attention
        layers, which run only with image states). Read and written back whole; an adapter's targets leave them out
        (adapters/targets.py)."""
        held = [self.ln_cross, self.cross_attn] if not self.cross and hasattr(self, "cross_attn") else []
        return held + ([] if self.seq_mixer.runs else [self.seq_mixer])

    def idle_parameters(self) -> int:
        """Parameters a run of this block does not multiply each token by once (analysis/accounting.py): those it
        holds and never runs (held_modules), and those whose cost depth_macs counts."""
        held = self.held_modules()
        if hasattr(self, "mlp_depth"):
            held += [self.mlp_depth] + [m for m in (self.attn_depth, self.message_gates) if m is not None]
        return sum(p.numel() for m in held for p in m.parameters())

    def depth_macs(self, rows: int, messages: bool) -> tuple[int, int]:
        """Over block attention residuals (_depth), (multiply-adds per token of this block's depth attentions over a
        stack of `rows` rows, and where it reads messages of its message gates; with three inputs for the mixer, its
        projection over the two more; the rows it hands on)."""
        after = rows + self.starts_block
        macs = (self.attn_depth.macs(rows) if self.attn_depth is not None else 0) + self.mlp_depth.macs(after)
        macs += sum(p.numel() for p in self.message_gates.parameters()) if messages else 0
        three = self.ln1_k is not None or messages  # attn_split_inputs, or the gated inputs (loop_messages.py)
        return macs + (self.seq_mixer.split_inputs_macs() if three else 0), after

    @property
    def seq_mixer(self) -> Mixer:
        """This block's sequence mixer, whichever it is."""
        return self._modules[self.mixer_attr]

    def set_memory(self, memory: torch.Tensor | None) -> None:
        """The encoder output decoding reads (None forgets it): projected by the cross-attention, or by a merged
        self-attention (T5Gemma 2)."""
        if self.cross:
            self.cross_attn.set_memory(memory)
        elif self.merged:
            self.attn.kind.set_memory(self.attn, memory)

    def _sublayer(self, x: torch.Tensor, norm: nn.Module, sublayer: nn.Module, hook: HookPoint, *args,
                  post: nn.Module | None = None, affine: nn.Module | None = None) -> torch.Tensor:
        """Pre-norm x + sublayer(norm(x)), sandwich x + post(sublayer(norm(x))), res-post-norm
        x + norm(sublayer(x)), post-norm norm(x + sublayer(x)), normed-residual norm(x) + sublayer(norm(x)) (x times
        residual_alpha in each); args: the sublayer's context."""
        a = self.alpha
        if self.placement == "normed_residual":
            x = norm(x)
            return (x if a == 1.0 else a * x) + hook(self.branch(sublayer(x, *args)))
        keep = x if a == 1.0 else a * x
        if self.placement in ("pre", "sandwich"):
            y = sublayer(norm(x), *args)
            y = hook(self.branch(y if post is None else post(y)))
            return keep + y if affine is None else affine(y, x)
        if self.placement == "res_post":
            return keep + hook(self.branch(norm(sublayer(x, *args))))
        return norm(keep + hook(self.branch(sublayer(x, *args))))

    def _ln1_with_globals(self, x: torch.Tensor) -> torch.Tensor:
        """ln1 over the tokens, ln1_global over the global tokens before them (x: (B, G + T, C))."""
        G = self.global_tokens
        return torch.cat([self._modules["ln1_global"](x[:, :G]), self._modules["ln1"](x[:, G:])], dim=1)

    def _hyper(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        """The block between hyper-connections (hyper.py), x (B, T, n, C): each pre-norm sublayer reads its
        connection's mix of the n streams and its output goes back into all n. A connection that norms the mix
        itself (norms_input) leaves the block without ln1 and ln2."""
        sub = self._modules
        x = sub["hook_resid_pre"](x)
        h, expand = sub["attn_hc"](x)
        x = sub["hook_resid_mid"](expand(self.attn_branch(h, ctx)))
        h, expand = sub["ffn_hc"](x)
        return sub["hook_resid_post"](expand(self.mlp_branch(h, ctx)))

    def attn_branch(self, h: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        """A hyper-connected block's first sublayer on its input h (B, T, C): dropout(mixer(ln1(h))), what its
        connection adds to the streams (also the F of the reversible backward, reversible_backward.py)."""
        sub = self._modules
        return sub["hook_attn_out"](self.branch(sub[self.mixer_attr]((sub.get("ln1") or identity)(h), ctx)))

    def mlp_branch(self, h: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        """A hyper-connected block's second sublayer on its input h (B, T, C): dropout(mlp(ln2(h)))."""
        sub = self._modules
        args = (ctx,) if self.mlp_reads_ctx else ()
        return sub["hook_mlp_out"](self.branch(sub["mlp"]((sub.get("ln2") or identity)(h), *args)))

    def _depth(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        """The block over block attention residuals (depth_attention.py), x (B, T, m + 1, C): the finished blocks'
        sums, then the partial one, h. Returns the stack after this layer (one row more where a block starts)."""
        sub = self._modules
        x = sub["hook_resid_pre"](x)
        done, h = x[:, :, :-1], x[:, :, -1]
        depth = sub.get("attn_depth")
        inputs = h.unsqueeze(2).float() if depth is None else depth(x)  # (B, T, 1 or 3, C)
        gates, messages = sub.get("message_gates"), ctx.messages
        if gates is not None and messages is not None:  # a looped block after the first pass: three gated inputs
            inputs = gates.attention_inputs(inputs, messages)
        split = sub.get("ln1_k") is not None
        if split or inputs.shape[2] == 3:  # the queries', keys' and values' inputs, each through its norm (or ln1)
            norms = (sub["ln1"], sub["ln1_k"], sub["ln1_v"]) if split else (sub["ln1"],) * 3
            a_in = torch.stack([n(inputs[:, :, min(j, inputs.shape[2] - 1)]) for j, n in enumerate(norms)], dim=2)
        else:
            a_in = sub["ln1"](inputs[:, :, 0])
        post1, post2 = _post(sub, "attn", ctx) or identity, _post(sub, "mlp", ctx) or identity
        a = sub["hook_attn_out"](post1(sub[self.mixer_attr](a_in.to(h.dtype), ctx)).float())
        if self.starts_block:  # the layer's input closes a block; the partial sum restarts at a
            done, h = torch.cat([done, h.unsqueeze(2)], dim=2), a
        else:
            h = h.float() + a
        x = sub["hook_resid_mid"](torch.cat([done, h.unsqueeze(2).to(done.dtype)], dim=2))
        m_in = sub["mlp_depth"](x)[:, :, 0]
        if gates is not None and messages is not None:
            m_in = gates.mlp(m_in, messages[:, :, 3])
        m_in = sub["ln2"](m_in)
        m = sub["hook_mlp_out"](post2(sub["mlp"](m_in.to(h.dtype))).float())
        return sub["hook_resid_post"](torch.cat([done, (h + m).unsqueeze(2).to(done.dtype)], dim=2))

    def _per_layer_input(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        """norm(act(x W_gate) * p W_up), p this layer's per-layer input (B, T, P)."""
        sub = self._modules
        p = ctx.per_layer[:, :, self.layer]
        return sub["ple_norm"](sub["ple_proj"](self.ple_act(sub["ple_gate"](x)) * p))

    def forward(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:  # x: (B, T, C)
        sub = self._modules  # not nn.Module's attribute fallback: a one-token step reads a dozen of them
        mixer, mlp = sub[self.mixer_attr], sub.get("mlp")  # .get: a part left out is None in __dict__
        if self.whole_block:
            return sub["hook_resid_post"](mixer(sub["hook_resid_pre"](x), ctx))
        if sub.get("attn_hc") is not None:
            return self._hyper(x, ctx)
        if sub.get("mlp_depth") is not None:
            return self._depth(x, ctx)
        x = x_in = sub["hook_resid_pre"](x)  # with AltUp: (K, B, T, C), the K streams
        altup = sub.get("altup")
        if altup is not None:
            predicted = altup.predict(x)
            x = predicted[altup.active]
        if self.parallel:
            h = sub["ln1"](x)
            a = sub["hook_attn_out"](self.branch(mixer(h, ctx)))
            m = sub["hook_mlp_out"](self.branch(mlp(h if sub.get("ln2") is None else sub["ln2"](x))))
            return sub["hook_resid_post"](x + a + m)
        if sub.get("laurel") is not None:  # LAuReL: (x + post(attn(h)) + laurel(h)) / sqrt(2), h = ln1(x)
            h, post = sub["ln1"](x), sub.get("post_ln1")
            y = mixer(h, ctx)
            a = sub["hook_attn_out"](self.branch(y if post is None else post(y)))
            x = (x + a + sub["laurel"](h)) / math.sqrt(2)
        elif self.mixer_takes_norm:  # pre-norm only (the mixer's check): the norm is the mixer's to apply
            x = x + sub["hook_attn_out"](self.branch(mixer(x, ctx, sub["ln1"])))
        elif self.mixes:
            ln1 = sub["ln1"] if sub.get("ln1_global") is None else self._ln1_with_globals
            x = self._sublayer(x, ln1, mixer, sub["hook_attn_out"], ctx, post=_post(sub, "attn", ctx),
                               affine=sub.get("res_attn"))
        x = sub["hook_resid_mid"](x)
        if self.cross:
            x = self._sublayer(x, sub["ln_cross"], sub["cross_attn"], sub["hook_cross_out"], ctx,
                               post=sub.get("post_ln_cross"))
        moe = sub.get("moe")
        if moe is not None:  # pre-norm only (moe_shortcut's check)
            h = sub["ln2"](x)
            ctx.carry[self.layer] = moe(h)
            x = x + sub["hook_mlp_out"](self.branch(mlp(h)))
        elif sub.get("lang_adapters") is not None:  # X-MOD: the FFN's residual sum through its language's adapter
            post = self.placement == "post"
            h = x + sub["hook_mlp_out"](self.branch(mlp(x if post else sub["ln2"](x))))
            x = sub["lang_adapters"](h, ctx.lang_ids, sub["ln2"])
            x = sub["ln2"](x) if post else x
        elif mlp is not None:
            args = (x,) if self.mlp_reads_residual else (x_in,) if self.mlp_reads_block_input else \
                (ctx,) if self.mlp_reads_ctx else ()
            x = self._sublayer(x, sub.get("ln2"), mlp, sub["hook_mlp_out"], *args, post=_post(sub, "mlp", ctx),
                               affine=sub.get("res_mlp"))
        if self.adds_shortcut:
            x = x + ctx.carry.pop(self.layer - 1)
        if altup is not None:  # the K streams again, then the per-layer input into streams 1..K-1
            x = altup.correct(predicted, x)
            if ctx.per_layer is not None:
                x = altup.add_to_rest(x, self._per_layer_input(altup.output(x), ctx))
        elif ctx.per_layer is not None:
            x = x + self._per_layer_input(x, ctx)
        scalar = self._buffers.get("scalar")
        if scalar is not None:
            x = x * scalar
        side = sub.get("side_conv")
        if side is not None:
            x = side(x_in, x, ctx.pad_mask)
        return sub["hook_resid_post"](x)
