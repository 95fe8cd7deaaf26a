"""Qwen2-Audio's and Voxtral's mmproj files (`qwen2a`, `voxtral`; interop/gguf_mmproj_audio.py) against transformers
and llama.cpp: tiny seeded Qwen2AudioForConditionalGeneration and VoxtralForConditionalGeneration (a 3-block Whisper
encoder 16 wide, as llama.cpp's name table maps conv2 only below the block count, of 128 mel bins and 1500 positions,
the 30 s clips mtmd cuts; a text model 32 wide; 1-D parameters perturbed), the mmproj written by llama.cpp's own
converter (`--mmproj` of the checkpoint: its stem's convolutions stored F16, rewritten here as their F32 values), the
text model by to_gguf. The model read equals from_hf's (audio config; logits with a clip transformers' within 1e-4);
llama.cpp's audio embeddings (mtmd's own log-mel of a 29.9 s clip) ours on our features for Qwen2-Audio (not for
Voxtral: llama.cpp's graph is another, see the test); bad files refused in one line."""
import json
import wave

import numpy as np
import pytest
import torch

import llmarch
from llmarch.audio.config import audio_config
from llmarch.audio.prompts import audio_request
from llmarch.errors import LlmarchError
from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer
from llmarch.interop.gguf_writer import to_gguf

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

from conftest import perturbed  # noqa: E402
from test_cli_trust import call  # noqa: E402
from test_gguf_mmproj import chunk_embeddings, convert_mmproj, rewrite  # noqa: E402
from test_vision_images import tokenizer  # noqa: E402

SPECIAL = ["<unk>", "<s>", "</s>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "[AUDIO]", "[BEGIN_AUDIO]",
           "[INST]", "[/INST]"]
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
TOWER = dict(num_mel_bins=128, max_source_positions=1500)
CASES = {  # projector type: (transformers class, text family, config of the audio token's id)
    "qwen2a": ("Qwen2Audio", "qwen2", "<|AUDIO|>", lambda tok, aid: transformers.Qwen2AudioConfig(
        text_config={"model_type": "qwen2", **TEXT, "vocab_size": len(tok)}, audio_token_index=aid,
        audio_config=dict(TOWER, model_type="qwen2_audio_encoder", d_model=16, encoder_layers=3,
                          encoder_attention_heads=2, encoder_ffn_dim=32))),
    "voxtral": ("Voxtral", "llama", "[AUDIO]", lambda tok, aid: transformers.VoxtralConfig(
        text_config={"model_type": "llama", **TEXT, "head_dim": 8, "vocab_size": len(tok)}, audio_token_id=aid,
        audio_config=dict(TOWER, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64))),
}


def clip(seconds: float, seed: int = 0) -> np.ndarray:
    """Seeded noise at 16 kHz."""
    return (np.random.default_rng(seed).standard_normal(int(16000 * seconds)) * 0.1).astype(np.float32)


@pytest.fixture(scope="module", params=sorted(CASES))
def files(request, tmp_path_factory):
    """(text model .gguf, mmproj .gguf, transformers model, projector type)."""
    prefix, family, token, config = CASES[request.param]
    path = tmp_path_factory.mktemp(request.param)
    tok = tokenizer(SPECIAL)
    tok.save_pretrained(path / "hf")
    torch.manual_seed(0)
    hf = getattr(transformers, f"{prefix}ForConditionalGeneration")(config(tok, tok.convert_tokens_to_ids(token)))
    with torch.no_grad():
        for name, p in hf.model.audio_tower.named_parameters():
            if p.dim() > 1 and "embed_positions" not in name:
                p.normal_(0, 0.1)
    hf = perturbed(hf).eval()
    hf.save_pretrained(path / "hf")
    (path / "hf" / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
    config = json.loads((path / "hf" / "config.json").read_text())  # the ids the tokenizer's GGUF keys come from
    (path / "hf" / "config.json").write_text(json.dumps({**config, "bos_token_id": 1, "eos_token_id": 2}))
    transformers.WhisperFeatureExtractor(feature_size=128).save_pretrained(path / "hf")
    convert_mmproj(path / "hf", path / "mmproj-f16.gguf")
    tower = hf.model.audio_tower
    rewrite(path / "mmproj-f16.gguf", path / "mmproj.gguf", {  # the stem's exact values (the converter's F16)
        f"a.conv1d.{n}.weight": getattr(tower, f"conv{n}").weight.detach().numpy() for n in (1, 2)})
    ours = llmarch.from_hf(path / "hf")
    text = llmarch.build(ours.config.replace(audio=None, hf_model_type=family))
    text.load_state_dict({k: v for k, v in ours.state_dict().items() if not k.startswith("audio.")})
    to_gguf(text, path / "text.gguf", "f32", checkpoint_tokenizer(path / "hf"))
    return path / "text.gguf", path / "mmproj.gguf", hf, request.param


def test_reads_as_from_hf_with_transformers_logits(files):
    text, mmproj, hf, kind = files
    model = llmarch.from_gguf(text, mmproj=mmproj)
    want = llmarch.from_hf(text.parent / "hf")
    assert model.config.hf_model_type == want.config.hf_model_type
    assert audio_config(model.config.audio) == audio_config(want.config.audio)
    tok = checkpoint_tokenizer(text, mmproj=mmproj)
    ids, arguments = audio_request(model, tok, "the cat <|AUDIO|> sat" if kind == "qwen2a" else "the cat sat",
                                   [clip(1.5)])
    ids = torch.tensor([ids])
    with torch.no_grad():
        got, ref = model(ids, **arguments).logits, hf(input_ids=ids, **arguments).logits
    diff = (got - ref).abs().max()
    assert diff <= 1e-4, diff  # seen: 1.2e-7 (Qwen2-Audio), 1.6e-7 (Voxtral)


def test_audio_embeddings_are_llama_cpps(files):
    """mtmd's embeddings of a 29.9 s clip (one chunk, its own log-mel spectrogram; 30 s exactly is two to mtmd) ours
    on WhisperFeatureExtractor's. mtmd pads every clip to 30 s and runs it whole, unmasked: Qwen2-Audio's tower is
    compared so (its feature_attention_mask all ones), where transformers masks a clip's padding and cuts its
    tokens to the clip's own length (747 here, mtmd's 750)."""
    pytest.importorskip("llama_cpp.mtmd_cpp", reason="llama-cpp-python (with mtmd) is not installed")
    text, mmproj, _, kind = files
    if kind == "voxtral":
        pytest.skip("llama.cpp's voxtral pools the encoder's frames in pairs before stacking them (clip.cpp's "
                    "audio_has_avgpool), where transformers' Voxtral does not, and llama-cpp-python 0.3.36's mtmd "
                    "aborts on this tower's 30 s clip (expected 187 tokens, its graph gives 188)")
    samples = clip(29.9)
    theirs = chunk_embeddings(text, mmproj, samples)
    model = llmarch.from_gguf(text, mmproj=mmproj)
    _, arguments = audio_request(model, checkpoint_tokenizer(text, mmproj=mmproj), "x" if kind == "voxtral" else
                                 "<|AUDIO|>", [samples])
    with torch.no_grad():
        mask = arguments.get("feature_attention_mask")
        ours = model.audio.features(arguments["input_features"], None if mask is None else torch.ones_like(mask))
    assert len(theirs) == 1 and theirs[0].shape == ours.shape
    # the tokens of the clip's own frames (2990 of 3000), but the last: mtmd pads its spectrogram's end otherwise
    # (the tokens past it differ by up to 8% of the largest)
    real = ours.shape[0] * 2990 // 3000 - 1
    diff = (ours[:real] - theirs[0][:real]).abs().max()
    assert diff <= 1e-3 * theirs[0].abs().max(), (diff, theirs[0].abs().max())  # seen: 3.0e-4 of 0.35


@pytest.mark.parametrize("change, problem", [
    (dict(drop=("a.blk.0.attn_q.bias",)), "missing tensor"),
    (dict(meta={"clip.audio.projection_dim": 48}), "projects audio to width 48"),
])
def test_bad_audio_mmproj_is_one_line(files, tmp_path, capsys, change, problem):
    text, mmproj, _, _ = files
    rewrite(mmproj, tmp_path / "bad.gguf", **change)
    with pytest.raises(LlmarchError, match=problem):
        llmarch.from_gguf(text, mmproj=tmp_path / "bad.gguf")
    with wave.open(str(tmp_path / "a.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((clip(0.5) * 32767).astype("<i2").tobytes())
    code, _, stderr = call(capsys, "generate", "--checkpoint", text, "--mmproj", tmp_path / "bad.gguf", "--audio",
                           tmp_path / "a.wav", "--prompt", "x", "--max-new-tokens", "1")
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and problem in stderr, stderr
