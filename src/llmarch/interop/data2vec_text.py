"""data2vec-text (`model_type: data2vec-text`; Baevski et al. 2022): the text model of data2vec, pretrained by
regressing a teacher's averaged layer outputs, which at inference is RoBERTa's network. transformers'
Data2VecText classes are RoBERTa's (generated from its modular file) with the body stored under
`data2vec_text.`: the RoBERTa layout (roberta.py) with that root; masked LM and both classification heads."""
from __future__ import annotations

from .hf import FAMILIES
from .roberta import family

FAMILIES.register("data2vec-text")(family("data2vec-text", "Data2VecText", root="data2vec_text"))
