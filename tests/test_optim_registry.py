"""The optimizer registry's named capabilities and the one name-normalisation rule (ftkit.utils.normalize_name)."""
import dataclasses

import pytest
import torch
from torch import nn

from ftkit.optim import OPTIMIZERS, OptimInfo, make_optimizer
from ftkit.schedules import make_scheduler
from ftkit.utils import choose, normalize_name


def test_registry_entries_are_frozen_named_records():
    info = OPTIMIZERS["nesterov"]
    assert isinstance(info, OptimInfo) and info.cls is torch.optim.SGD
    assert info.defaults == {"momentum": 0.9, "nesterov": True} and info.takes_momentum and not info.takes_betas
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.family = "adam"
    assert {n for n, i in OPTIMIZERS.items() if i.takes_betas} == {"adam", "adamw"}
    assert {n for n, i in OPTIMIZERS.items() if i.family == "sgd"} == {"sgd", "gd", "momentum", "nesterov"}
    assert OPTIMIZERS["adamw"].decoupled_decay and not OPTIMIZERS["adam"].decoupled_decay


def test_one_normalisation_rule_for_every_factory():
    assert normalize_name(" Linear-Warmup ") == "linear_warmup" and normalize_name(3) == 3
    assert choose("optimizer", "AdamW", OPTIMIZERS) is OPTIMIZERS["adamw"]
    p = [nn.Parameter(torch.zeros(2))]
    assert isinstance(make_optimizer("AdamW", p), torch.optim.AdamW)
    # 'linear-warmup' used to skip make_scheduler's total_steps check (only lower-cased there)
    with pytest.raises(ValueError, match=r"scheduler 'Linear-Warmup' needs total_steps="):
        make_scheduler("Linear-Warmup", make_optimizer("sgd", p))
    assert make_scheduler("One-Cycle", make_optimizer("sgd", p), total_steps=10) is not None
