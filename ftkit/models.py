"""Models used across the notebooks. ``make_model(name, **options)`` picks one by name."""
from __future__ import annotations

import torch
from torch import nn

from .utils import choose

__all__ = ["SimpleCNN", "FastResNet", "FlipTTA", "FAST_RECIPE", "MODELS", "make_model"]


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


def conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    """3×3 conv → (2×2 max-pool) → BatchNorm → GELU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),  # no bias: the BatchNorm shift right after replaces it
        *([nn.MaxPool2d(2)] if pool else []),               # pool before BN/GELU: same result, 4× less work for them
        nn.BatchNorm2d(c_out),                              # BN: stable training at high lr and large batches
        nn.GELU(),                                          # smooth ReLU: slightly better than ReLU here (airbench)
    )


class Residual(nn.Module):
    """``x + f(x)``: the block starts near identity, so gradients reach early layers undiminished."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.f = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.f(x)


class FastResNet(nn.Module):
    """Page's DAWNBench ResNet-9 (the ancestor of airbench): prep → 3 stages → max-pool → linear × 1/8.

    Stage = conv_bn with 2×2 pool; stages 1 and 3 add a residual pair of conv_bn. 32 → 16 → 8 → 4 → 1 spatially;
    default widths (64, 128, 256, 512) give 6.6 M parameters. Train it with :data:`FAST_RECIPE`.
    """

    def __init__(self, num_classes: int = 10, widths=(64, 128, 256, 512), in_channels: int = 3,
                 logit_scale: float = 0.125):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.net = nn.Sequential(
            conv_bn(in_channels, w0),
            conv_bn(w0, w1, pool=True), Residual(conv_bn(w1, w1), conv_bn(w1, w1)),
            conv_bn(w1, w2, pool=True),                     # no residual here: Page found it adds time, not accuracy
            conv_bn(w2, w3, pool=True), Residual(conv_bn(w3, w3), conv_bn(w3, w3)),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),          # global max-pool: "is the feature anywhere?"
            nn.Linear(w3, num_classes, bias=False),
        )
        self.logit_scale = logit_scale                      # small logits at init: softmax starts unsaturated

    def forward(self, x):
        return self.net(x) * self.logit_scale


class FlipTTA(nn.Module):
    """Test-time augmentation: mean logits of the image and its mirror (+0.3–0.5 % accuracy for 2× eval cost)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return (self.model(x) + self.model(torch.flip(x, dims=[-1]))) / 2


# How FastResNet is trained (Page's ResNet-9 settings, in mean-loss units); each knob says why it helps.
FAST_RECIPE = {
    "batch_size": 512,          # large batches keep a GPU busy; BatchNorm keeps them trainable
    "optimizer": "nesterov",    # SGD + Nesterov momentum 0.9: the well-tried optimizer for BN ResNets
    "lr": 0.4,                  # high peak lr: BN makes layers scale-invariant, so large steps stay stable
    "weight_decay": 5e-4,       # with BN it keeps weights small, i.e. the effective step size large
    "label_smoothing": 0.2,     # soft targets stop the push toward 100 % confidence: better generalization
    "scheduler": "one_cycle",   # warm up (no early blow-up at lr 0.4), then anneal to ~0 (settle in a minimum)
    "augment": True,            # random crop (reflect pad 4) + flip: more data for free, the biggest single win
    "epochs": 18,               # Page: 94 % took 24 epochs without smoothing/TTA, fewer with them (cifar_gpu.py)
    "amp": True,                # fp16 autocast on GPU: tensor cores, half the memory traffic
    "channels_last": True,      # NHWC layout: what cuDNN's tensor-core convolutions want
    "tta": True,                # average the logits of image and mirror at test time
}

MODELS = {"simple_cnn": SimpleCNN, "fast_resnet": FastResNet}


def make_model(name, **options) -> nn.Module:
    """``make_model("simple_cnn")``; a ready ``nn.Module`` passes through."""
    if isinstance(name, nn.Module):
        return name
    return choose("model", name, MODELS)(**options)
