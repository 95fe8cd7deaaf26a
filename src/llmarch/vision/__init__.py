"""Image input for vision-language models (LLaVA, PaliGemma): a ViT encoder (tower.py), a projector into the text
model's width (projector.py), and the image features written at the image-token positions of the text embeddings
(inputs.py); the vision config they are built from is config.py's. Nothing is imported here: config.py is read by
llmarch.config, whose ModelConfig the tower's blocks are built from."""
