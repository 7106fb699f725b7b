r"""Plain and residual networks for CIFAR (He et al. 2016, §4.2), the article's "ResNet", and what tells them apart.

A residual block adds its input back to what its layers compute,

.. math:: x_{l+1} = \mathrm{ReLU}\big(x_l + F_l(x_l)\big),\qquad F_l = \mathrm{BN}\circ\mathrm{conv}\circ\mathrm{ReLU}
          \circ\mathrm{BN}\circ\mathrm{conv},

so (ignoring the outer ReLU) :math:`\partial x_{l+1}/\partial x_l = I + \partial F_l/\partial x_l`: the gradient
has a path through every block that no weight can shrink or blow up. A **plain** block is the same without the
``+ x_l``. ``cifar_net(depth, residual)`` builds either with depth :math:`6n+2` (conv, 3 stages of :math:`n` blocks
of two convs with 16/32/64 channels, global average pooling, one linear layer); the shortcut across a stage change
subsamples and zero-pads channels (He et al.'s option A), so plain and residual nets have the same parameters.

The network is a *composition* of blocks, not a sum of per-layer functions of the input (the article's
:math:`M(x)=\sum_i\varphi_i(x)`, S2-05): unrolled, :math:`x_L = x_0 + \sum_l F_l(x_l)` with each :math:`F_l`
applied to :math:`x_l`, not to :math:`x_0` (:func:`unrolled_check` shows it numerically).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core import eval_mode

__all__ = ["BasicBlock", "CifarNet", "cifar_net", "ArticleNet", "article_layer", "gradient_norms", "unrolled_check",
           "feature_shapes"]


class BasicBlock(nn.Module):
    """conv3×3 → BN → ReLU → conv3×3 → BN, then ``+ shortcut`` (``residual=True``) and ReLU.

    ``norm=False`` drops the BatchNorms (to see what they do). The shortcut across a stride/width change is
    He et al.'s option A: every other pixel, the new channels zero — no parameters."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, *, residual: bool = True, norm: bool = True):
        super().__init__()
        self.residual, self.stride, self.pad = residual, stride, c_out - c_in
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=not norm)
        self.bn1 = nn.BatchNorm2d(c_out) if norm else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=not norm)
        self.bn2 = nn.BatchNorm2d(c_out) if norm else nn.Identity()

    def branch(self, x):
        """:math:`F(x)`: what the block's layers compute."""
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def shortcut(self, x):
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.pad)) if self.pad else x

    def forward(self, x):
        y = self.branch(x)
        return F.relu(y + self.shortcut(x) if self.residual else y)


class CifarNet(nn.Module):
    """He et al.'s CIFAR network: conv(16) → 3 stages × ``n`` blocks (16, 32, 64 channels × ``width``/16) →
    global average pool → linear. ``depth = 6n + 2`` weighted layers."""

    def __init__(self, n: int = 3, *, residual: bool = True, norm: bool = True, width: int = 16,
                 num_classes: int = 10):
        super().__init__()
        widths = (width, 2 * width, 4 * width)
        self.depth, self.residual, self.norm = 6 * n + 2, residual, norm
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=not norm),
                                  nn.BatchNorm2d(width) if norm else nn.Identity(), nn.ReLU())
        blocks, c_in = [], width
        for stage, c in enumerate(widths):
            for i in range(n):
                blocks.append(BasicBlock(c_in, c, 2 if stage and i == 0 else 1, residual=residual, norm=norm))
                c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(c_in, num_classes)
        for m in self.modules():   # He init for ReLU convs (as the paper); torch's default is ~3x smaller in variance
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def cifar_net(depth: int, residual: bool = True, *, norm: bool = True, width: int = 16,
              num_classes: int = 10) -> CifarNet:
    """``cifar_net(32, residual=False)``: the plain 32-layer net; ``depth`` must be ``6n + 2`` (8, 14, 20, 32…)."""
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 26, 32, 44, 56, 110), got {depth!r}")
    return CifarNet((depth - 2) // 6, residual=residual, norm=norm, width=width, num_classes=num_classes)


# --------------------------------------------------------------------------- the article's network (S2-07, S2-10)
def article_layer(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """The article's ``resnet_layer``, ported: conv(ReLU) → BN [→ conv(ReLU) → BN → max-pool when strided].
    Its flaws are kept: no shortcut is added (S2-07), conv → ReLU → BN order, and a strided conv *and* a
    strided pool in the same layer (4× down-sampling, S2-10). Padding mimics Keras' ``'same'``."""
    if stride == 1:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1), nn.ReLU(), nn.BatchNorm2d(c_out))
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.ReLU(), nn.BatchNorm2d(c_out),
                         nn.Conv2d(c_out, c_out, 3, 1, 1), nn.ReLU(), nn.BatchNorm2d(c_out),
                         nn.MaxPool2d(2, stride, ceil_mode=True))


class ArticleNet(nn.Sequential):
    """The article's ``resnet_v1(input_shape=(224, 224, 3), num_classes=1000)``: conv7×7/2 → pool → 8 layers
    (64, 64/2, 128, 128/2, 256, 256/2, 512, 512/2) → Flatten → Dense 4096 → Dropout 0.4 → Dense (VGG's head).
    The Flatten ties the head to the final map's size, computed here from ``image_size``. Fed 32×32 CIFAR images,
    the 224-px model still runs — its 4× down-sampling per layer (S2-10) leaves 1×1 maps at both sizes — and returns
    1000 logits per image for 10 labels (S2-11): in PyTorch no error shows the mismatch; Keras' fixed
    ``Input((224, 224, 3))`` is what raises."""

    def __init__(self, num_classes: int = 1000, image_size: int = 224):
        layers = [nn.Conv2d(3, 64, 7, 2, 3), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        c_in = 64
        for c, stride in ((64, 1), (64, 2), (128, 1), (128, 2), (256, 1), (256, 2), (512, 1), (512, 2)):
            layers.append(article_layer(c_in, c, stride))
            c_in = c
        with torch.no_grad():
            side = nn.Sequential(*layers).eval()(torch.zeros(1, 3, image_size, image_size)).shape[-1]
        super().__init__(*layers, nn.Flatten(), nn.Linear(c_in * side * side, 4096), nn.ReLU(), nn.Dropout(0.4),
                         nn.Linear(4096, num_classes))


@torch.no_grad()
def feature_shapes(model: nn.Module, image_size: int, stop_at=nn.Flatten) -> list[tuple[str, tuple[int, ...]]]:
    """(layer, output shape C×H×W) after each top-level child up to ``stop_at``, for one image of ``image_size``."""
    x, out = torch.zeros(1, 3, image_size, image_size), []
    with eval_mode(model):
        for name, child in model.named_children():
            if isinstance(child, stop_at):
                break
            x = child(x)
            out.append((f"{name} {type(child).__name__}", tuple(x.shape[1:])))
    return out


# --------------------------------------------------------------------------- measurements
def gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss=F.cross_entropy) -> list[dict]:
    r"""One forward/backward pass in train mode (BatchNorm on batch statistics, as in training) and, per weighted
    layer from input to output, :math:`\lVert\partial L/\partial W\rVert` and the relative size
    :math:`\lVert\nabla W\rVert/\lVert W\rVert`. Leaves no gradient on the model."""
    with eval_mode(model, enabled=False):   # train mode for the pass; the mode it had afterwards
        model.train()
        model.zero_grad(set_to_none=True)
        loss(model(x), y).backward()
        rows = []
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.grad is not None:
                g = float(m.weight.grad.norm())
                rows.append({"layer": len(rows) + 1, "name": name, "grad_norm": g,
                             "relative": g / max(float(m.weight.detach().norm()), 1e-12)})
        model.zero_grad(set_to_none=True)
    return rows


@torch.no_grad()
def unrolled_check(net: CifarNet, x: torch.Tensor, blocks: int = 3) -> dict:
    r"""For the first ``blocks`` blocks of a residual ``net`` (same width, eval mode, outer ReLU left out — its
    identity-mapping form :math:`x_{l+1}=x_l+F_l(x_l)`): the recursion's output, its unrolled form
    :math:`x_0+\sum_l F_l(x_l)` and the article's :math:`x_0+\sum_l F_l(x_0)` (each layer applied to the input).
    Returns the largest differences of the last two from the first."""
    with eval_mode(net):
        x0 = net.stem(x)
        chain = [b for b in net.blocks if b.stride == 1 and not b.pad][:blocks]
        xs, h = [x0], x0
        for b in chain:
            h = h + b.branch(h)
            xs.append(h)
        unrolled = x0 + sum(b.branch(xl) for b, xl in zip(chain, xs[:-1]))
        article = x0 + sum(b.branch(x0) for b in chain)
    scale = float(h.abs().max())
    return {"blocks": len(chain), "output_scale": scale,
            "unrolled_vs_recursion": float((unrolled - h).abs().max()),
            "sum_of_layers_of_x_vs_recursion": float((article - h).abs().max())}
