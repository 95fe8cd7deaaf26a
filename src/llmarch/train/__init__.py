"""One training loop for every objective; checkpoints as atomic directories; metrics to CSV and PNG."""
from .loop import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
