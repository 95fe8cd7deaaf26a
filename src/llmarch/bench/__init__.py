"""`llmarch bench`: model.py, a model against `transformers` (training, decoding, prefill); attention.py, one
layer of each attention kind or mixer over sequence lengths; context.py, decode speed at long contexts per
mixer. Each module holds its config, its run function, its markdown table and, where it has one, its plot."""
