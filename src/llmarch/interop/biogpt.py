"""BioGPT (`model_type: biogpt`; Luo et al. 2022, "BioGPT: Generative Pre-trained Transformer for Biomedical Text
Generation and Mining", §3.1): OPT's pre-norm decoder (q, k, v, out_proj with biases, fc1/fc2, learned positions
from offset 2, each row's counted from its first real token) with token embeddings times sqrt(d_model)
(scale_embedding), under `biogpt.`, and a head named `output_projection`, tied and without a bias. Its
LayerNorms are nn.LayerNorm's defaults: eps 1e-5 whatever config.json's layer_norm_eps (1e-12) says, as
transformers builds them. The classification heads (BioGptForSequenceClassification, ...ForTokenClassification)
are not read."""
from __future__ import annotations

from ..config import ModelConfig
from .activations import PYTORCH_TANH, hf_activation, read_activation
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .opt import decoder_rules

RULES = decoder_rules("biogpt.", "layer_norm", "output_projection")
OFFSET = 2  # BioGptLearnedPositionalEmbedding.offset


def to_config(hf: dict) -> ModelConfig:
    return ModelConfig(name=hf.get("_name_or_path") or "biogpt", hf_model_type="biogpt", vocab_size=hf["vocab_size"],
                       d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
                       n_heads=hf["num_attention_heads"], ffn=read_activation(hf, "biogpt", "hidden_act", "gelu"),
                       ffn_hidden=hf["intermediate_size"],
                       norm="layernorm", norm_eps=1e-5, positions="learned", position_offset=OFFSET,
                       embed_scale=bool(hf.get("scale_embedding", True)),
                       tie_embeddings=hf.get("tie_word_embeddings", True),
                       context_length=hf.get("max_position_embeddings", 1024))


def from_config(cfg: ModelConfig) -> dict:
    hf = dict(model_type="biogpt", architectures=["BioGptForCausalLM"], vocab_size=cfg.vocab_size,
              hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
              intermediate_size=cfg.ffn_hidden, hidden_act=hf_activation(cfg.ffn, PYTORCH_TANH),
              max_position_embeddings=cfg.context_length, scale_embedding=cfg.embed_scale,
              tie_word_embeddings=cfg.tie_embeddings, hidden_dropout_prob=cfg.dropout,
              attention_probs_dropout_prob=cfg.dropout)
    return refuse_unless_read_back(cfg, hf, to_config)


# a tied head may be stored as output_projection.weight too (it holds the embedding again)
FAMILIES.register("biogpt")(Family(RULES, to_config, from_config, ignore=(r"^output_projection\.weight$",)))
