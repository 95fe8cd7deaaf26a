"""Qwen2.5-Omni's thinker reading WAV and image files against transformers' Qwen2_5OmniProcessor: audio
(audio/prompts.py's entry for it, which is Qwen2-Audio's layout: WhisperFeatureExtractor padded to 30 s, <|AUDIO|>
repeated ((L - 1) // 2 + 1 - 2) // 2 + 1 times for L real frames) with input_ids, input_features and
feature_attention_mask equal for clips of 1.3 s and 31 s (cut to 30 s); images (vision/prompts.py's Qwen-VL layout
with <|vision_bos|> and <|vision_eos|>) with ids and pixel values equal; `llmarch generate --audio` and `--image`
printing transformers' greedy continuation of the processor's inputs."""
import pytest
import torch

import llmarch
from conftest import perturbed
from llmarch.audio.prompts import audio_request
from llmarch.data.tokenizer import load_tokenizer
from llmarch.data.wav import read_wav
from test_audio_prompts import AUDIO, MELS, PROMPT, TEXT, clips, tokenizer
from test_cli_trust import call

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

# the processor's names for the tokens it places; the vision ones stand in tokens the prompts never hold
NAMES = {"audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
         "image_token": "[AUDIO]", "video_token": "[BEGIN_AUDIO]", "vision_bos_token": "[INST]",
         "vision_eos_token": "[/INST]"}


def processor(tok):
    """Qwen2_5OmniProcessor over `tok`, without a video processor (its check needs torchvision)."""
    for name, text in NAMES.items():
        setattr(tok, name, text)
        setattr(tok, name + "_id", tok.convert_tokens_to_ids(text))

    class AudioOnly(transformers.Qwen2_5OmniProcessor):
        def check_argument_for_proper_class(self, name, argument):
            return None

    return AudioOnly(image_processor=transformers.Qwen2VLImageProcessorPil(), video_processor=None,
                     feature_extractor=transformers.WhisperFeatureExtractor(feature_size=MELS), tokenizer=tok)


def tiny_thinker(folder, tower: str, **tokens):
    """A tiny seeded thinker with these token ids, the matrices of model.<tower> drawn N(0, 0.1), every 1-D
    parameter perturbed, saved to `folder`."""
    torch.manual_seed(0)
    hf = transformers.Qwen2_5OmniThinkerForConditionalGeneration(transformers.Qwen2_5OmniThinkerConfig(
        text_config=dict(TEXT, rope_parameters=dict(rope_type="default", rope_theta=1e4, mrope_section=[1, 1, 2])),
        vision_config=dict(depth=1, hidden_size=16, out_hidden_size=32, intermediate_size=24, num_heads=2,
                           patch_size=4, window_size=16, fullatt_block_indexes=[0]),
        audio_config=dict(d_model=16, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32,
                          num_mel_bins=MELS, n_window=50, output_dim=32), **tokens))
    with torch.no_grad():
        for p in getattr(hf.model, tower).parameters():
            if p.dim() > 1:
                p.normal_(0, 0.1)
    perturbed(hf).save_pretrained(folder)
    hf.generation_config.eos_token_id = None
    return hf


@pytest.fixture(scope="module")
def thinker(tmp_path_factory):
    root = tmp_path_factory.mktemp("omni_audio")
    hf = tiny_thinker(root, "audio_tower", audio_token_index=AUDIO,
                      vision_start_token_id=7)  # "[INST]": get_rope_index reads it (the config class has no default)
    tok = tokenizer()
    tok.save_pretrained(root)
    transformers.WhisperFeatureExtractor(feature_size=MELS).save_pretrained(root)
    return root, hf, processor(tok), [read_wav(w) for w in clips(root)[::2]]


def test_ids_and_features_are_the_processors(thinker):
    path, _, omni, samples = thinker
    prompt = PROMPT + " and <|audio_bos|><|AUDIO|><|audio_eos|>?"
    theirs = omni(text=prompt, audio=samples, return_tensors="pt")
    ids, arguments = audio_request(llmarch.load(path), load_tokenizer(path), prompt, samples)
    assert ids == theirs["input_ids"][0].tolist() and ids.count(AUDIO) == 32 + 750
    assert torch.equal(arguments["input_features"], theirs["input_features"])
    assert torch.equal(arguments["feature_attention_mask"], theirs["feature_attention_mask"])


def test_cli_generate_with_audio(thinker, capsys):
    path, hf, omni, samples = thinker
    inputs = omni(text=PROMPT, audio=samples[:1], return_tensors="pt")
    out = hf.generate(**inputs, max_new_tokens=5, do_sample=False)
    code, printed, err = call(capsys, "generate", "--checkpoint", path, "--audio", path / "0.wav", "--prompt", PROMPT,
                              "--temperature", 0, "--max-new-tokens", 5)
    assert code == 0, err
    assert printed == omni.tokenizer.decode(out[0], skip_special_tokens=True) + "\n"


def test_image_files(tmp_path, capsys):
    """An image file: pixel values and ids equal to Qwen2_5OmniProcessor's (its <|IMAGE|> repeated per merged
    patch group; <|vision_bos|><|IMAGE|><|vision_eos|> at the start where the prompt has none), and `llmarch generate
    --image` printing transformers' greedy continuation."""
    import json

    import numpy as np
    from PIL import Image

    from conftest import trained_bpe
    from llmarch.vision.image_files import read_image
    from llmarch.vision.prompts import image_request

    special = ["<unk>", "<|endoftext|>", "<|im_end|>", "<|vision_bos|>", "<|IMAGE|>", "<|vision_eos|>",
               "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>", "<|VIDEO|>"]
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=trained_bpe(special, "what is in the picture"),
                                               eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<unk>")
    names = dict(NAMES, image_token="<|IMAGE|>", video_token="<|VIDEO|>", vision_bos_token="<|vision_bos|>",
                 vision_eos_token="<|vision_eos|>")
    for name, text in names.items():
        setattr(tok, name, text)
        setattr(tok, name + "_id", tok.convert_tokens_to_ids(text))
    pixels = dict(patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=16 * 16, max_pixels=40 * 40)
    hf = tiny_thinker(tmp_path, "visual", image_token_index=4, audio_token_index=7, vision_start_token_id=3,
                      audio_start_token_id=6)
    tok.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(dict(pixels,
                                                                       image_processor_type="Qwen2VLImageProcessor")))
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (23, 37, 3), dtype=np.uint8)).save(tmp_path / "a.png")

    class ImagesOnly(transformers.Qwen2_5OmniProcessor):
        def check_argument_for_proper_class(self, name, argument):
            return None

    omni = ImagesOnly(image_processor=transformers.Qwen2VLImageProcessorPil(**pixels), video_processor=None,
                      feature_extractor=transformers.WhisperFeatureExtractor(feature_size=MELS), tokenizer=tok)
    image = read_image(tmp_path / "a.png")
    inputs = omni(text="<|vision_bos|><|IMAGE|><|vision_eos|>what is in the picture", images=[image],
                  return_tensors="pt")
    ids, arguments = image_request(llmarch.load(tmp_path), load_tokenizer(tmp_path), "what is in the picture",
                                   [image])
    assert ids == inputs["input_ids"][0].tolist() and torch.equal(arguments["pixel_values"], inputs["pixel_values"])
    out = hf.generate(**inputs, max_new_tokens=5, do_sample=False)
    code, printed, err = call(capsys, "generate", "--checkpoint", tmp_path, "--image", tmp_path / "a.png", "--prompt",
                              "what is in the picture", "--temperature", 0, "--max-new-tokens", 5)
    assert code == 0, err
    assert printed == tok.decode(out[0], skip_special_tokens=True) + "\n"
