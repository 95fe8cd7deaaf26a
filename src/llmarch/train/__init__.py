"""One training loop (loop.py) for every task (task.py: pretraining, classification, seq2seq, synthetic);
checkpoints as atomic directories; metrics to CSV and PNG."""
from .loop import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
