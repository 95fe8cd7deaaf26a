"""Image input for vision-language models (LLaVA, PaliGemma): a ViT encoder (tower.py), a projector into the text
model's width (projector.py), and the image features written at the image-token positions of the text embeddings
(inputs.py); the vision config they are built from is config.py's. Qwen2-VL's, Qwen2.5-VL's and Qwen3-VL's tower of
images of any size (qwen_tower.py, qwen_merger.py), its inputs and M-RoPE positions (qwen_inputs.py), preprocessing
(qwen_pixels.py) and config (qwen_config.py) are the qwen_* modules. Images from files: read by Pillow
(image_files.py), preprocessed as the checkpoint's image processor does (preprocess.py), their tokens placed in the
prompt as the family's processor does (prompts.py). Nothing is imported here: config.py is read by llmarch.config,
whose ModelConfig the tower's blocks are built from."""
