"""NLLB-MoE (`model_type: nllb-moe`; NLLB Team 2022, "No Language Left Behind", §6.2): M2M-100's pre-norm
encoder-decoder (m2m_100.py: fairseq's sinusoids from padding_idx + 1, embeddings scaled by sqrt(d_model), a final
LayerNorm per stack, the tied head without bias) whose every sparse_step-th FFN, layers (i + 1) % step == 0, is a
mixture of num_experts ReLU experts with biases (our moe_period = step, moe_offset = step - 1), routed top-2 by a
bias-free router's softmax, the two weights renormalised to sum to 1 (fairseq's Top2Gate). Out of training the
experts' output is scaled by 1 - moe_token_dropout, as transformers and fairseq do (router_scale); in training
transformers drops whole tokens' expert outputs instead (dropout), which llmarch does not. The layer names are
NLLB-MoE's own (`ffn`, `ff_layer_norm`, `cross_attention`). Refused: a random or sampled second expert
(second_expert_policy other than 'all'), a router bias, and capacities that drop tokens out of training
(moe_eval_capacity_token_fraction < 1: transformers' capacity is then a fraction of the batch's tokens, so a
token's output would depend on the other rows)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bart import IGNORE, final_norm_rules, shared_fields, shared_hf
from .hf import FAMILIES, Family
from .mapping import Rule

_W = ("weight", "bias")


def _stack(part: str) -> list[Rule]:
    hf, ours = f"model.{part}.layers.{{i}}.", f"{part}.blocks.{{i}}."
    pairs = [("self_attn.out_proj", "attn.o_proj"), ("self_attn_layer_norm", "ln1"), ("ff_layer_norm", "ln2"),
             ("ffn.fc1", "mlp.up"), ("ffn.fc2", "mlp.down"), ("ffn.experts.expert_{e}.fc1.weight", "mlp.experts.up"),
             ("ffn.experts.expert_{e}.fc1.bias", "mlp.experts.in_bias"),
             ("ffn.experts.expert_{e}.fc2.weight", "mlp.experts.down"),
             ("ffn.experts.expert_{e}.fc2.bias", "mlp.experts.down_bias"),
             ("ffn.router.classifier.weight", "mlp.router.weight")]
    if part == "decoder":
        pairs += [("cross_attention.q_proj", "cross_attn.q_proj"), ("cross_attention.out_proj", "cross_attn.o_proj"),
                  ("cross_attention_layer_norm", "ln_cross")]
    rules = [Rule.of(hf + h, ours + o) for h, o in pairs if "{e}" in h or "router" in h]
    rules += [Rule.of(hf + f"{h}.{w}", ours + f"{o}.{w}") for h, o in pairs if "{e}" not in h and "router" not in h
              for w in _W]
    rules += [Rule.of(tuple(hf + f"self_attn.{p}_proj.{w}" for p in "qkv"), ours + f"attn.qkv_proj.{w}") for w in _W]
    if part == "decoder":
        rules += [Rule.of(tuple(hf + f"cross_attention.{p}_proj.{w}" for p in "kv"), ours + f"cross_attn.kv_proj.{w}")
                  for w in _W]
    return rules


RULES = [Rule.of("model.shared.weight", "embed.weight"), Rule.of("lm_head.weight", "lm_head.weight"),
         *_stack("encoder"), *_stack("decoder"), *final_norm_rules()]


def to_config(hf: dict) -> ModelConfig:
    step, dec_step = hf.get("encoder_sparse_step", 4), hf.get("decoder_sparse_step", 4)
    if step != dec_step or step < 1:
        raise LlmarchError(f"NLLB-MoE with encoder_sparse_step={step} and decoder_sparse_step={dec_step}: llmarch "
                           "builds both stacks with one positive sparse step")
    if hf.get("second_expert_policy", "all") != "all" or hf.get("router_bias"):
        raise LlmarchError("NLLB-MoE with a random or sampled second expert (second_expert_policy other than 'all') "
                           "or a router bias is not supported")
    if hf.get("moe_eval_capacity_token_fraction", 1.0) < 1.0:
        raise LlmarchError("NLLB-MoE with moe_eval_capacity_token_fraction < 1 (experts that drop tokens out of "
                           "training, by the whole batch's count) is not supported")
    fields = shared_fields(hf)
    fields.update(norm_placement="pre", head_bias=False, embed_scale=bool(hf.get("scale_embedding", True)))
    return ModelConfig(**fields, positions="sinusoidal_fairseq", position_offset=fields["pad_id"] + 1,
                       context_length=hf.get("max_position_embeddings", 1024), n_experts=hf["num_experts"],
                       experts_per_token=2, moe_period=step, moe_offset=step - 1,
                       router_scale=1.0 - float(hf.get("moe_token_dropout", 0.2)),
                       router_aux_loss_weight=float(hf.get("router_aux_loss_coef", 0.0)),
                       router_z_loss_weight=float(hf.get("router_z_loss_coef", 0.0)))


def from_config(cfg: ModelConfig) -> dict:
    if (cfg.positions != "sinusoidal_fairseq" or cfg.position_offset != cfg.pad_id + 1 or cfg.embed_norm
            or cfg.head_bias or not cfg.n_experts or cfg.experts_per_token != 2 or not cfg.router_renormalize
            or cfg.moe_offset != cfg.moe_period - 1 or cfg.n_shared_experts or cfg.router_scoring != "softmax"
            or cfg.expert_capacity is not None or cfg.capacity_factor is not None or not 0 < cfg.router_scale <= 1):
        raise LlmarchError("model_type nllb-moe needs M2M-100's layout (positions sinusoidal_fairseq from pad_id + 1, "
                           "no embed_norm, no head_bias) and top-2 softmax routing, renormalised, on layers "
                           "(i + 1) % moe_period == 0, without shared experts or capacities, router_scale in (0, 1]")
    return dict(shared_hf(cfg, "nllb-moe", "NllbMoeForConditionalGeneration", "pre"),
                max_position_embeddings=cfg.context_length, bos_token_id=0, num_experts=cfg.n_experts,
                encoder_sparse_step=cfg.moe_period, decoder_sparse_step=cfg.moe_period, router_bias=False,
                router_dtype="float32", second_expert_policy="all", moe_eval_capacity_token_fraction=1.0,
                moe_token_dropout=1.0 - cfg.router_scale, router_aux_loss_coef=cfg.router_aux_loss_weight,
                router_z_loss_coef=cfg.router_z_loss_weight)


FAMILIES.register("nllb-moe")(Family(RULES, to_config, from_config, IGNORE))
