"""ftkit: see how losses, optimizers and fine-tuning behave, and train real models without boilerplate.

The public API lives here, every name loaded on first use: ``import ftkit`` imports neither torch nor plotly nor
transformers, so the tools that only run notebooks (``ftkit sweep``, ``ftkit.notebook``'s checks) start fast.
"""
from importlib import import_module

from .utils import EXPORTERS as _EXPORTERS

__version__ = "0.1.0"

# name -> submodule that defines it (None: the submodule itself); resolved lazily by __getattr__ below
_LAZY = {
    "make_loss": "losses", "l2_penalty": "losses", "LOSSES": "losses",
    "make_optimizer": "optim", "OPTIMIZERS": "optim", "make_scheduler": "schedules", "SCHEDULERS": "schedules",
    "seed_everything": "utils", "get_device": "utils",
    "fit": "train", "evaluate": "train", "predict": "train", "History": "core", "TrainState": "core",
    "Callback": "core", "lr_find": "train", "LRFinderResult": "train", "launch": "train",
    "EarlyStopping": "train.callbacks", "ModelCheckpoint": "train.callbacks", "CSVLogger": "train.loggers",
    "TensorBoardLogger": "train.loggers", "WandbLogger": "train.loggers",
    "core": None, "metrics": None, "models": None, "utils": None, "losses": None, "optim": None, "schedules": None,
    "params": None, "train": None, "optviz": None, "nlp": None, "vision": None, "data": None, "plots": None, "ui": None,
    "export": None, "export_run_html": "export",
    "sweep": None,        # a callable module: ftkit.sweep(notebook, params, metric=..., out=...)
}

__all__ = [*_LAZY]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'ftkit' has no attribute {name!r}")
    module = import_module(f".{_LAZY[name] or name}", __name__)
    value = module if _LAZY[name] is None else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *_LAZY})


def _export_run_html(history, path, **kwargs):
    from .export import export_run_html
    return export_run_html(history, path, **kwargs)


_EXPORTERS["run_html"] = _export_run_html      # History.export_html (core cannot import the export room)
