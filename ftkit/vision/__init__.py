"""Model design for images (notebook 07): plain and residual CIFAR networks, the article's network, gradient norms
at initialization (``resnets``), and transfer from an ImageNet ResNet-18 — probe, fine-tune, scratch
(``transfer``). Each submodule loads on first use (``from ftkit.vision import transfer``)."""
from importlib import import_module

__all__ = ["resnets", "transfer"]


def __getattr__(name):
    if name in __all__:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ftkit.vision' has no attribute {name!r}")
