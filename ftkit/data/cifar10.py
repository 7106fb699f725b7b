r"""CIFAR-10 from its ``cifar-10-batches-py`` pickles: read, download, summarize (writers: :mod:`ftkit.data.fake`).

    data = load_cifar10("data/cifar10", subset=5000)      # uint8 images, labels, classes, mean/std
    train_loader, val_loader, test_loader = ftkit.data.images.make_loaders(data, batch_size=512, device="cuda")

Files: ``data_batch_1`` … ``data_batch_5`` and ``test_batch`` are pickled dicts with Python-2 (bytes) keys:
``b'data'`` (uint8, N×3072, each row a 3×32×32 image in CHW order), ``b'labels'`` (ints 0–9),
``b'batch_label'`` and ``b'filenames'``; ``batches.meta`` holds ``b'label_names'``. The batches are read
directly (no md5 check of files on disk), so a folder with fewer images per batch — a user's subset, a test
fixture written by :func:`ftkit.data.fake.write_cifar_batches` — loads like the real one. The checksum is checked once, on
download (``python -m ftkit.data.cifar10 --download data/cifar10``).

:func:`load_cifar10` also returns the training split's per-channel mean and std, which the loaders of
:mod:`ftkit.data.images` normalize with.

Pickle files can run code when loaded; the batches are read with an unpickler that builds only the plain types
they hold (NumPy arrays, lists, dicts, bytes, strings, numbers) and refuses any other class or function a file
names, so a crafted batch fails instead of running its code.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pickle
import re
import warnings
import socket
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ..utils import check_int, check_number

__all__ = ["CLASSES", "URL", "MD5", "DOWNLOAD_CMD", "FOLDER", "Split", "Cifar10", "load_cifar10", "download_cifar10",
           "read_batch", "check_labels", "cifar10_or_synthetic"]

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"  # of the tarball (as torchvision.datasets.CIFAR10.tgz_md5)
FOLDER = "cifar-10-batches-py"
DOWNLOAD_CMD = "python -m ftkit.data.cifar10 --download {data_dir}"
IMAGE_SHAPE = (3, 32, 32)


class Split(NamedTuple):
    images: torch.Tensor  # uint8, N×3×32×32
    labels: torch.Tensor  # int64, N


@dataclass
class Cifar10:
    """Train/val/test splits (uint8 CHW images, int64 labels), class names and the train split's mean/std."""
    train: Split
    val: Split
    test: Split
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    root: str

    def __repr__(self):
        return (f"Cifar10(train={len(self.train.labels)}, val={len(self.val.labels)}, test={len(self.test.labels)}, "
                f"mean={tuple(round(m, 4) for m in self.mean)}, std={tuple(round(s, 4) for s in self.std)}, "
                f"root={self.root!r})")


# --------------------------------------------------------------------------- files
# the only globals a CIFAR-10 pickle names: NumPy's array rebuilding (numpy.core before NumPy 2) and the bytes
# codec of protocol-2 pickles written by Python 3
_PLAIN_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                  ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle named a class or function outside the plain types of a CIFAR-10 batch."""


class _PlainUnpickler(pickle.Unpickler):
    """Builds arrays, lists, dicts, bytes, strings and numbers; any other global a file names is refused
    (a crafted ``__reduce__`` names ``os.system`` or the like: it is never looked up, let alone called)."""

    def find_class(self, module, name):
        if (module, name) not in _PLAIN_GLOBALS:
            raise UnsafePickleError(f"it asks for {module}.{name}, which a CIFAR-10 batch never holds")
        if module.startswith("numpy.core"):  # NumPy 2 moved numpy.core to numpy._core
            try:
                return getattr(importlib.import_module("numpy._core" + module[len("numpy.core"):]), name)
            except ImportError:
                pass
        return getattr(importlib.import_module(module), name)


def _load_plain(path: str):
    with open(path, "rb") as f:
        return _PlainUnpickler(f, encoding="bytes").load()


def read_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """``(data uint8 N×3072, labels int64 N)`` of one batch file; a bad file fails naming it. Only plain data
    is unpickled (see :class:`UnsafePickleError`)."""
    path = os.fspath(path)
    fix = f"delete it and fetch the data again ({DOWNLOAD_CMD.format(data_dir='<data_dir>')})"
    try:
        batch = _load_plain(path)
    except UnsafePickleError as e:
        raise ValueError(f"{path} was not loaded: {e} (a file that names other code may be crafted to run it); "
                         f"{fix}") from None
    except Exception as e:  # truncated/corrupt pickles raise EOFError, UnpicklingError, ValueError, …
        raise ValueError(f"{path} is not a readable CIFAR-10 batch (truncated or corrupt: {type(e).__name__}: "
                         f"{e}); {fix}") from e
    if not isinstance(batch, dict):
        raise ValueError(f"{path} holds a {type(batch).__name__}, not a CIFAR-10 batch dict; {fix}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path} lacks the 'data'/'labels' entries of a CIFAR-10 batch (has {sorted(batch)}); {fix}")
    data, labels = np.asarray(batch["data"]), np.asarray(batch["labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: images must be uint8 rows of 3072 = 3×32×32 values, got a {data.dtype} array "
                         f"of shape {data.shape}")
    return data, check_labels(labels, len(data), path)


def check_labels(labels, n: int, where: str) -> np.ndarray:
    """``labels`` as an array of ``n`` integers 0–9, or one error naming ``where``."""
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where}: need {n} integer labels (one per image), got {labels.dtype} array of shape "
                         f"{labels.shape}")
    if n and (labels.min() < 0 or labels.max() > 9):
        bad = labels[(labels < 0) | (labels > 9)][0]
        raise ValueError(f"{where}: label {bad} is outside 0–9 (CIFAR-10 has 10 classes)")
    return labels.astype(np.int64)


def _batch_files(root: str) -> list[str]:
    """``data_batch_<k>`` files in ``root``, in numeric order."""
    names = [n for n in os.listdir(root) if re.fullmatch(r"data_batch_\d+", n)]
    return [os.path.join(root, n) for n in sorted(names, key=lambda n: int(n.rsplit("_", 1)[1]))]


def _find_root(data_dir: str) -> str | None:
    """``data_dir/cifar-10-batches-py`` (the tarball's layout) or ``data_dir`` itself, if it holds batches.

    A folder with some batch files but not others names the missing ones (a gap in ``data_batch_1..k`` or no
    ``test_batch``) instead of silently loading less."""
    for root in (os.path.join(data_dir, FOLDER), data_dir):
        if not os.path.isdir(root):
            continue
        files = [os.path.basename(f) for f in _batch_files(root)]
        has_test = os.path.exists(os.path.join(root, "test_batch"))
        if not files and not has_test:
            continue
        k = max((int(n.rsplit("_", 1)[1]) for n in files), default=0)
        missing = [f"data_batch_{i}" for i in range(1, max(k, 1) + 1) if f"data_batch_{i}" not in files]
        missing += [] if has_test else ["test_batch"]
        if missing:
            raise FileNotFoundError(f"CIFAR-10 folder {root!r} lacks {', '.join(missing)} (it has "
                                    f"{', '.join(files + (['test_batch'] if has_test else [])) or 'no batch'}); "
                                    f"copy the missing files from the tarball, or re-download: "
                                    f"`{DOWNLOAD_CMD.format(data_dir=data_dir)}`")
        if k > 5:
            extra = ", ".join(f for f in files if int(f.rsplit("_", 1)[1]) > 5)
            raise ValueError(f"CIFAR-10 folder {root!r} has {extra} besides data_batch_1..5: CIFAR-10 has 5 training "
                             "batches, so it would load images that are not CIFAR-10's (a copy, another data set?); "
                             "move the extra file(s) out of the folder")
        if k < 5:
            warnings.warn(f"{root!r} holds data_batch_1..{k}, not the 5 training batches of CIFAR-10: loading "
                          f"{k}/5 of the training files", UserWarning, stacklevel=3)
        return root
    return None


def _can_reach(host: str = "www.cs.toronto.edu", port: int = 443, timeout: float = 5.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def download_cifar10(data_dir) -> str:
    """Fetch the tarball with torchvision (md5 checked) and extract it to ``data_dir/cifar-10-batches-py``."""
    from torchvision.datasets.utils import download_and_extract_archive
    data_dir = os.fspath(data_dir)
    download_and_extract_archive(URL, data_dir, md5=MD5, remove_finished=True)
    return os.path.join(data_dir, FOLDER)


def _where(path: str) -> str:
    """For a relative path: which working directory it was read from (a notebook's is not always the repo root)."""
    return "" if os.path.isabs(path) else f" (relative to the working directory {os.getcwd()!r})"


def _missing(data_dir: str, why: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"no CIFAR-10 batches (data_batch_1…, test_batch) in {data_dir!r} or {os.path.join(data_dir, FOLDER)!r}"
        f"{_where(data_dir)}; {why}. On a machine with internet run `{DOWNLOAD_CMD.format(data_dir=data_dir)}` and "
        f"copy the folder here, or pass data_dir= pointing at your copy")


def _read_split(files: list[str]) -> Split:
    parts = [read_batch(f) for f in files]
    data = np.concatenate([d for d, _ in parts]) if parts else np.zeros((0, 3072), np.uint8)
    labels = np.concatenate([y for _, y in parts]) if parts else np.zeros(0, np.int64)
    return Split(torch.from_numpy(data).reshape(-1, *IMAGE_SHAPE), torch.from_numpy(labels))


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``images/255`` over (N, H, W) (population std), one channel at a time."""
    stats = [torch.var_mean(images[:, c].float() / 255, correction=0) for c in range(images.shape[1])]
    return tuple(float(m) for _, m in stats), tuple(float(v) ** 0.5 for v, _ in stats)


def load_cifar10(data_dir="data/cifar10", *, subset: int | None = None, val_fraction: float = 0.1, seed: int = 0,
                 download: bool = True) -> Cifar10:
    """Read the batches in ``data_dir`` (downloading them when missing and online) and split off validation.

    ``subset``: keep this many training images (a random draw with ``seed``); then ``val_fraction`` of them
    (drawn with the same ``seed``, independent of the global RNG) become the validation split. The test split
    is always the whole ``test_batch``. ``mean``/``std`` come from the remaining training images only.
    """
    data_dir = os.fspath(data_dir)
    check_int("seed", seed, 0)
    if subset is not None:
        check_int("subset", subset, meaning=" (training images to keep) or None")   # before any file is read
    if not 0 <= check_number("val_fraction", val_fraction) < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    val_fraction = float(val_fraction)
    root = _find_root(data_dir)
    if root is None:
        if not download:
            raise _missing(data_dir, "download=False")
        if not _can_reach():
            raise _missing(data_dir, "and www.cs.toronto.edu cannot be reached (offline?)")
        download_cifar10(data_dir)
        root = _find_root(data_dir)
    train, test = _read_split(_batch_files(root)), _read_split([os.path.join(root, "test_batch")])
    classes = _label_names(root)

    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train.labels), generator=g)
    if subset is not None:
        if getattr(subset, "from_preset", False) and subset > len(order):   # only a size the user set is an error
            print(f"the preset asks for {int(subset):,} training images; {root!r} has {len(order):,}: using all "
                  f"{len(order):,}")
            subset = len(order)
        if not 1 <= int(subset) <= len(order):
            raise ValueError(f"subset must be between 1 and the {len(order)} training images in {root!r}, "
                             f"got {subset}")
        order = order[:int(subset)]
    n_val = int(round(len(order) * val_fraction))
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    if len(train_idx) == 0:
        raise ValueError(f"no training images left after taking val_fraction={val_fraction} of {len(order)}")
    train, val = Split(train.images[train_idx], train.labels[train_idx]), Split(train.images[val_idx],
                                                                                 train.labels[val_idx])
    mean, std = _channel_stats(train.images)
    return Cifar10(train, val, test, classes, mean, std, root)


def _has_batches(data_dir: str) -> bool:
    """Whether ``data_dir`` (or its ``cifar-10-batches-py``) holds any CIFAR-10 file at all."""
    for root in (os.path.join(data_dir, FOLDER), data_dir):
        if os.path.isdir(root) and (_batch_files(root) or os.path.exists(os.path.join(root, "test_batch"))):
            return True
    return False


def cifar10_or_synthetic(data_dir, n_train: int, *, seed: int = 0,
                         synthetic: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``(x, y, source)``: ``n_train`` normalized CIFAR-10 training images (a seeded subset, no validation split)
    when ``data_dir`` holds CIFAR-10, else as many synthetic 10-class images
    (:func:`ftkit.data.synthetic.image_classification`) with ``source="synthetic"``.

    Only an absent folder (or one without any CIFAR-10 file) falls back: a folder that holds some batches but
    not all, or a corrupt one, raises its error — a run never silently trains on the wrong data.
    ``synthetic=False`` asks for CIFAR-10 only: downloaded into ``data_dir`` when missing and online, else the
    loader's error (notebook 01's default); ``synthetic=True`` the synthetic task whatever ``data_dir`` holds.
    """
    data_dir = os.fspath(data_dir)
    check_int("n_train", n_train, meaning=" (training images)")
    if synthetic or (synthetic is None and not _has_batches(data_dir)):
        from .synthetic import image_classification
        x, y = image_classification(n_train, num_classes=10, seed=seed)
        return x, y, "synthetic"
    cifar = load_cifar10(data_dir, subset=n_train, val_fraction=0.0, seed=seed, download=synthetic is False)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (cifar.mean, cifar.std))
    return (cifar.train.images.float() / 255 - mean) / std, cifar.train.labels, "CIFAR-10"


def _label_names(root: str) -> list[str]:
    """The 10 class names of ``batches.meta`` (CIFAR-10's own when the file is absent); a corrupt file or one
    with another number of names fails naming it."""
    meta = os.path.join(root, "batches.meta")
    if not os.path.exists(meta):
        return list(CLASSES)
    fix = f"delete it (the standard CIFAR-10 names are then used) or fetch the data again " \
          f"({DOWNLOAD_CMD.format(data_dir='<data_dir>')})"
    try:
        data = _load_plain(meta)
    except Exception as e:
        raise ValueError(f"{meta} is not a readable CIFAR-10 batches.meta ({type(e).__name__}: {e}); {fix}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{meta} holds a {type(data).__name__}, not the batches.meta dict; {fix}")
    data = {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}
    names = data.get("label_names", CLASSES)
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (bytes, str)) for n in names):
        raise ValueError(f"{meta}: label_names must be a list of 10 names, got {type(names).__name__}; {fix}")
    names = [n.decode() if isinstance(n, bytes) else n for n in names]
    if len(names) != len(CLASSES) or len(set(names)) != len(names):
        raise ValueError(f"{meta} lists {len(names)} label names {names[:12]}, but CIFAR-10 has 10 distinct classes "
                         f"(labels 0–9); {fix}")
    return names


# --------------------------------------------------------------------------- command line
def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m ftkit.data.cifar10",
                                 description="Fetch CIFAR-10 (md5-checked) or summarize a local copy.")
    ap.add_argument("data_dir", nargs="?", help="summarize the batches in this folder")
    ap.add_argument("--download", metavar="DIR", help="download and extract into DIR/cifar-10-batches-py")
    args = ap.parse_args(argv)
    if args.download:
        root = _find_root(args.download)
        print(f"already there: {root}" if root else f"downloaded to {download_cifar10(args.download)}")
    if args.data_dir or args.download:
        print(load_cifar10(args.data_dir or args.download, download=False))
    else:
        ap.print_help()


if __name__ == "__main__":
    main()
