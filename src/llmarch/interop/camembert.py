"""CamemBERT (`model_type: camembert`; Martin et al. 2020): RoBERTa's model trained on French text with a
SentencePiece vocabulary. transformers' CamembertModel is RoBERTa's code under other class names, its weights
under `roberta.` as RoBERTa's are, so the family is RoBERTa's layout (roberta.py) with the Camembert classes:
masked LM, sequence classification (dense -> tanh -> out_proj on the first token) and token classification."""
from __future__ import annotations

from .hf import FAMILIES
from .roberta import family

FAMILIES.register("camembert")(family("camembert", "Camembert"))
