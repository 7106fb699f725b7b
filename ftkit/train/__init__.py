"""Training: ``fit`` (the loop as named steps, one path for one or several processes), one batch's forward / loss and
``evaluate`` / ``predict`` (``step``), callbacks, checkpoint files, replay of manual changes, the learning-rate
finder, and scale-out through Accelerate (``distributed``, ``launcher``)."""
from ..core import Callback, History, NonFiniteLoss, NonFiniteLossWarning, StopTraining, TrainState
from .checkpoint import load_checkpoint, save_checkpoint
from .launcher import launch
from .loop import fit, show_training_loop
from .lr_finder import LRFinderResult, lr_find
from .step import evaluate, predict

__all__ = ["fit", "evaluate", "predict", "show_training_loop", "lr_find", "LRFinderResult", "launch",
           "save_checkpoint", "load_checkpoint", "Callback", "History", "TrainState", "StopTraining", "NonFiniteLoss",
           "NonFiniteLossWarning"]
