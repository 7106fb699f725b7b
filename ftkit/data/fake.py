"""Files in the real CIFAR-10 format, for tests, timing runs and a user's own images: ``write_cifar_batches``
(given images) and ``write_fake_cifar10`` (a learnable stand-in). :func:`ftkit.data.cifar10.load_cifar10` reads
them like the real batches.
"""
from __future__ import annotations

import os
import pickle

import numpy as np
import torch

from ..utils import check_int
from .cifar10 import CLASSES, FOLDER, check_labels

__all__ = ["write_cifar_batches", "write_fake_cifar10"]


def write_cifar_batches(data_dir, images, labels, test_images, test_labels, *, num_batches: int = 5,
                        label_names=CLASSES) -> str:
    """Write ``data_dir/cifar-10-batches-py`` in the real format: pickled dicts with bytes keys.

    ``images``: uint8 N×32×32×3 (NHWC, as PIL/matplotlib show them); stored as N×3072 rows in CHW order.
    The training images are split over ``num_batches`` files ``data_batch_1..k``; returns the folder.
    """
    root = os.path.join(os.fspath(data_dir), FOLDER)
    train = _as_rows(images, labels, "images")
    test = _as_rows(test_images, test_labels, "test_images")
    if not 1 <= check_int("num_batches", num_batches) <= 5:
        raise ValueError(f"num_batches must be 1 to 5 (CIFAR-10 has data_batch_1..5), got {num_batches}")
    os.makedirs(root, exist_ok=True)
    parts = np.array_split(np.arange(len(train[0])), int(num_batches))
    for k, idx in enumerate(parts, start=1):
        _dump(os.path.join(root, f"data_batch_{k}"), train[0][idx], train[1][idx], f"training batch {k} of {len(parts)}")
    _dump(os.path.join(root, "test_batch"), *test, "testing batch 1 of 1")
    meta = {b"num_cases_per_batch": len(parts[0]), b"label_names": [n.encode() for n in label_names],
            b"num_vis": 3072}
    with open(os.path.join(root, "batches.meta"), "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return root


def _as_rows(images, labels, name: str) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"{name} must be N×32×32×3 (NHWC), got shape {images.shape}; for N×3×32×32 tensors "
                         "pass images.permute(0, 2, 3, 1)")
    if images.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 pixels 0–255, got {images.dtype}")
    labels = check_labels(labels, len(images), f"labels for {name}")
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), 3072), labels


def _dump(path: str, data: np.ndarray, labels: np.ndarray, batch_label: str):
    batch = {b"batch_label": batch_label.encode(), b"labels": [int(y) for y in labels], b"data": data,
             b"filenames": [f"image_{i:05d}.png".encode() for i in range(len(data))]}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def write_fake_cifar10(data_dir, n_train: int = 50_000, n_test: int = 10_000, *, noise: float = 1.0,
                       seed: int = 0, num_batches: int = 5) -> str:
    """A learnable stand-in of the real format: each class a smooth colour pattern plus noise (see
    :func:`ftkit.data.synthetic.image_classification`), as uint8 ``128 + 40·x``. For tests and timing runs."""
    from .synthetic import image_classification
    x, y = image_classification(n_train + n_test, noise=noise, seed=seed)
    pixels = (128 + 40 * x).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return write_cifar_batches(data_dir, pixels[:n_train], y[:n_train].numpy(), pixels[n_train:],
                               y[n_train:].numpy(), num_batches=num_batches)
