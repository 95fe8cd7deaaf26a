"""Audio input for audio-language models (Qwen2-Audio, Voxtral): a Whisper-style encoder (tower.py), a projector into
the text model's width (vision/projector.py's), and the clips' features written at the audio-token positions of the
text embeddings (inputs.py); the audio config they are built from is config.py's, the prompt's audio tokens laid out
as each family's processor lays them by prompts.py. Nothing is imported here: config.py is read by llmarch.config."""
