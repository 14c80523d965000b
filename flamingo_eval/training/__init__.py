"""Training the bridge of a frozen-LM Flamingo (the ``mini`` model's): ``tools/train_mini.py`` drives it."""

from flamingo_eval.training.bridge import History, Prepared, TrainConfig, prepare, train
from flamingo_eval.training.data import Progress, Silent

__all__ = ["History", "Prepared", "Progress", "Silent", "TrainConfig", "prepare", "train"]
