"""ftkit: see how losses, optimizers and fine-tuning behave, and train real models without boilerplate.

The public API lives here. Heavy or optional pieces (plots, widgets, data, NER) load on first use, so
``import ftkit`` stays fast and needs neither plotly nor transformers.
"""
from importlib import import_module

from .losses import LOSSES, l2_penalty, make_loss
from .optim import OPTIMIZERS, SCHEDULERS, make_optimizer, make_scheduler
from .utils import get_device, seed_everything

__version__ = "0.1.0"

# name -> module that defines it; resolved lazily by __getattr__ below
_LAZY = {
    "fit": "train", "evaluate": "train", "predict": "train", "History": "train", "TrainState": "train",
    "callbacks": None, "train": None, "data": None, "surfaces": None, "landscape": None, "plots": None,
    "widgets": None, "models": None, "ner": None, "metrics": None, "ui": None, "replay": None,
    "lr_find": "lr_finder", "LRFinderResult": "lr_finder",
    "launch": "launcher", "launcher": None, "distributed": None, "hessian": None, "gd_engine": None, "races": None, "lm": None,
    "hf": None, "classify": None, "finetune": None,
}

__all__ = ["make_loss", "l2_penalty", "LOSSES", "make_optimizer", "make_scheduler", "OPTIMIZERS", "SCHEDULERS",
           "seed_everything", "get_device", *_LAZY]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'ftkit' has no attribute {name!r}")
    module = import_module(f".{_LAZY[name] or name}", __name__)
    value = module if _LAZY[name] is None else getattr(module, name)
    globals()[name] = value
    return value
