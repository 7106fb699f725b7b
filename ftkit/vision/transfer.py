r"""Transfer learning from an ImageNet ResNet-18 (torchvision) to a small image task, three ways on one budget.

* ``probe``: the pre-trained backbone is frozen (and kept in eval mode, so its BatchNorm statistics stay
  ImageNet's); only a new linear head trains — the features are judged as they are.
* ``finetune``: everything trains, the backbone at a smaller learning rate than the fresh head
  (:func:`ftkit.params.param_groups`): pre-trained weights need a nudge, a random head needs real steps.
* ``scratch``: the same network from random initialization at the head's rate. This — not fine-tuning — is
  what the article's code does (S0-04).

``TransferNet`` puts an input adapter in front: CIFAR batches arrive standardized with CIFAR's channel statistics;
the adapter turns them back into pixels in [0, 1], standardizes them with ImageNet's (what the weights saw) and
resizes to ``resolution`` (the network was trained at 224 px; at 32 px its first conv and pool leave an 8×8 map
and the last stage a 1×1 one). Resolution multiplies the cost by about :math:`(r/32)^2`.

Weights: a local file first (``weights_path``), then torch's cache (``~/.cache/torch/hub/checkpoints``), then a
download when the network is there; otherwise :func:`load_resnet18` says how to fetch them and returns random
weights, so every cell still runs (the "pre-trained" numbers are then from-scratch numbers).
"""
from __future__ import annotations

import os
import socket

import torch
import torch.nn.functional as F
from torch import nn

from ..optim import make_optimizer
from ..utils import did_you_mean, normalize_name
from ..params import count_trainable, param_groups, parameter_table, set_trainable

__all__ = ["MODES", "RECIPES", "PARTS", "IMAGENET_MEAN", "IMAGENET_STD", "WEIGHTS_FILE", "load_resnet18",
           "TransferNet", "make_transfer", "transfer_optimizer", "transfer_table"]

MODES = ("probe", "finetune", "scratch")
PARTS = {"head": ["head"]}          # everything else is the backbone (the adapter has no parameters)
# AdamW learning rates per mode, each with its reason; override any of them.
RECIPES = {
    # one linear layer on fixed features: a convex problem, a large step is safe
    "probe": {"lr": 3e-3, "backbone_lr": None},
    # the head as in probe's order of size; the backbone 10x lower: it starts near a good solution and a large
    # step would wreck the features before the head has learned to use them
    "finetune": {"lr": 1e-3, "backbone_lr": 1e-4},
    # random weights everywhere: one rate for all (Adam's usual 1e-3)
    "scratch": {"lr": 1e-3, "backbone_lr": 1e-3},
}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
WEIGHTS_FILE = "resnet18-f37072fd.pth"     # torchvision's ResNet18_Weights.IMAGENET1K_V1 (69.8 % top-1)
_HOST = "download.pytorch.org"
HOW_TO_GET = ("on a machine with internet run  python -c \"import torchvision; "
              "torchvision.models.resnet18(weights='IMAGENET1K_V1')\"  (45 MB), then copy "
              f"~/.cache/torch/hub/checkpoints/{WEIGHTS_FILE} to the same folder here (or pass weights_path=)")


def _can_reach(host: str = _HOST, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_resnet18(pretrained: bool = True, *, weights_path=None, download: bool = True) -> tuple[nn.Module, dict]:
    """``(model, info)``: torchvision's ResNet-18 with ImageNet weights from ``weights_path``, torch's cache or a
    download; where none is there, random weights and ``info["message"]`` saying how to get the real ones.
    ``info``: ``pretrained`` (bool), ``source`` (a path, ``"download"`` or ``"random"``), ``message``."""
    from torchvision.models import ResNet18_Weights, resnet18
    model = resnet18()
    if not pretrained:
        return model, {"pretrained": False, "source": "random", "message": "random initialization (asked for)"}
    if weights_path is not None:
        if not os.path.isfile(weights_path):
            raise FileNotFoundError(f"weights_path={os.fspath(weights_path)!r} is not a file; {HOW_TO_GET}")
        path = os.fspath(weights_path)
    else:
        path = os.path.join(torch.hub.get_dir(), "checkpoints", WEIGHTS_FILE)
    if os.path.isfile(path):
        state = torch.load(path, map_location="cpu", weights_only=True)
        expected = model.state_dict()
        found = set(state) if isinstance(state, dict) else set()
        missing, unexpected = sorted(set(expected) - found), sorted(found - set(expected))
        if missing or unexpected or any(tuple(state[k].shape) != tuple(v.shape) for k, v in expected.items()
                                        if k in found and hasattr(state[k], "shape")):
            raise ValueError(f"{path!r} is not a ResNet-18 state dict ({len(found & set(expected))} of its "
                             f"{len(found)} tensors match ResNet-18's {len(expected)}; missing e.g. {missing[:2]}, "
                             f"unexpected e.g. {unexpected[:2]}): {HOW_TO_GET}")
        model.load_state_dict(state)
        return model, {"pretrained": True, "source": path, "message": f"ImageNet weights from {path}"}
    if download and _can_reach():
        model = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
        return model, {"pretrained": True, "source": "download", "message": f"ImageNet weights downloaded to {path}"}
    why = "download=False" if not download else f"{_HOST} cannot be reached (offline?)"
    message = (f"The ImageNet weights of ResNet-18 could not be fetched ({why}); {HOW_TO_GET}. Continuing with "
               "RANDOM weights: every cell runs, but the 'pre-trained' curves are from-scratch curves.")
    return model, {"pretrained": False, "source": "random", "message": message}


class TransferNet(nn.Module):
    """adapter (CIFAR standardization → ImageNet standardization, resize to ``resolution``) → ResNet-18 backbone
    (its ``fc`` removed) → new linear ``head``. ``freeze_backbone``: no gradients there, and ``train()`` leaves the
    backbone in eval mode (frozen BatchNorm statistics too)."""

    def __init__(self, backbone: nn.Module, num_classes: int = 10, *, resolution: int = 32, mean=IMAGENET_MEAN,
                 std=IMAGENET_STD, freeze_backbone: bool = False):
        super().__init__()
        if not isinstance(resolution, int) or resolution < 32:
            raise ValueError(f"resolution must be a whole number of pixels >= 32, got {resolution!r}")
        features = backbone.fc.in_features
        backbone.fc = nn.Identity()
        self.backbone, self.head, self.resolution = backbone, nn.Linear(features, num_classes), resolution
        # x_imagenet = (x·σ + μ − μ_in)/σ_in = x·scale + shift, per channel
        mean, std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
        m_in, s_in = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("scale", std / s_in)
        self.register_buffer("shift", (mean - m_in) / s_in)
        self.freeze_backbone = freeze_backbone
        set_trainable(self, PARTS, "head" if freeze_backbone else "all")

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def forward(self, x):
        x = x * self.scale + self.shift
        if x.shape[-1] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        return self.head(self.backbone(x))


def make_transfer(mode: str, *, num_classes: int = 10, resolution: int = 32, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                  weights_path=None, download: bool = True,
                  backbone: nn.Module | None = None) -> tuple[TransferNet, dict]:
    """``(net, info)`` for ``mode`` in :data:`MODES`. ``mean``/``std``: the statistics the batches were standardized
    with. ``backbone``: a loaded ResNet-18 to copy (so three modes load the weights once); ``scratch`` ignores it."""
    mode = _check_mode(mode)
    if mode == "scratch":
        net, info = load_resnet18(pretrained=False)
    elif backbone is not None:
        import copy
        net, info = copy.deepcopy(backbone), {"pretrained": None, "source": "given", "message": "backbone given"}
    else:
        net, info = load_resnet18(weights_path=weights_path, download=download)
    return TransferNet(net, num_classes, resolution=resolution, mean=mean, std=std,
                       freeze_backbone=mode == "probe"), info


def _check_mode(mode) -> str:
    if normalize_name(mode) not in MODES:
        raise ValueError(f"unknown transfer mode {mode!r}; choose one of: {', '.join(MODES)}"
                         + did_you_mean(normalize_name(mode), MODES))
    return normalize_name(mode)


def transfer_optimizer(net: TransferNet, mode: str, *, lr: float | None = None, backbone_lr: float | None = None,
                       weight_decay: float = 0.01):
    """AdamW with one learning rate per part (:data:`RECIPES` unless given): ``probe`` the head only, ``finetune``
    the backbone at ``backbone_lr`` and the head at ``lr``, ``scratch`` both at ``lr``."""
    recipe = RECIPES[_check_mode(mode)]
    lr = recipe["lr"] if lr is None else lr
    lrs = {"head": lr}
    if mode == "finetune":
        lrs["backbone"] = recipe["backbone_lr"] if backbone_lr is None else backbone_lr
    elif mode == "scratch":
        lrs["backbone"] = lr
    return make_optimizer("adamw", param_groups(net, PARTS, lrs, weight_decay=weight_decay), lr=lr,
                          weight_decay=weight_decay)


def transfer_table(nets: dict[str, TransferNet]):
    """One DataFrame: per mode, the backbone's and the head's trainable parameters and the trainable share."""
    import pandas as pd
    rows = {}
    for mode, net in nets.items():
        t = parameter_table(net, PARTS, order=("backbone", "head"))
        rows[mode] = {"backbone trainable": int(t.loc["backbone", "trainable"]),
                      "head trainable": int(t.loc["head", "trainable"]), "trainable": count_trainable(net),
                      "total": int(t.loc["total", "total"]), "trainable %": float(t.loc["total", "trainable %"])}
    return pd.DataFrame.from_dict(rows, orient="index")
