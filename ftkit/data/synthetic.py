"""Small learnable datasets made on the spot: for tests, smoke runs and notebooks without downloads."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["image_classification", "blobs", "make_loaders"]


def image_classification(n: int = 1024, num_classes: int = 10, size: int = 32, channels: int = 3,
                         noise: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose class is a fixed random low-frequency pattern plus Gaussian noise.

    Each class ``c`` owns a smooth template (random 4×4 pattern upsampled to ``size``); an image is its
    template plus ``noise``·N(0, 1). A small CNN learns it well above chance within an epoch or two.
    """
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(num_classes, channels, 4, 4, generator=g)
    templates = torch.nn.functional.interpolate(templates, size=(size, size), mode="bilinear", align_corners=False)
    y = torch.randint(num_classes, (n,), generator=g)
    x = templates[y] + noise * torch.randn(n, channels, size, size, generator=g)
    return x, y


def blobs(n: int = 512, num_classes: int = 2, dim: int = 2, spread: float = 1.0, seed: int = 0):
    """Gaussian blobs around random centres (radius 3): a quick 2-D/N-D classification task."""
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.nn.functional.normalize(torch.randn(num_classes, dim, generator=g), dim=1)
    y = torch.randint(num_classes, (n,), generator=g)
    return centres[y] + spread * torch.randn(n, dim, generator=g), y


def make_loaders(x: torch.Tensor, y: torch.Tensor, batch_size: int = 64, val_fraction: float = 0.2, seed: int = 0):
    """(train_loader, val_loader) from tensors, split with a fixed seed; the train loader shuffles."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(len(x) * val_fraction))
    val, train = perm[:n_val], perm[n_val:]
    return (DataLoader(TensorDataset(x[train], y[train]), batch_size=batch_size, shuffle=True),
            DataLoader(TensorDataset(x[val], y[val]), batch_size=batch_size))
