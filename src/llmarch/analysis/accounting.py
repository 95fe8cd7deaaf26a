"""Parameter, FLOP and KV-cache accounting. The model is built on the meta device, so counting an
8B-parameter preset costs no memory and the count is exact (it is the model's own parameters).

- parameters: every distinct parameter (a tied LM head counted once).
- non_embedding_parameters: parameters less the token embedding and learned position table
  (Kaplan et al. 2020, §2.1), and the per-layer embedding table (ple_dim; Gemma 3n / Gemma 4's "effective"
  parameters leave it out too).
- flops_per_token (training, forward + backward) = 6·N + 12·L·d_attn·T  (PaLM, Chowdhery et al. 2022,
  appendix B), N = the parameters used in matrix multiplies per token: non-embedding parameters plus
  the LM head when it is tied (the head is a matmul even when it shares the embedding's weights);
  L layers, d_attn = heads·head_dim, T = context_length. Per layer 12·d_attn·T is 6·T times the widths of
  q.k and pattern.v (Mixer.score_dims): latent attention's are H·(d_h + d_h^R) and H·d_v.
  A shared block's weights (Zamba's, layers/shared_block.py; ALBERT's layer_groups) count in N once per layer
  that runs it. A block that runs over a share of the tokens counts at that share (Funnel's pooled groups: 1/2,
  1/4 ...; its attention term at the queries' times the keys' share), and a stack whose tokens each bring two
  rows counts twice (ProphetNet's decoder, its predicting stream). Weights a block holds and never runs
  (Block.idle_parameters: TrOCR's held cross-attention, Llama 3.2 Vision's skipped cross-attention layers) count
  as parameters, not FLOPs. A model whose stacks run over other rows than its tokens gives each stack's rows per
  token and what its parts outside the stacks cost (stack_rows, outside_macs: Perceiver IO's latents, BLT's
  patches at mean_patch_length bytes each). Block attention residuals (Inkling 2) add their depth attentions over
  the stack of block sums as it then is, and Inkling 2 Loop's passes their messages (_depth_macs).
- active_parameters: those one token uses. A mixture-of-experts layer holds E experts but runs k of them per
  token, so (E - k) / E of its expert weights sit idle (Mixtral 8x7B: 46.7B parameters, 12.9B active). The
  FLOPs count active parameters only.
- kv_cache_bytes_per_token = 2 (K and V) · L_attn · kv_heads · head_dim · bytes per element, L_attn the layers
  whose mixer is attention (all of them but in SSM and hybrid stacks); latent attention's is
  L · (kv_lora_rank + head_dim) · bytes per element (its mixer's cache_bytes).
- state_bytes_per_sequence: what the other mixers carry per sequence while generating, measured from the
  states they allocate (layers/ssm.py): Mamba's convolution inputs and (D, N) fp32 state, a constant however
  long the context; Hyena's history of its long convolutions' inputs, which is context_length long.
- The 12·L·d_attn·T term counts attention layers only; a scan or FFT convolution adds O(D·N) or
  O(d log T) FLOPs per token outside matmuls, which this count leaves out as it leaves out softmax.
Encoder-decoders: the position tables (or T5's bias tables) of both stacks count as embedding; FLOPs are per
pair of one source and one target token (each stack's parameters act on its own tokens), with L the layers of
both stacks; the KV cache is the decoder's, per target token."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..layers.canon import Canon
from ..layers.mixer import MIXERS

DTYPE_BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "int8": 1}


def model_facts(cfg: ModelConfig, dtype: str = "bf16") -> dict[str, int]:
    from ..errors import LlmarchError
    from ..models.build import empty_model, stacks

    if dtype not in DTYPE_BYTES:
        raise LlmarchError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPE_BYTES)}")

    model = empty_model(cfg)  # shapes only: no initialiser runs (on meta they cost seconds and compute nothing)
    total = sum(p.numel() for p in model.parameters())
    positions = sum(p.numel() for stack, _ in stacks(model).values() for p in stack.positions.parameters())
    per_layer = getattr(model, "per_layer", None)  # Gemma 3n / 4's per-layer embedding table is an embedding too
    encoder_embed = getattr(model, "encoder_embed", None)  # T5Gemma's encoder table
    embedding = model.embed.weight.numel() + positions + (per_layer.embed.weight.numel() if per_layer else 0)
    embedding += encoder_embed.weight.numel() if encoder_embed is not None else 0
    non_embedding = total - embedding
    idle = 0
    for stack, _ in stacks(model).values():
        for block in stack.blocks:
            experts = getattr(block.moe or block.mlp, "experts", None)  # moe: a shortcut-connected mixture
            if experts is not None:
                idle += sum(p.numel() for p in experts.parameters()) * (cfg.n_experts - cfg.experts_per_token) \
                    // cfg.n_experts
    matmul = non_embedding - idle + (model.lm_head.weight.numel() if cfg.tied_head else 0)
    for side in ("vision", "audio"):  # the image and audio sides run once per image or clip, not per token
        part = getattr(model, side, None)
        matmul -= sum(p.numel() for p in part.parameters()) if part is not None else 0
    T = cfg.context_length
    # a model whose stacks run over other than one row per token says how many (BLT's global transformer over
    # patches, Perceiver IO's latent stack over its latents), and what its parts outside the stacks cost
    stack_rows = model.stack_rows(T) if hasattr(model, "stack_rows") else {}
    if hasattr(model, "outside_macs"):
        claimed, macs = model.outside_macs(T)
        matmul += round(macs) - claimed
    score_dims = 0.0
    for name, (stack, stack_cfg) in stacks(model).items():
        # blocks counted once in non_embedding: each run of a block adds its weights again at the share of the
        # tokens it runs over (ALBERT's layer_groups and HRM's cycles run blocks more than once, Funnel's pooled
        # groups over fewer tokens), times the rows each token brings (ProphetNet's predicting stream: two)
        runs, layers, shares = _runs(stack, stack_cfg)
        rows = (2 if stack_cfg.ngram_streams else 1) * stack_rows.get(name, 1.0)
        held = [sum(p.numel() for p in b.parameters()) for b in stack.blocks]
        sizes = [n - b.idle_parameters() for n, b in zip(held, stack.blocks)]  # what a run multiplies by
        matmul += round(sum(sizes[j] * q * rows for j, (q, _) in zip(runs, shares))) - sum(held)
        uses = [b.seq_mixer.block_id for b in stack.blocks if b.seq_mixer.reads_shared_blocks]
        for k, shared in enumerate(getattr(stack, "shared_blocks", None) or ()):  # Zamba's, at each use
            matmul += sum(p.numel() for p in shared.parameters()) * max(uses.count(k) - 1, 0)
        keys = stack_rows.get(name, 1.0)  # each of the stack's rows attends over its rows, not the tokens
        score_dims += rows * keys * sum(MIXERS[stack_cfg.layer_mixer(i)].score_dims(stack_cfg.for_layer(i)) * q * k
                                        for j, i, (q, k) in zip(runs, layers, shares) if stack.blocks[j].seq_mixer.runs)
        matmul += _depth_macs(stack, runs)
    flops = 6 * matmul + round(6 * score_dims * T)
    kv, state = _cache_bytes(model, cfg, dtype)
    return {"parameters": total, "active_parameters": total - idle, "non_embedding_parameters": non_embedding,
            "flops_per_token": flops,
            "kv_cache_bytes_per_token": kv, "state_bytes_per_sequence": state}


def _runs(stack, cfg: ModelConfig) -> tuple[list[int], list[int], list[tuple[float, float]]]:
    """Each run of a block in a forward: its block, the layer whose config it runs (the same but for ALBERT's
    shared groups) and its (query, key) share of the tokens (a recurrence's token_shares, where it pools)."""
    recurrence = getattr(stack, "recurrence", None)
    if recurrence is not None:  # HRM, loops: block j runs order.count(j) times
        runs = recurrence.order()
        layers = runs
    else:  # ALBERT's layer_groups: layer i runs block block_order[i]
        layers = list(range(cfg.n_layers))
        runs = list(stack.block_order) if stack.block_order else layers
    token_shares = getattr(recurrence, "token_shares", None)  # Funnel's pooled groups
    return runs, layers, token_shares() if token_shares is not None else [(1.0, 1.0)] * len(runs)


def _depth_macs(stack, runs: list[int]) -> int:
    """Multiply-adds per token of block attention residuals (layers/depth_attention.py): each run's depth
    attentions over the stack of block sums as it then is (Block.depth_macs; Inkling 2 Loop's passes, their message
    retrievals and gates: Loop.depth_macs), then the final norm's input's; less the queries of the final one and of
    the messages, which count in those and not as weights."""
    final = getattr(stack, "final_depth", None)
    if final is None:
        return 0
    messages = getattr(stack.recurrence, "messages", None)
    if messages is not None:
        macs, rows = stack.recurrence.depth_macs(stack.blocks, 1)
    else:
        macs, rows = 0, 1  # the embeddings, the partial sum
        for j in runs:
            m, rows = stack.blocks[j].depth_macs(rows, False)
            macs += m
    queries = final.query.numel() + (messages.query.numel() if messages is not None else 0)
    return macs + final.macs(rows) - queries


def _cache_bytes(model: torch.nn.Module, cfg: ModelConfig, dtype: str) -> tuple[int, int]:
    """(bytes per token, bytes per sequence) of the decode state of the stack that generates (the decoder of an
    encoder-decoder), each mixer reporting its own (Mixer.cache_bytes): a KV cache grows per token, a
    recurrent state is per sequence."""
    torch_dtype = {1: torch.int8, 2: torch.bfloat16, 4: torch.float32}[DTYPE_BYTES[dtype]]
    own = getattr(model, "cache_bytes", None)  # a model whose decode state is not its blocks' (BLT's bytes so far)
    if own is not None:
        return own()
    stack = model.decoder if cfg.is_encoder_decoder else model
    recurrence = getattr(stack, "recurrence", None)  # HRM: each invocation of a block its own state
    blocks = stack.blocks if recurrence is None else [stack.blocks[j] for j in recurrence.order()]
    sizes = [block.seq_mixer.cache_bytes(torch_dtype, cfg.context_length) for block in blocks]
    # Canon layers (canon_kv, canon_out) keep their inputs by slot, in fp32
    canon = sum(4 * m.weight.shape[0] for m in stack.modules() if isinstance(m, Canon))
    return sum(t for t, _ in sizes) + canon, sum(s for _, s in sizes)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
