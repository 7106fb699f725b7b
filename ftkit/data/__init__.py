"""Data loaders that return ready-to-train objects: ``cifar10`` (its files; ``fake`` writes files in its format), ``images`` (batching them), ``conll``,
``corpus`` (text for language models), ``synthetic`` and ``text`` (sentence classification) — and :func:`shipped`,
the small texts that come with the package (found from any working directory: the repo root, ``notebooks/``,
Colab's ``/content``)."""
from importlib import import_module
from pathlib import Path

__all__ = ["cifar10", "conll", "corpus", "fake", "images", "instructions", "synthetic", "text", "shipped", "FILES"]

FILES = Path(__file__).resolve().parent / "files"


def shipped(name: str = "") -> Path:
    """The path of a file or folder shipped in ``ftkit/data/files/``, e.g. ``shipped("text/shakespeare.txt")``."""
    path = FILES / name
    if not path.exists():
        have = sorted(str(p.relative_to(FILES)) for p in FILES.rglob("*") if p.name != "README.md")
        raise FileNotFoundError(f"ftkit ships no {name!r}; it ships: {', '.join(have)}")
    return path


def __getattr__(name):
    if name in __all__:
        return import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ftkit.data' has no attribute {name!r}")
