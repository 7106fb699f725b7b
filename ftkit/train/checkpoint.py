"""Checkpoint files: model + optimizer + scheduler + RNG + history + callback state, written atomically and
checked (keys, shapes, optimizer type, param groups) before anything is restored."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from ..core import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "restore_rng"]


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng(rng: dict) -> None:
    torch.set_rng_state(rng["torch"].cpu())  # map_location may have moved the states to the GPU
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])


def save_checkpoint(path, state, **extra) -> str:
    """Write model + optimizer + scheduler + RNG + history + every callback's state, atomically."""
    schedule = getattr(state, "lr_schedule", None)
    payload = {
        "format": "ftkit-checkpoint-1",
        "model": _unwrap(state.model).state_dict(),
        "model_class": type(_unwrap(state.model)).__name__,
        "optimizer": state.optimizer.state_dict(),
        "optimizer_class": type(state.optimizer).__name__,
        "scheduler": state.scheduler.state_dict() if getattr(state, "scheduler", None) is not None else None,
        "lr_schedule": schedule.state_dict() if schedule is not None else None,
        "epoch": state.epoch, "step": state.step, "lr_override": bool(getattr(state, "lr_override", False)),
        "resume": dict(getattr(state, "resume", None) or {}),
        "history": state.history.to_dict(),
        "callbacks": {cb.state_key: cb.state_dict() for cb in getattr(state, "callbacks", ()) if cb.state_dict()},
        "rng": rng_state(),
        **extra,
    }
    return atomic_write(path, save=lambda f: torch.save(payload, f))


def _unwrap(model):
    return getattr(model, "module", model) if type(model).__name__ == "DistributedDataParallel" else model


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, map_location="cpu") -> dict:
    """Load a checkpoint dict, with a clear error for a missing, truncated, foreign or mismatched file; with
    objects given, check that they fit (keys and shapes) *before* restoring their state in place."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"resume_from={path!r} is a folder; give the checkpoint file in it, e.g. "
                                f"{os.path.join(path, 'last.pt')!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"checkpoint {path!r} is empty (0 bytes): it was never written completely; "
                         "use another checkpoint (e.g. best.pt) or start without resume_from")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # EOFError, UnpicklingError, BadZipFile, OverflowError… all mean: not readable
        raise ValueError(f"checkpoint {path!r} ({os.path.getsize(path)} bytes) cannot be read — it is truncated, "
                         f"corrupted or not a torch file ({type(e).__name__}: {str(e)[:120]}); use another "
                         "checkpoint (e.g. best.pt) or start without resume_from") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "optimizer" not in ckpt:
        what = (f"a plain state_dict of {len(ckpt)} tensors" if isinstance(ckpt, dict) and ckpt and all(
            isinstance(v, torch.Tensor) for v in ckpt.values()) else f"a {type(ckpt).__name__}")
        raise ValueError(f"{path!r} holds {what}, not an ftkit checkpoint (model + optimizer + history, written by "
                         "ModelCheckpoint or save_checkpoint); load weights with model.load_state_dict("
                         "torch.load(path)) and train without resume_from")
    if model is not None:
        _check_fits(path, "model", _unwrap(model).state_dict(), ckpt["model"], ckpt.get("model_class"),
                    type(_unwrap(model)).__name__)
    if optimizer is not None:
        saved = ckpt.get("optimizer_class")
        if saved and saved != type(optimizer).__name__:
            raise ValueError(f"checkpoint {path!r} was trained with {saved}, but the optimizer given is "
                             f"{type(optimizer).__name__}; resume with the same optimizer type")
        n_saved, n_now = len(ckpt["optimizer"]["param_groups"]), len(optimizer.param_groups)
        if n_saved != n_now:
            raise ValueError(f"checkpoint {path!r} has {n_saved} optimizer param groups, the optimizer given has "
                             f"{n_now}; build the optimizer the same way as for the saved run")
    if model is not None:
        _unwrap(model).load_state_dict(ckpt["model"])
    if optimizer is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    return ckpt


def _check_fits(path, what, current: dict, saved: dict, saved_class, current_class) -> None:
    missing, unexpected = sorted(set(current) - set(saved)), sorted(set(saved) - set(current))
    shapes = sorted(k for k in set(current) & set(saved) if tuple(current[k].shape) != tuple(saved[k].shape))
    if missing or unexpected or shapes:
        detail = "; ".join(part for part in (
            f"missing {missing[:3]}" if missing else "", f"unexpected {unexpected[:3]}" if unexpected else "",
            f"shape of {shapes[0]!r}: saved {tuple(saved[shapes[0]].shape)}, model "
            f"{tuple(current[shapes[0]].shape)}" if shapes else "") if part)
        raise ValueError(f"checkpoint {path!r} holds a different {what} ({saved_class or '?'}) than the one given "
                         f"({current_class}): {detail}. Nothing was loaded; build the same model as for the "
                         "saved run")
