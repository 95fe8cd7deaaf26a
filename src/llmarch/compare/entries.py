"""The architectures `llmarch compare` measures: each a preset and the fields that make it this architecture,
with the claim the usual guide makes for it ("best for") and its typical uses. The claims are quoted, not
measured: the table's "measured advantage" column (report.py) is what the numbers say beside them.

An entry's objective is what its family trains on: next-token prediction for decoders, masked tokens for
encoders (BERT, Devlin et al. 2019), span corruption for encoder-decoders (T5, Raffel et al. 2020)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import LlmarchError


@dataclass(frozen=True)
class Entry:
    key: str  # its name on the command line (--families)
    label: str  # its name in the table
    preset: str  # the preset it starts from
    overrides: dict = field(default_factory=dict)  # the fields that make it this architecture
    best_for: str = ""  # what the usual guide says it is best for
    uses: str = ""  # typical uses
    objective: str = "clm"  # clm, mlm (encoders) or span (encoder-decoders)

    @property
    def causal(self) -> bool:
        return self.objective == "clm"


_WINDOW = 64  # a quarter of the 256-token training context: the window is felt in training, not only at 16k

ENTRIES = (
    Entry("gpt", "GPT (decoder-only)", "gpt-tiny", best_for="text generation",
          uses="GPT-2/3, chat assistants"),
    Entry("llama", "LLaMA (RoPE, RMSNorm, SwiGLU, GQA)", "llama-tiny",
          best_for="general-purpose open LLMs", uses="LLaMA, Mistral, Qwen"),
    Entry("palm", "PaLM-style parallel block", "palm-tiny", best_for="faster training at scale",
          uses="PaLM, GPT-J, Falcon"),
    Entry("moe", "Mixture of experts (Mixtral-style)", "mixtral-tiny", best_for="efficient scaling",
          uses="Mixtral, DeepSeek, Qwen-MoE"),
    Entry("sliding", "Sliding-window attention", "llama-tiny",
          dict(attention="sliding_window", sliding_window=_WINDOW), best_for="long sequences",
          uses="Mistral 7B, Gemma 2/3 local layers"),
    Entry("longformer", "Longformer (window + global tokens)", "llama-tiny",
          dict(attention="longformer", sliding_window=_WINDOW, n_kv_heads=None), best_for="long documents",
          uses="Longformer, BigBird"),
    Entry("linear", "Linear attention", "llama-tiny", dict(attention="linear", n_kv_heads=None),
          best_for="long sequences at linear cost", uses="Linear Transformers, RetNet-like models"),
    Entry("performer", "Performer (FAVOR+)", "llama-tiny", dict(attention="performer", n_kv_heads=None,
                                                                 performer_features=64),
          best_for="long sequences at linear cost", uses="Performer"),
    Entry("mamba", "Mamba (selective SSM)", "mamba-tiny", best_for="long sequences, fast inference",
          uses="Mamba, Falcon-Mamba"),
    Entry("mamba2", "Mamba-2 (SSD)", "mamba2-tiny", best_for="long sequences, fast training",
          uses="Mamba-2, Codestral Mamba"),
    Entry("hyena", "Hyena (long convolutions)", "hyena-tiny", best_for="long sequences without attention",
          uses="HyenaDNA, StripedHyena"),
    Entry("hybrid", "Hybrid (Mamba + attention + MoE)", "hybrid-tiny",
          best_for="long context with attention's recall", uses="Jamba, Zamba, Samba"),
    Entry("mla", "Multi-head latent attention", "mla-tiny", best_for="a small KV cache",
          uses="DeepSeek-V2/V3, Kimi K2"),
    Entry("deltanet", "Gated DeltaNet", "gated-deltanet-tiny", best_for="long sequences with recall",
          uses="Qwen3-Next, Kimi Linear"),
    Entry("bert", "BERT (encoder-only)", "bert-tiny", best_for="understanding: classification, retrieval",
          uses="BERT, RoBERTa, sentence embeddings", objective="mlm"),
    Entry("t5", "T5 (encoder-decoder)", "t5-tiny", best_for="sequence-to-sequence: translation, summarization",
          uses="T5, BART, Whisper", objective="span"),
)
BY_KEY = {e.key: e for e in ENTRIES}
REFERENCE = "gpt"  # the row every other is measured against


def select(names: str | None) -> list[Entry]:
    """The entries named in a comma-separated list (all of them for None), in the order given."""
    if names is None:
        return list(ENTRIES)
    keys = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [k for k in keys if k not in BY_KEY]
    if unknown or not keys:
        raise LlmarchError(f"unknown famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown) or repr(names)} "
                           f"for --families; choose from: {', '.join(BY_KEY)}")
    if len(set(keys)) != len(keys):
        raise LlmarchError(f"--families names a family twice: {names}")
    return [BY_KEY[k] for k in keys]
