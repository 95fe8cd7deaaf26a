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


def test_fnet_sequence_classifier(tmp_path):
    torch.manual_seed(0)
    hf = transformers.FNetForSequenceClassification(transformers.FNetConfig(**FNET, num_labels=3))
    ours = perturbed_from_hf(hf, tmp_path)
    assert ours.config.head == "classify"
    ids, _, types = right_padded(96, 16, 3)
    with torch.no_grad():  # the pooler (fnet.pooler.dense) on the first token, then the classifier
        assert (hf(ids, token_type_ids=types).logits - ours(ids, token_type_ids=types).logits).abs().max() <= 1e-4


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
    assert (ours.config.attention, ours.config.nystrom_landmarks, ours.config.value_conv) == ("nystrom", 4, 5)
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


# ---- BigBird ------------------------------------------------------------------------------------------------------
BIG_BIRD = dict(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=64, block_size=2, num_random_blocks=2)  # the pattern past (5 + 2r) b = 18


@pytest.fixture(scope="module")
def big_bird(tmp_path_factory):
    torch.manual_seed(0)
    hf = transformers.BigBirdForMaskedLM(transformers.BigBirdConfig(**BIG_BIRD))
    with torch.no_grad():  # sharper attention, so that a block left out of a pattern shows
        for layer in hf.bert.encoder.layer:
            layer.attention.self.query.weight.mul_(3), layer.attention.self.key.weight.mul_(3)
    return hf, perturbed_from_hf(hf, tmp_path_factory.mktemp("big_bird"))


def test_big_bird_block_sparse_and_full_fallback_match_transformers(big_bird, tmp_path):
    hf, ours = big_bird
    assert (ours.config.attention, ours.config.attention_block, ours.config.random_blocks) == ("bigbird", 2, 2)
    ids, mask, types = right_padded(96, 23, 0, lengths=(None, 15))  # 12 blocks, the last one cut short
    with torch.no_grad():
        theirs = hf(ids, attention_mask=mask, token_type_ids=types).logits
        mine = ours(ids, attention_mask=mask, token_type_ids=types).logits
        assert hf.bert.attention_type == "block_sparse"  # transformers' eval pattern: random blocks are block 0
        assert max_diff(mine, theirs, mask) <= 1e-4
        short = right_padded(96, 18, 0, lengths=(None, 9))  # <= (5 + 2r) b: full attention in both
        assert max_diff(ours(short[0], attention_mask=short[1]).logits, hf(short[0], attention_mask=short[1]).logits,
                        short[1]) <= 1e-4
    assert hf.bert.attention_type == "original_full"  # transformers switched itself for good
    to_hf(ours, tmp_path)
    back = transformers.BigBirdForMaskedLM.from_pretrained(tmp_path).eval()
    assert back.config.attention_type == "block_sparse"
    with torch.no_grad():
        assert max_diff(back(ids, attention_mask=mask, token_type_ids=types).logits, mine, mask) <= 1e-4


# ---- YOSO ---------------------------------------------------------------------------------------------------------
YOSO = dict(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=32, conv_window=3, hash_code_len=5)


@pytest.fixture(scope="module")
def yoso(tmp_path_factory):
    torch.manual_seed(0)
    hf = transformers.YosoForMaskedLM(transformers.YosoConfig(**YOSO))
    with torch.no_grad():  # the value convolution's 0.02-init kernels made larger, so that a wrong one shows
        for layer in hf.yoso.encoder.layer:
            layer.attention.self.conv.weight.normal_(std=0.3)
    return hf, perturbed_from_hf(hf, tmp_path_factory.mktemp("yoso"))


def test_yoso_expectation_matches_transformers_and_round_trips(yoso, tmp_path):
    hf, ours = yoso
    assert (ours.config.attention, ours.config.yoso_hash_len, ours.config.value_conv) == ("yoso", 5, 3)
    with pytest.raises(LlmarchError, match="'full' has no value convolution"):  # a kind without one refuses it
        ours.config.replace(attention="full")
    ids, mask, _ = right_padded(96, 16, 1, types=1)
    with torch.no_grad():
        mine = ours(ids).logits
        assert max_diff(mine, hf(ids).logits, torch.ones_like(mask)) <= 1e-4
        # a right-padded row gives what the row alone gives in transformers (whose own padded forward attends to
        # the padding: its mask becomes all ones)
        padded = ours(ids, attention_mask=mask).logits
        assert max_diff(padded[1:, :11], hf(ids[1:, :11]).logits, mask[1:, :11]) <= 1e-4
    to_hf(ours, tmp_path)
    back = transformers.YosoForMaskedLM.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert max_diff(back(ids).logits, mine, torch.ones_like(mask)) <= 1e-4


# ---- the token classifier and the base model of each family -------------------------------------------------------
FAMILIES = {"fnet": ("FNet", FNET, 16), "nystromformer": ("Nystromformer", {**NYSTROM, "num_landmarks": 4}, 16),
            "big_bird": ("BigBird", BIG_BIRD, 23), "yoso": ("Yoso", YOSO, 16)}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_token_classifier_and_base_model(family, tmp_path):
    """XForTokenClassification's logits, and its body saved alone (XModel) read as head 'embed', whose final hidden
    states equal transformers' last_hidden_state (unpadded: FNet takes no mask, Nystromformer's landmarks need the
    full length)."""
    import llmarch

    prefix, kwargs, T = FAMILIES[family]
    torch.manual_seed(0)
    hf = getattr(transformers, prefix + "ForTokenClassification")(getattr(transformers, prefix + "Config")(
        **kwargs, num_labels=3))
    ours = perturbed_from_hf(hf, tmp_path / "tokens")
    assert ours.config.head == "tokens"
    ids = right_padded(96, T, 0)[0]
    body = getattr(hf, hf.base_model_prefix)
    body.save_pretrained(tmp_path / "base")
    base = llmarch.from_hf(tmp_path / "base")
    assert base.config.head == "embed"
    with torch.no_grad():
        assert (hf(ids).logits - ours(ids).logits).abs().max() <= 1e-4
        assert (body(ids).last_hidden_state - base(ids).hidden_states).abs().max() <= 1e-4
