"""LongCat-Flash (`model_type: longcat_flash`; LongCat-Flash-Chat, -Thinking; Meituan LongCat Team 2025,
"LongCat-Flash Technical Report", §2): each of its `num_layers` layers holds two sublayer pairs, each multi-head
latent attention (DeepSeek-V3's MLA with interleaved RoPE dims, layers/mla.py) then a dense SwiGLU MLP, and one
shortcut-connected mixture of experts that reads the first pair's normed FFN input and joins the residual stream
at the end of the second pair:

    h = x + MLA_0(n_0(x));  m = n'_0(h);  h = h + MLP_0(m);  h = h + MLA_1(n_1(h));  y = h + MLP_1(n'_1(h)) + MoE(m)

llmarch counts the pairs as blocks (n_layers = 2 x num_layers: HF layer j, pair s is our block 2j + s) with the
mixture on the even blocks, carried to the next (moe_period 2, moe_shortcut). The router scores the
`n_routed_experts` SwiGLU experts and `zero_expert_num` zero-computation experts (zero_experts: a token routed to
one passes through times its weight) by one softmax, chooses the top `moe_topk` by score plus
`e_score_correction_bias`, and weights them by their scores times `routed_scaling_factor`, not renormalised. The
MLA scales its queries by sqrt(hidden / q_lora_rank) and its normed latent by sqrt(hidden / kv_lora_rank)
(mla_lora_scale). The multi-token-prediction weights (model.mtp.*) are not loaded, as transformers ignores them."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import IGNORE
from .hf import FAMILIES, Family
from .llama import rope_fields, rope_parameters
from .mapping import Rule

RULES = [Rule.of("model.embed_tokens.weight", "embed.weight"), Rule.of("model.norm.weight", "ln_final.weight"),
         Rule.of("lm_head.weight", "lm_head.weight")]
_MLA = [("q_a_proj.weight", "q_a_proj.weight", "same"), ("q_a_layernorm.weight", "q_a_norm.weight", "same"),
        ("q_b_proj.weight", "q_b_proj.weight", "mla_q"), ("kv_a_proj_with_mqa.weight", "kv_a_proj.weight", "mla_kv_a"),
        ("kv_a_layernorm.weight", "kv_a_norm.weight", "same"), ("kv_b_proj.weight", "kv_b_proj.weight", "same"),
        ("o_proj.weight", "o_proj.weight", "same")]
_BIASES = [("q_a_proj.bias", "q_a_proj.bias", "same"), ("kv_a_proj_with_mqa.bias", "kv_a_proj.bias", "mla_kv_a"),
           ("o_proj.bias", "o_proj.bias", "same")]


def _block_rules(cfg: ModelConfig) -> list[Rule]:
    """Block b's tensors: HF layer b // 2, its pair b % 2; the mixture's under the even block."""
    out = []
    for b in range(cfg.n_layers):
        L, s, ours = f"model.layers.{b // 2}.", b % 2, f"blocks.{b}."
        out += [Rule.of(L + f"self_attn.{s}.{hf}", ours + f"attn.{name}", layout)
                for hf, name, layout in _MLA + (_BIASES if cfg.qkv_bias else [])]
        out += [Rule.of(L + f"input_layernorm.{s}.weight", ours + "ln1.weight"),
                Rule.of(L + f"post_attention_layernorm.{s}.weight", ours + "ln2.weight"),
                Rule.of((L + f"mlps.{s}.gate_proj.weight", L + f"mlps.{s}.up_proj.weight"),
                        ours + "mlp.gate_up.weight"),
                Rule.of(L + f"mlps.{s}.down_proj.weight", ours + "mlp.down.weight")]
        if s == 0:
            M = L + "mlp."
            out += [Rule.of(M + "router.classifier.weight", ours + "moe.router.weight"),
                    Rule.of(M + "router.e_score_correction_bias", ours + "moe.router.expert_bias"),
                    Rule.of((M + "experts.{e}.gate_proj.weight", M + "experts.{e}.up_proj.weight"),
                            ours + "moe.experts.gate_up"),
                    Rule.of(M + "experts.{e}.down_proj.weight", ours + "moe.experts.down")]
    return out


def to_config(hf: dict) -> ModelConfig:
    heads, nope, rope = hf["num_attention_heads"], int(hf["qk_nope_head_dim"]), int(hf["qk_rope_head_dim"])
    problems = [(hf.get("hidden_act", "silu") != "silu", f"hidden_act {hf.get('hidden_act')!r} (silu only)"),
                (hf.get("num_key_value_heads") not in (None, heads), "num_key_value_heads other than the heads"),
                (hf.get("head_dim", rope) != rope, f"head_dim {hf.get('head_dim')} other than qk_rope_head_dim {rope}"),
                (hf.get("qk_head_dim") not in (None, nope + rope), "qk_head_dim other than nope + rope dims"),
                (hf.get("q_lora_rank") is None, "no q_lora_rank"), (bool(hf.get("router_bias")), "router_bias")]
    problem = next((why for bad, why in problems if bad), None)
    if problem:
        raise LlmarchError(f"longcat_flash: {problem} is not supported")
    eos = hf.get("eos_token_id")
    return ModelConfig(
        name=hf.get("_name_or_path") or "longcat_flash", hf_model_type="longcat_flash", vocab_size=hf["vocab_size"],
        d_model=hf["hidden_size"], n_layers=2 * int(hf["num_layers"]), n_heads=heads, mixer="mla", head_dim=rope,
        q_lora_rank=int(hf["q_lora_rank"]), kv_lora_rank=int(hf["kv_lora_rank"]), qk_nope_head_dim=nope,
        v_head_dim=int(hf["v_head_dim"]), mla_lora_scale=True, ffn="swiglu", ffn_hidden=hf["ffn_hidden_size"],
        n_experts=int(hf["n_routed_experts"]), zero_experts=int(hf.get("zero_expert_num") or 0),
        experts_per_token=int(hf["moe_topk"]), expert_hidden=int(hf["expert_ffn_hidden_size"]),
        router_scoring="softmax", router_renormalize=False, expert_bias=True,
        router_scale=float(hf.get("routed_scaling_factor", 1.0)), moe_period=2, moe_shortcut=True, norm="rmsnorm",
        norm_eps=hf.get("rms_norm_eps", 1e-5), norm_bias=False, positions="rope", bias=False,
        qkv_bias=bool(hf.get("attention_bias", False)), tie_embeddings=hf.get("tie_word_embeddings", False),
        eos_id=eos if isinstance(eos, int) else None,
        **{"context_length": hf.get("max_position_embeddings", 131072), **rope_fields(hf)})


def _unexpressible(cfg: ModelConfig) -> str | None:
    needs = dict(mixer="mla", attn_period=0, mla_lora_scale=True, ffn="swiglu", bias=False, norm="rmsnorm",
                 norm_placement="pre", positions="rope", router_scoring="softmax", router_renormalize=False,
                 expert_bias=True, router_bias=False, router_groups=1, n_shared_experts=0, moe_period=2, moe_offset=0,
                 moe_dense_first=0, moe_shortcut=True, layer_types=None, capacity_factor=None, expert_capacity=None)
    wrong = next((k for k, v in needs.items() if getattr(cfg, k) != v), None)
    if wrong:
        return f"{wrong}={needs[wrong]!r}"
    return None if cfg.n_layers % 2 == 0 else "an even n_layers (two blocks a layer)"


def from_config(cfg: ModelConfig) -> dict:
    out = dict(model_type="longcat_flash", architectures=["LongcatFlashForCausalLM"], vocab_size=cfg.vocab_size,
               hidden_size=cfg.d_model, num_layers=cfg.n_layers // 2, num_attention_heads=cfg.n_heads,
               num_key_value_heads=cfg.n_heads, hidden_act="silu", ffn_hidden_size=cfg.ffn_hidden,
               q_lora_rank=cfg.q_lora_rank, kv_lora_rank=cfg.kv_lora_rank, qk_nope_head_dim=cfg.qk_nope_head_dim,
               qk_rope_head_dim=cfg.head_dim, head_dim=cfg.head_dim, v_head_dim=cfg.v_head_dim,
               qk_head_dim=cfg.qk_nope_head_dim + cfg.head_dim, moe_topk=cfg.experts_per_token,
               n_routed_experts=cfg.n_experts, zero_expert_num=cfg.zero_experts,
               expert_ffn_hidden_size=cfg.expert_hidden, routed_scaling_factor=cfg.router_scale,
               rms_norm_eps=cfg.norm_eps, rope_parameters=rope_parameters(cfg), attention_bias=cfg.qkv_bias,
               max_position_embeddings=cfg.context_length, tie_word_embeddings=cfg.tie_embeddings)
    if cfg.eos_id is not None:
        out["eos_token_id"] = cfg.eos_id
    return out


FAMILIES.register("longcat_flash")(Family(RULES, to_config, from_config, IGNORE + (r"^model\.mtp\.",),
                                          needs=_unexpressible, more_rules=_block_rules))
