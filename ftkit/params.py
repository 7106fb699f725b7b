r"""Which parameters train, and at what learning rate: a model split into named **parts** (``backbone``/``head``,
``encoder``/``LoRA A-B``/``head``), freezing by part, the parameter table and per-part learning rates.

A *parts* spec maps a parameter name to its part: either a callable ``name -> part`` or a dict of module-name
prefixes, ``{"head": ["fc"]}`` (a parameter under no prefix goes to ``default``, ``"backbone"``)::

    parts = {"head": ["fc"]}
    set_trainable(model, parts, train={"head"})             # a linear probe: everything else frozen
    parameter_table(model, parts)                            # backbone / head / total: trainable, total, share
    opt = make_optimizer("adamw", param_groups(model, parts, {"backbone": 1e-4, "head": 1e-3}, weight_decay=0.01))

Per-part learning rates (discriminative fine-tuning, ULMFiT; the "smaller lr for the backbone" of every transfer
recipe): pre-trained layers are already near a good solution and need a nudge, a fresh head starts from random
weights and needs real steps. Used by the vision transfer modes (``ftkit.vision.transfer``) and the text
fine-tuning modes (``ftkit.nlp.finetune``).
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

from torch import nn

from .optim import split_decay_params

__all__ = ["part_function", "set_trainable", "count_trainable", "count_parameters", "parameter_table",
           "param_groups"]


def part_function(parts, default: str = "backbone") -> Callable[[str], str]:
    """``parts`` as a function ``parameter name -> part``: a callable passes through; a dict of prefixes matches
    a name equal to a prefix or starting with ``prefix + "."`` (first match in dict order), else ``default``."""
    if callable(parts):
        return parts
    if not isinstance(parts, Mapping):
        raise TypeError(f"parts must be a function name -> part or a dict part -> [module prefixes], got {parts!r}")
    table = [(part, [prefixes] if isinstance(prefixes, str) else list(prefixes)) for part, prefixes in parts.items()]

    def part_of(name: str) -> str:
        for part, prefixes in table:
            if any(name == p or name.startswith(p + ".") for p in prefixes):
                return part
        return default
    return part_of


def _check_parts(model: nn.Module, part_of, wanted: Iterable[str], what: str) -> None:
    found = {part_of(name) for name, _ in model.named_parameters()}
    unknown = sorted(set(wanted) - found)
    if unknown:
        raise ValueError(f"{what} names part(s) {unknown} that no parameter of {type(model).__name__} belongs to; "
                         f"its parts: {sorted(found)}")


def set_trainable(model: nn.Module, parts, train: Iterable[str] | str = "all", *,
                  default: str = "backbone") -> nn.Module:
    """Freeze every parameter outside the parts in ``train`` (``"all"``: everything trains). Returns ``model``.

    Freezing stops gradients, not BatchNorm's running statistics: a frozen backbone in ``train()`` mode still
    updates them (see ``ftkit.vision.transfer.TransferNet``, which keeps a frozen backbone in eval mode)."""
    part_of = part_function(parts, default)
    if train != "all":
        train = {train} if isinstance(train, str) else set(train)
        _check_parts(model, part_of, train, "train=")
    for name, p in model.named_parameters():
        p.requires_grad = train == "all" or part_of(name) in train
    return model


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parameter_table(model: nn.Module, parts, *, order: Sequence[str] = (), default: str = "backbone"):
    """DataFrame: per part, then ``total``, the ``trainable`` and ``total`` parameters and the trainable share of
    all parameters (``trainable %``). Parts in ``order`` come first and are shown even when empty."""
    import pandas as pd
    part_of = part_function(parts, default)
    rows = {part: {"trainable": 0, "total": 0} for part in order}
    for name, p in model.named_parameters():
        row = rows.setdefault(part_of(name), {"trainable": 0, "total": 0})
        row["total"] += p.numel()
        row["trainable"] += p.numel() if p.requires_grad else 0
    rows["total"] = {k: sum(r[k] for r in rows.values()) for k in ("trainable", "total")}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["trainable %"] = (100 * table["trainable"] / max(rows["total"]["total"], 1)).round(3)
    return table


def param_groups(model: nn.Module, parts, lrs: Mapping[str, float], *, weight_decay: float = 0.0,
                 default: str = "backbone") -> list[dict]:
    """Param-group dicts for ``make_optimizer`` / ``torch.optim``: one learning rate per part (``lrs``), frozen
    parameters left out, and inside each part biases and normalization weights without weight decay (as
    ``make_optimizer`` does for a whole model). Every trainable part needs an lr; each group is named
    ``"part"`` or ``"part (no decay)"`` in its ``name`` key."""
    part_of = part_function(parts, default)
    trainable = {part_of(n) for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(trainable - set(lrs))
    if missing:
        raise ValueError(f"no learning rate for the trainable part(s) {missing}; lrs has {sorted(lrs)}")
    _check_parts(model, part_of, lrs, "lrs")
    names = {id(p): n for n, p in model.named_parameters()}
    decay, no_decay = split_decay_params(model)          # trainable parameters only
    groups = []
    for part, lr in lrs.items():
        for params, wd, suffix in ((decay, weight_decay, ""), (no_decay, 0.0, " (no decay)")):
            mine = [p for p in params if part_of(names[id(p)]) == part]
            if mine:
                groups.append({"params": mine, "lr": float(lr), "weight_decay": wd, "name": part + suffix})
    return groups
