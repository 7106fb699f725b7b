"""Models used across the notebooks. ``make_model(name, **options)`` picks one by name."""
from __future__ import annotations

from torch import nn

from .utils import choose

__all__ = ["SimpleCNN", "MODELS", "make_model"]


class SimpleCNN(nn.Module):
    """The articles' network: Conv32 → Conv64 → Conv64 → Dense64 → Dense10 (3×32×32 inputs).

    3×3 convolutions with ReLU, 2×2 max-pooling after the first two (32 → 15 → 6 → 4 spatially, as Keras'
    'valid' padding gives), then a 64-unit dense layer and the class logits (no softmax: the loss applies it).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3), nn.ReLU(),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


MODELS = {"simple_cnn": SimpleCNN}


def make_model(name, **options) -> nn.Module:
    """``make_model("simple_cnn")``; a ready ``nn.Module`` passes through."""
    if isinstance(name, nn.Module):
        return name
    return choose("model", name, MODELS)(**options)
