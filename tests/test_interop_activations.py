"""interop/activations.py: one table of transformers' activation names for the families that read them through
ACT2FN; each family's export must keep writing the names it wrote before it used the table."""
import pytest
from transformers import CONFIG_MAPPING

from llmarch.errors import LlmarchError
from llmarch.interop.activations import HF_GATED_ACTIVATIONS, hf_activation, read_activation
from llmarch.interop.hf import FAMILIES

# model_type -> (its config's activation key, the name exported for transformers' default config,
# {a name read: the name written back} where the family writes its own spelling)
EXPORTS = {
    "bart": ("activation_function", "gelu", {"silu": "swish"}),
    "marian": ("activation_function", "gelu", {"silu": "swish"}),
    "whisper": ("activation_function", "gelu", {"silu": "swish"}),
    "trocr": ("activation_function", "gelu", {"silu": "swish"}),
    "musicgen_decoder": ("activation_function", "gelu", {"silu": "swish"}),
    "xglm": ("activation_function", "gelu", {"gelu_pytorch_tanh": "gelu_new"}),
    "opt": ("activation_function", "relu", {"gelu_pytorch_tanh": "gelu_new"}),
    "biogpt": ("hidden_act", "gelu", {"gelu_new": "gelu_pytorch_tanh"}),
    "gpt_neox_japanese": ("hidden_act", "gelu", {"gelu_new": "gelu_pytorch_tanh"}),
    "prophetnet": ("activation_function", "gelu", {"gelu_pytorch_tanh": "gelu_new"}),
    "perceiver": ("hidden_act", "gelu", {"gelu_pytorch_tanh": "gelu_new"}),
    "funnel": ("hidden_act", "gelu_new", {"gelu_pytorch_tanh": "gelu_new"}),
    "distilbert": ("activation", "gelu", {"relu": "relu"}),
    "xlnet": ("ff_activation", "gelu", {"gelu_pytorch_tanh": "gelu_new"}),
    "reformer": ("hidden_act", "relu", {"gelu_pytorch_tanh": "gelu_new"}),
    "gpt2": ("activation_function", "gelu_new", {"gelu_pytorch_tanh": "gelu_new"}),
    "gptj": ("activation_function", "gelu_new", {"gelu_pytorch_tanh": "gelu_new"}),
    "gpt_neo": ("activation_function", "gelu_new", {"gelu_pytorch_tanh": "gelu_new"}),
    "phi": ("hidden_act", "gelu_new", {"gelu_pytorch_tanh": "gelu_new"}),
    "starcoder2": ("hidden_act", "gelu_pytorch_tanh", {"gelu_new": "gelu_pytorch_tanh"}),
    "falcon": ("activation", "gelu", {"gelu_new": "gelu_pytorch_tanh"}),
    "zamba2": ("hidden_act", "gelu", {"gelu_new": "gelu_pytorch_tanh", "silu": "silu"}),
    "zamba": ("hidden_act", "gelu", {"gelu_new": "gelu_pytorch_tanh", "silu": "silu"}),
    "modernbert": ("hidden_activation", "gelu", {}),
    "bert": ("hidden_act", "gelu", {"relu": "relu"}),
    "roberta": ("hidden_act", "gelu", {"gelu_new": "gelu_new"}),
    "big_bird": ("hidden_act", "gelu_new", {"relu": "relu"}),
    "git": ("hidden_act", "gelu", {"gelu_pytorch_tanh": "gelu_new"}),
    "fnet": ("hidden_act", "gelu_new", {"gelu_pytorch_tanh": "gelu_new"}),
    "deberta-v2": ("hidden_act", "gelu", {"gelu_pytorch_tanh": "gelu_new"}),
    "mobilebert": ("hidden_act", "relu", {"gelu_pytorch_tanh": "gelu_new"}),
    "openai-gpt": ("afn", "gelu", {"swish": "silu", "relu": "relu"}),  # its own ACT_FNS: "gelu" is tanh-GELU
}
# what a default config lacks for llmarch to read it
_COMPLETE = {"reformer": {"num_buckets": 32}}


def _round_trip(model_type: str, **changes) -> dict:
    family, hf = FAMILIES[model_type], CONFIG_MAPPING[model_type]().to_dict()
    return family.from_config(family.to_config({**hf, **_COMPLETE.get(model_type, {}), **changes}))


@pytest.mark.parametrize("model_type", sorted(EXPORTS))
def test_export_writes_the_names_it_wrote_before(model_type):
    key, default, spelled = EXPORTS[model_type]
    assert _round_trip(model_type)[key] == default
    for read, written in spelled.items():
        assert _round_trip(model_type, **{key: read})[key] == written


def test_read_names_the_family_key_and_choices():
    assert read_activation({"act": "gelu_fast"}, "fam", "act", "gelu") == "gelu_tanh"
    assert read_activation({}, "fam", "act", "swish") == "silu"
    with pytest.raises(LlmarchError, match=r"fam: act 'tanh' is not supported \(gelu, .*swish\)"):
        read_activation({"act": "tanh"}, "fam", "act", "gelu")
    assert read_activation({"act": "gelu_new"}, "fam", "act", "gelu", HF_GATED_ACTIVATIONS) == "geglu_tanh"


def test_export_spelling():
    assert hf_activation("gelu_tanh") == "gelu_new"
    assert hf_activation("gelu_tanh", {"gelu_tanh": "gelu_pytorch_tanh"}) == "gelu_pytorch_tanh"
    assert hf_activation("swiglu") == "swiglu"  # no name: the family's read-back refuses it


def test_modernbert_writes_one_name_for_its_mlp_and_its_head():
    out = _round_trip("modernbert", hidden_activation="gelu_new", classifier_activation="gelu_pytorch_tanh")
    assert (out["hidden_activation"], out["classifier_activation"]) == ("gelu_pytorch_tanh",) * 2
    with pytest.raises(LlmarchError, match="classifier_activation 'silu' differs"):
        _round_trip("modernbert", classifier_activation="silu")


def test_bert_keeps_the_names_roberta_reads():
    # RobertaLMHead applies exact GELU whatever hidden_act, and RoBERTa's families read their configs through BERT's
    with pytest.raises(LlmarchError, match="roberta: hidden_act 'silu' is not supported"):
        _round_trip("roberta", hidden_act="silu")


def test_a_family_outside_act2fn_keeps_its_own_names():
    # OpenAIGPTMLP looks afn up in its ACT_FNS (relu, silu, gelu = tanh-GELU, swish), which has no gelu_new
    assert FAMILIES["openai-gpt"].to_config({**CONFIG_MAPPING["openai-gpt"]().to_dict(), "afn": "gelu"}).ffn \
        == "gelu_tanh"
    with pytest.raises(LlmarchError, match="openai-gpt: afn 'gelu_new' is not supported"):
        _round_trip("openai-gpt", afn="gelu_new")


def test_vision_towers_and_the_llava_projector_write_the_names_they_wrote_before():
    out = _round_trip("llava")
    assert (out["vision_config"]["hidden_act"], out["projector_hidden_act"]) == ("quick_gelu", "gelu")
    siglip = {**CONFIG_MAPPING["siglip_vision_model"]().to_dict(), "model_type": "siglip_vision_model"}
    out = _round_trip("llava", vision_config=siglip, projector_hidden_act="gelu_new")
    assert (out["vision_config"]["hidden_act"], out["projector_hidden_act"]) == ("gelu_pytorch_tanh",) * 2
