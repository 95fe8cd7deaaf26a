"""CPM-Ant (`model_type: cpmant`; OpenBMB's CPM-Ant, `CpmAntForCausalLM`): pre-norm RMSNorm blocks without biases, a
GELU-gated FFN (w_0 the gate, w_1 the up projection), a final norm, and an untied LM head over the vocabulary only.
Before every sequence stand prompt_length learned prompt tokens, the embedding rows vocab + 2P .. vocab + 3P - 1
(transformers' CpmAntModel takes the third of the prompt_types prompts) of segment 0 (`task_prompt`,
`task_prompt_id`); the text is segment 2 (`default_token_type`); the embedding table holds vocab + P * prompt_types
rows (`vocab_size`, the head `head_vocab` = vocab). The attention scores take CPM-Ant's segment relative bias
(positions 'segment_relative': T5's bidirectional buckets within a segment, a bucket per segment pair across).
transformers' forward attends both ways over the whole input (its `context` is all ones), and its `generate`
prefills the prompt so, then adds a token at a time over the cache: a prefix LM, `prefix_bidirectional`, which
llmarch decodes as transformers does. Token id 0 is CPM-Ant's padding (its segment 0, masked out): left padding,
as transformers reads a row's real tokens as its last ones. Refused: segment_types < 3 (the text's segment 2)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .mapping import Rule

_L = "cpmant.encoder.layers.{i}."
RULES = [
    Rule.of("cpmant.input_embedding.weight", "embed.weight"),
    Rule.of("cpmant.segment_embedding.weight", "token_types.weight"),
    Rule.of("cpmant.position_bias.relative_attention_bias", "positions.weight"),
    Rule.of(_L + "self_att.layernorm_before_attention.weight", "blocks.{i}.ln1.weight"),
    Rule.of(tuple(_L + f"self_att.self_attention.project_{p}.weight" for p in "qkv"),
            "blocks.{i}.attn.qkv_proj.weight"),
    Rule.of(_L + "self_att.self_attention.attention_out.weight", "blocks.{i}.attn.o_proj.weight"),
    Rule.of(_L + "ffn.layernorm_before_ffn.weight", "blocks.{i}.ln2.weight"),
    Rule.of((_L + "ffn.ffn.w_in.w_0.weight", _L + "ffn.ffn.w_in.w_1.weight"), "blocks.{i}.mlp.gate_up.weight"),
    Rule.of(_L + "ffn.ffn.w_out.weight", "blocks.{i}.mlp.down.weight"),
    Rule.of("cpmant.encoder.output_layernorm.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
TEXT = 2  # the text's segment (CpmAntModel: 2 for ids != 0)
CONTEXT = 2048  # no position table: the pretraining length


def to_config(hf: dict) -> ModelConfig:
    segments, P, vocab = hf.get("segment_types", 32), hf.get("prompt_length", 32), hf["vocab_size"]
    if segments <= TEXT:
        raise LlmarchError(f"CPM-Ant with segment_types={segments} is not supported (its text is segment {TEXT})")
    return ModelConfig(name=hf.get("_name_or_path") or "cpmant", hf_model_type="cpmant",
                       vocab_size=vocab + P * hf.get("prompt_types", 32), head_vocab=vocab, d_model=hf["hidden_size"],
                       n_layers=hf["num_hidden_layers"], n_heads=hf["num_attention_heads"], head_dim=hf["dim_head"],
                       ffn="geglu", ffn_hidden=hf["dim_ff"], norm="rmsnorm", norm_eps=hf.get("eps", 1e-6),
                       norm_bias=False, bias=False, positions="segment_relative",
                       relative_buckets=hf.get("position_bias_num_buckets", 512),
                       relative_max_distance=hf.get("position_bias_max_distance", 2048), type_vocab_size=segments,
                       default_token_type=TEXT, task_prompt=P, task_prompt_id=vocab + 2 * P,
                       prefix_bidirectional=True, tie_embeddings=False, dropout=hf.get("dropout_p") or 0.0,
                       context_length=CONTEXT)


def needs(cfg: ModelConfig) -> str | None:
    vocab, P = cfg.head_vocab, cfg.task_prompt
    if cfg.mixer != "attention" or cfg.attention != "full" or cfg.layer_types is not None or cfg.bias \
            or cfg.norm != "rmsnorm" or cfg.norm_placement != "pre" or cfg.ffn != "geglu" \
            or cfg.positions != "segment_relative" or cfg.default_token_type != TEXT or not cfg.prefix_bidirectional \
            or vocab is None or not P or (cfg.vocab_size - vocab) % P or cfg.task_prompt_id != vocab + 2 * P \
            or cfg.tie_embeddings or cfg.n_kv_heads != cfg.n_heads:
        return ("full attention in a pre-norm RMSNorm stack without biases, a GELU-gated FFN, segment_relative "
                "positions, prompt tokens at rows head_vocab + 2P, text of token type 2, prefix_bidirectional and an "
                "untied head")
    return None


def from_config(cfg: ModelConfig) -> dict:
    vocab, P = cfg.head_vocab, cfg.task_prompt
    return dict(model_type="cpmant", architectures=["CpmAntForCausalLM"], vocab_size=vocab,
                hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                dim_head=cfg.head_dim, dim_ff=cfg.ffn_hidden, eps=cfg.norm_eps, dropout_p=cfg.dropout,
                position_bias_num_buckets=cfg.relative_buckets, position_bias_max_distance=cfg.relative_max_distance,
                segment_types=cfg.type_vocab_size, prompt_length=P, prompt_types=(cfg.vocab_size - vocab) // P,
                tie_word_embeddings=False)


FAMILIES.register("cpmant")(Family(RULES, to_config, from_config, needs=needs))
