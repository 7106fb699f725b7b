"""ftkit: see how losses, optimizers and fine-tuning behave, and train real models without boilerplate.

The public API lives here. Heavy or optional pieces (plots, widgets, data, NER) load on first use, so
``import ftkit`` stays fast and needs neither plotly nor transformers.
"""
from importlib import import_module

from . import core as _core
from .losses import LOSSES, l2_penalty, make_loss
from .optim import OPTIMIZERS, make_optimizer
from .schedules import SCHEDULERS, make_scheduler
from .utils import get_device, seed_everything

__version__ = "0.1.0"

# name -> submodule that defines it (None: the submodule itself); resolved lazily by __getattr__ below
_LAZY = {
    "fit": "train", "evaluate": "train", "predict": "train", "History": "core", "TrainState": "core",
    "Callback": "core", "lr_find": "train", "LRFinderResult": "train", "launch": "train",
    "EarlyStopping": "train.callbacks", "ModelCheckpoint": "train.callbacks", "CSVLogger": "train.loggers",
    "TensorBoardLogger": "train.loggers", "WandbLogger": "train.loggers",
    "core": None, "metrics": None, "models": None, "utils": None, "losses": None, "optim": None, "schedules": None,
    "params": None, "train": None, "optviz": None, "nlp": None, "vision": None, "data": None, "plots": None, "ui": None,
    "export": None, "export_run_html": "export",
    "sweep": None,        # a callable module: ftkit.sweep(notebook, params, metric=..., out=...)
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


def _export_run_html(history, path, **kwargs):
    from .export import export_run_html
    return export_run_html(history, path, **kwargs)


_core.EXPORTERS["run_html"] = _export_run_html      # History.export_html (core cannot import the export room)
