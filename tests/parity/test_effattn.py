"""The classic efficient-attention encoders against transformers (fp32, <= 1e-4 on a right-padded batch, and a to_hf
round trip that transformers reads to the same logits): FNet (Fourier mixing, layers/fourier.py)."""
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.interop import to_hf
from llmarch.layers.attention_kinds.nystrom import pseudo_inverse

from conftest import perturbed_from_hf

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


def right_padded(vocab: int, T: int, pad_id: int, lengths=(None, 11), types: int = 2, low: int = 4):
    """Rows of T ids from `low` up, row r real up to lengths[r] (None: all), then pad_id; token types 0 then 1
    (types > 1), and the attention mask."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(low, vocab, (len(lengths), T), generator=g)
    mask = torch.ones_like(ids)
    for r, n in enumerate(lengths):
        if n is not None:
            mask[r, n:], ids[r, n:] = 0, pad_id
    token_types = torch.zeros_like(ids)
    if types > 1:
        token_types[:, T // 2:] = 1
    return ids, mask, token_types


def max_diff(a, b, mask):
    return (a - b)[mask.bool()].abs().max().item()


# ---- FNet ---------------------------------------------------------------------------------------------------------
FNET = dict(vocab_size=96, hidden_size=32, num_hidden_layers=2, intermediate_size=64, max_position_embeddings=40,
            type_vocab_size=4)


@pytest.fixture(scope="module")
def fnet(tmp_path_factory):
    torch.manual_seed(0)
    hf = transformers.FNetForMaskedLM(transformers.FNetConfig(**FNET))
    return hf, perturbed_from_hf(hf, tmp_path_factory.mktemp("fnet"))


def test_fnet_matches_transformers_and_round_trips(fnet, tmp_path):
    hf, ours = fnet
    assert (ours.config.mixer, ours.config.embed_proj, ours.config.causal) == ("fourier", True, False)
    ids, mask, types = right_padded(96, 16, 3)
    with torch.no_grad():  # FNet takes no attention mask: the transform runs over the padding too
        theirs = hf(ids, token_type_ids=types).logits
        mine = ours(ids, token_type_ids=types, attention_mask=torch.ones_like(mask)).logits
        assert max_diff(mine, theirs, torch.ones_like(mask)) <= 1e-4
        with pytest.raises(LlmarchError, match="takes no attention mask"):
            ours(ids, attention_mask=mask)
    to_hf(ours, tmp_path)
    back = transformers.FNetForMaskedLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert max_diff(back(ids, token_type_ids=types).logits, mine, mask) <= 1e-4


def test_fnet_classifier_and_base_model(tmp_path):
    torch.manual_seed(0)
    conf = transformers.FNetConfig(**FNET, num_labels=3)
    hf = transformers.FNetForSequenceClassification(conf)
    ours = perturbed_from_hf(hf, tmp_path / "cls")
    assert ours.config.head == "classify"
    ids, mask, types = right_padded(96, 16, 3)
    with torch.no_grad():
        assert (hf(ids, token_type_ids=types).logits - ours(ids, token_type_ids=types).logits).abs().max() <= 1e-4
    hf.fnet.save_pretrained(tmp_path / "base")  # FNetModel: the body alone, read as head 'embed'
    import llmarch

    base = llmarch.from_hf(tmp_path / "base")
    with torch.no_grad():
        theirs = hf.fnet(ids, token_type_ids=types).last_hidden_state
        assert max_diff(base(ids, token_type_ids=types).hidden_states, theirs, mask) <= 1e-4


# ---- Nystromformer ------------------------------------------------------------------------------------------------
NYSTROM = dict(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               max_position_embeddings=32, segment_means_seq_len=16, conv_kernel_size=5)


@pytest.fixture(scope="module")
def nystrom(tmp_path_factory):
    """Two tiny Nystromformers: 4 landmarks over 16 tokens, and 16 of 16 (exact softmax). Queries and keys scaled
    up (sharper landmark kernels, so six pseudo-inverse steps leave Z_0's scale visible), and the value convolution's
    0.02-init kernels made larger, so that a missing or wrong part shows."""
    out = {}
    for m in (4, 16):
        torch.manual_seed(0)
        hf = transformers.NystromformerForMaskedLM(transformers.NystromformerConfig(**NYSTROM, num_landmarks=m))
        with torch.no_grad():
            for layer in hf.nystromformer.encoder.layer:
                attn = layer.attention.self
                attn.query.weight.mul_(3), attn.key.weight.mul_(3), attn.conv.weight.normal_(std=0.3)
        out[m] = hf, perturbed_from_hf(hf, tmp_path_factory.mktemp(f"nystrom{m}"))
    return out


def hf_nystrom_with_key_mask(hf, ids, mask, types):
    """transformers' Nystromformer layers run with the (B, 1, 1, T) additive key mask they were written for: its
    forward builds a (B, 1, T, T) mask, which the landmark path cannot add to its (B, H, m, T) scores."""
    body = hf.nystromformer
    key_mask = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    hidden = body.encoder(body.embeddings(input_ids=ids, token_type_ids=types), attention_mask=key_mask)[0]
    return hf.cls(hidden)


def test_nystromformer_landmarks_match_transformers_and_round_trip(nystrom, tmp_path):
    hf, ours = nystrom[4]
    assert (ours.config.attention, ours.config.nystrom_landmarks, ours.config.nystrom_conv) == ("nystrom", 4, 5)
    ids, mask, types = right_padded(96, 16, 1)
    full = torch.ones_like(mask)
    with torch.no_grad():
        mine = ours(ids, token_type_ids=types).logits  # no padding: transformers' own forward
        assert max_diff(mine, hf(ids, token_type_ids=types).logits, full) <= 1e-4
        padded = ours(ids, attention_mask=mask, token_type_ids=types).logits
        assert max_diff(padded, hf_nystrom_with_key_mask(hf, ids, mask, types), full) <= 1e-4
        with pytest.raises(LlmarchError, match="exactly nystrom_seq_len=16"):
            ours(ids[:, :12])
        # six steps leave the pseudo-inverse far from converged: its start, scaled by one maximum over the whole
        # batch and every head, shows in Z (the logits above barely move with it)
        a = torch.softmax(torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(2)) * 3, dim=-1)
        theirs = hf.nystromformer.encoder.layer[0].attention.self.iterative_inv(a)
        assert (pseudo_inverse(a) - theirs).abs().max() <= 1e-4 * theirs.abs().max()
    to_hf(ours, tmp_path)
    back = transformers.NystromformerForMaskedLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert max_diff(back(ids, token_type_ids=types).logits, mine, full) <= 1e-4


def test_nystromformer_exact_softmax_on_a_padded_batch(nystrom):
    hf, ours = nystrom[16]
    ids, mask, types = right_padded(96, 12, 1, lengths=(None, 7))  # any length: landmarks = segment length
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, token_type_ids=types).logits
        mine = ours(ids, attention_mask=mask, token_type_ids=types).logits
    assert max_diff(mine, theirs, mask) <= 1e-4
