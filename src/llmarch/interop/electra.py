"""ELECTRA (`model_type: electra`; Clark et al. 2020): BERT's encoder (bert.py's layout under `electra.`) with
embeddings of their own width, `embedding_size` (our embed_dim), projected into the stack by
`electra.embeddings_project` where it differs from hidden_size (the small and base generators). Heads:
- the generator (ElectraForMaskedLM): dense (hidden -> embedding_size) -> GELU -> LayerNorm, then the projection
  onto the vocabulary tied to the word embeddings, with a bias: our head transform at the embedding width;
- the discriminator (ElectraForPreTraining): dense -> hidden_act -> a 1-wide dense_prediction on every token,
  one replaced-or-not logit per token: our `detect` head (the pooler's dense and activation on each token);
- ElectraForSequenceClassification: dense -> GELU -> out_proj on the first token (the pooler with pooler_act
  gelu, then the classifier); ElectraForTokenClassification: a classifier on every token.
The generator's and the classification head's activations are GELU whatever hidden_act says, the
discriminator's is hidden_act: configs with another hidden_act are refused rather than computed with mixed ones."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import body_rules
from .bert import from_config as bert_hf
from .bert import to_config as bert_config
from .hf import FAMILIES, Family
from .mapping import Rule

_W = ("weight", "bias")
RULES = [*body_rules("electra"), *[Rule.of(f"electra.embeddings_project.{w}", f"embed_proj.{w}") for w in _W],
         *[Rule.of(f"generator_predictions.dense.{w}", f"head_transform.dense.{w}") for w in _W],
         *[Rule.of(f"generator_predictions.LayerNorm.{w}", f"head_transform.norm.{w}") for w in _W],
         *[Rule.of(f"generator_lm_head.{w}", f"lm_head.{w}") for w in _W]]
HEADS = {
    "detect": ("ElectraForPreTraining", [
        *[Rule.of(f"discriminator_predictions.dense.{w}", f"pooler.dense.{w}") for w in _W],
        *[Rule.of(f"discriminator_predictions.dense_prediction.{w}", f"classifier.{w}") for w in _W]]),
    "classify": ("ElectraForSequenceClassification", [
        *[Rule.of(f"classifier.dense.{w}", f"pooler.dense.{w}") for w in _W],
        *[Rule.of(f"classifier.out_proj.{w}", f"classifier.{w}") for w in _W]]),
    "tokens": ("ElectraForTokenClassification", [Rule.of(f"classifier.{w}", f"classifier.{w}") for w in _W]),
}
IGNORE = (r"^generator_lm_head\.weight$", r"embeddings\.position_ids$")


def to_config(hf: dict) -> ModelConfig:
    if hf.get("hidden_act", "gelu") != "gelu":
        raise LlmarchError(f"ELECTRA with hidden_act {hf['hidden_act']!r} is not supported (its heads use GELU "
                           "beside it): gelu only")
    cfg = bert_config(hf)
    return cfg.replace(name=hf.get("_name_or_path") or "electra", hf_model_type="electra", pooler_act="gelu",
                       embed_dim=hf.get("embedding_size", cfg.d_model))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.ffn != "gelu" or cfg.head in ("classify", "detect") and cfg.pooler_act != "gelu" or not (
            cfg.head_transform and cfg.head_bias) and cfg.head == "lm":
        raise LlmarchError("model_type electra needs GELU throughout (ffn and pooler_act gelu) and, for the LM head, "
                           "head_transform with head_bias")
    arch = "ElectraForCausalLM" if cfg.causal else "ElectraForMaskedLM"  # is_decoder: the generator as a causal LM
    return {**bert_hf(cfg), "model_type": "electra", "architectures": [arch],
            "embedding_size": cfg.embed_width}


FAMILIES.register("electra")(Family(RULES, to_config, from_config, IGNORE, heads=HEADS, base_prefix="electra."))
