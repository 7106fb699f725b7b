r"""Batches of uint8 images (CIFAR-10's :class:`~ftkit.data.cifar10.Cifar10` splits), two ways.

    data = load_cifar10("data/cifar10", subset=5000)      # ftkit.data.cifar10
    train_loader, val_loader, test_loader = make_loaders(data, batch_size=512, device="cuda")

Normalization uses the training split's per-channel statistics, :math:`\hat x_c = (x_c/255 - μ_c)/σ_c`.

Two loaders yield the same ``(x, y)`` batches:

* :class:`TensorLoader`: the whole split is one uint8 tensor on the training device; each batch is gathered,
  randomly cropped (reflect padding) and flipped, and normalized there, with the device's global RNG (so a
  checkpoint's RNG state makes a resumed run exact). No workers, no host→device copies: the fast path.
* :func:`make_loader`: a ``Dataset`` with torchvision ``transforms.v2`` per image in a ``DataLoader``.
"""
from __future__ import annotations

import math
import time

import torch

from ..utils import check_int, get_device
from .cifar10 import Cifar10

__all__ = ["random_crop_flip", "TensorLoader", "CifarDataset", "make_loader", "make_loaders", "throughput"]


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Index ``i`` mirrored into ``[0, n)`` without repeating the edge (``-1 → 1``, ``n → n-2``)."""
    i = i.abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def random_crop_flip(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Per image: shift by ``(dy, dx) ∈ [-pad, pad]²`` with reflected borders, mirror with probability ½.

    Equals ``v2.RandomCrop(H, padding=pad, padding_mode="reflect")`` then ``v2.RandomHorizontalFlip()``, done
    as two gathers on ``x``'s device with its global RNG.
    """
    b, c, h, w = x.shape
    dev = x.device
    dy = torch.randint(-pad, pad + 1, (b, 1), device=dev)
    dx = torch.randint(-pad, pad + 1, (b, 1), device=dev)
    flip = torch.randint(0, 2, (b, 1), device=dev, dtype=torch.bool)
    rows = _reflect(torch.arange(h, device=dev) + dy, h)                           # b×h source rows
    cols = torch.arange(w, device=dev).expand(b, w)
    cols = _reflect(torch.where(flip, w - 1 - cols, cols) + dx, w)                # b×w source columns
    x = x.gather(2, rows[:, None, :, None].expand(b, c, h, w))
    return x.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def _check_stats(mean, std) -> tuple[list[float], list[float]]:
    """Three finite means and three positive stds (a 0 would divide by zero: every pixel becomes inf/NaN)."""
    out = []
    for name, v in (("mean", mean), ("std", std)):
        try:
            values = [float(x) for x in v]
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be 3 numbers (one per channel R, G, B), got {v!r}") from None
        if len(values) != 3 or not all(math.isfinite(x) for x in values):
            raise ValueError(f"{name} must be 3 finite numbers (one per channel R, G, B), got {v!r}")
        out.append(values)
    if min(out[1]) <= 0:
        raise ValueError(f"std must be > 0 in every channel (x/255 - mean)/std divides by it, got {tuple(std)}; "
                         "use the training split's std (data.std)")
    return out[0], out[1]


class TensorLoader:
    """``(x, y)`` batches from uint8 images kept on ``device``: gather → crop/flip → normalize, all there.

    ``len()`` is batches per epoch. Shuffling and augmentation draw from the device's global RNG.
    ``channels_last`` hands the model NHWC-strided batches (faster convolutions on tensor-core GPUs).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, mean, std,
                 shuffle: bool = False, augment: bool = False, device="auto", channels_last: bool = False,
                 drop_last: bool = False, pad: int = 4):
        self.batch_size = check_int("batch_size", batch_size)
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a uint8 N×3×H×W tensor, got {images.dtype} of shape "
                             f"{tuple(images.shape)}")
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        mean, std = _check_stats(mean, std)
        self.device = get_device(device)
        self.images, self.labels = images.to(self.device), labels.to(self.device, torch.long)
        std = torch.as_tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        mean = torch.as_tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.scale, self.shift = 1 / (255 * std), -mean / std        # (x/255 - μ)/σ = x·scale + shift
        self.shuffle, self.augment, self.channels_last = shuffle, augment, channels_last
        self.drop_last, self.pad = drop_last, pad

    def __len__(self):
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, device=self.device) if self.shuffle else torch.arange(n, device=self.device)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images[idx]
            if self.augment:
                x = random_crop_flip(x, self.pad)
            x = torch.addcmul(self.shift, x.float(), self.scale)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]


class CifarDataset(torch.utils.data.Dataset):
    """uint8 CHW images + labels, one image at a time through ``transform`` (torchvision ``transforms.v2``)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i]
        return (self.transform(x) if self.transform is not None else x), self.labels[i]


def make_loader(images, labels, batch_size: int, *, mean, std, shuffle: bool = False, augment: bool = False,
                num_workers: int = 0, drop_last: bool = False, pin_memory: bool = False, pad: int = 4):
    """The classic path: ``CifarDataset`` + ``v2`` crop/flip/normalize per image in a ``DataLoader``."""
    from torchvision.transforms import v2
    mean, std = _check_stats(mean, std)
    ops = [v2.RandomCrop(images.shape[-1], padding=pad, padding_mode="reflect"), v2.RandomHorizontalFlip()]
    transform = v2.Compose([*(ops if augment else []), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize(list(mean), list(std))])
    return torch.utils.data.DataLoader(CifarDataset(images, labels, transform), check_int("batch_size", batch_size),
                                       shuffle=shuffle, num_workers=num_workers, drop_last=drop_last,
                                       pin_memory=pin_memory, persistent_workers=num_workers > 0)


def make_loaders(data: Cifar10, batch_size: int, *, kind: str = "tensor", augment: bool = True, device="auto",
                 channels_last: bool = False, num_workers: int = 0, drop_last: bool = False):
    """``(train_loader, val_loader or None, test_loader)``; only the train loader shuffles and augments.

    ``kind="tensor"``: :class:`TensorLoader` on ``device``; ``"dataloader"``: :func:`make_loader` (a torch
    ``DataLoader``, CPU workers).
    """
    batch_size = check_int("batch_size", batch_size)
    device = get_device(device)
    if kind == "tensor":
        def make(split, train):
            return TensorLoader(*split, batch_size, mean=data.mean, std=data.std, shuffle=train,
                                augment=augment and train, device=device, channels_last=channels_last,
                                drop_last=drop_last and train)
    elif kind == "dataloader":
        def make(split, train):
            return make_loader(*split, batch_size, mean=data.mean, std=data.std, shuffle=train,
                               augment=augment and train, num_workers=num_workers, drop_last=drop_last and train,
                               pin_memory=device.type == "cuda")
    else:
        raise ValueError(f"unknown loader kind {kind!r}; choose one of: dataloader, tensor")
    return make(data.train, True), (make(data.val, False) if len(data.val.labels) else None), make(data.test, False)


def throughput(loader, device="auto", max_batches: int | None = None) -> float:
    """Images per second of one pass over ``loader`` (batches moved to ``device``, synchronized at the end)."""
    device = get_device(device)
    n, t0 = 0, time.perf_counter()
    for i, (x, _) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        x = x.to(device, non_blocking=True)
        n += len(x)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (time.perf_counter() - t0)
