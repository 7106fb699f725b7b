"""Data loaders that return ready-to-train objects: ``cifar10``, ``conll``, ``corpus`` (text for language models),
``synthetic`` and ``text`` (sentence classification)."""
from importlib import import_module

__all__ = ["cifar10", "conll", "corpus", "synthetic", "text"]


def __getattr__(name):
    if name in __all__:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ftkit.data' has no attribute {name!r}")
