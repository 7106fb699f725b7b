"""Checkpoint files: model + optimizer + scheduler + RNG + history + callback state, written atomically and
checked (keys, shapes, optimizer type, param groups) before anything is restored.

**A checkpoint runs no code.** A ``.pt`` file is a pickle, and a crafted pickle runs any command on load. So a
checkpoint holds only what ``torch.load(weights_only=True)`` accepts — tensors, numbers, strings, lists, tuples and
dicts (the RNG states of numpy and Python are converted to those) — and is loaded that way: a file holding
anything else is refused before any of it is built, naming the object it holds.
"""
from __future__ import annotations

import collections
import os
import pickle
import random
import re

import numpy as np
import torch

from ..utils import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint", "capture_rng", "rng_state", "restore_rng", "plain_state", "checkpoint_payload",
           "read_checkpoint", "check_fits",
           "resave_trusted", "unwrap_model"]


def capture_rng() -> tuple:
    """Every RNG's state, taken fast (no conversion): what :func:`rng_state` turns into plain data when it is saved."""
    return (torch.get_rng_state(), np.random.get_state(), random.getstate(),
            torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)


def rng_state(captured: tuple | None = None) -> dict:
    """Every RNG's state (now, or as :func:`capture_rng` took it) as plain data (tensors, ints, floats, strings):
    safe to save and to load."""
    torch_state, np_state, py_state, cuda_state = captured or capture_rng()
    kind, key, pos, has_gauss, gauss = np_state
    version, words, py_gauss = py_state
    return {"torch": torch_state,
            "numpy": {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
            "python": {"version": version, "state": list(words), "gauss": py_gauss},
            "cuda": cuda_state}


def restore_rng(rng: dict) -> None:
    torch.set_rng_state(rng["torch"].cpu())  # map_location may have moved the states to the GPU
    n = rng["numpy"]
    np.random.set_state((n["kind"], n["key"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = rng["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])


_ATOMS = (type(None), bool, int, float, complex, str, bytes, torch.Tensor, torch.Size, torch.dtype, torch.device)


def plain_state(obj, where: str = "checkpoint"):
    """``obj`` with numpy scalars/arrays made Python numbers/lists; any other object (a class instance, a
    function) raises a ``TypeError`` naming where it sits — it would make the file unloadable with
    ``weights_only=True``."""
    if isinstance(obj, np.generic):   # before the atoms: np.float64 is a float, yet pickles as a numpy object
        return obj.item()
    if type(obj) in _ATOMS or isinstance(obj, (torch.Tensor, torch.dtype, torch.device)):
        return obj
    for plain in (bool, int, float, complex, str, bytes):   # an IntEnum, a str subclass… pickle as their class
        if isinstance(obj, plain):
            return plain(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, dict):
        out = collections.OrderedDict() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[plain_state(k, where)] = plain_state(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [plain_state(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items) if isinstance(obj, tuple) else type(obj)(items)
    raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}: a checkpoint holds only tensors, "
                    "numbers, strings, lists and dicts, so that it loads with torch.load(weights_only=True) and can "
                    "run no code; make the state_dict() (or log value) that holds it return plain values")


def save_checkpoint(path, state, **extra) -> str:
    """Write model + optimizer + scheduler + RNG + history + every callback's state, atomically."""
    payload = checkpoint_payload(state, **extra)
    return atomic_write(path, save=lambda f: torch.save(payload, f))


def checkpoint_payload(state, **extra) -> dict:
    """What :func:`save_checkpoint` writes, as plain data; a ``TypeError`` names any part that is not (so a
    callback can check at ``fit`` start that its checkpoints will be written)."""
    schedule = getattr(state, "lr_schedule", None)
    resume = dict(getattr(state, "resume", None) or {})
    # inside an epoch, the state of the last finished optimizer step (what the running batch changed is left out)
    at_step = {k: resume.pop(k) for k in ("rng", "rows", "buffers") if k in resume}
    model_state = unwrap_model(state.model).state_dict()
    model_state.update(at_step.get("buffers") or {})
    history = state.history.to_dict()
    if at_step.get("rows") is not None:
        history["steps"] = history["steps"][:at_step["rows"]]
    payload = {
        "format": "ftkit-checkpoint-1",
        "model": model_state,
        "model_class": type(unwrap_model(state.model)).__name__,
        "optimizer": state.optimizer.state_dict(),
        "optimizer_class": type(state.optimizer).__name__,
        "scheduler": state.scheduler.state_dict() if getattr(state, "scheduler", None) is not None else None,
        "lr_schedule": schedule.state_dict() if schedule is not None else None,
        "epoch": state.epoch, "step": state.step, "lr_override": bool(getattr(state, "lr_override", False)),
        "resume": resume,
        "history": history,
        "callbacks": {cb.state_key: cb.state_dict() for cb in getattr(state, "callbacks", ()) if cb.state_dict()},
        "rng": _saved_rng(at_step.get("rng")),
        **extra,
    }
    return plain_state(payload)   # a clear error now, rather than a file that cannot be loaded safely


def _saved_rng(rng) -> dict:
    """The RNG of the resume point (taken by :func:`capture_rng`, or already plain), else the RNG now."""
    if isinstance(rng, tuple):
        return rng_state(rng)
    return rng or rng_state()


def unwrap_model(model):
    """The model inside a ``DistributedDataParallel`` wrapper (its state dict has no ``module.`` prefix)."""
    return getattr(model, "module", model) if type(model).__name__ == "DistributedDataParallel" else model


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, map_location="cpu") -> dict:
    """Load a checkpoint dict, with a clear error for a missing, truncated, foreign or mismatched file; with
    objects given, check that they fit (keys, shapes, dtypes, optimizer type and groups) *before* restoring their
    state in place."""
    ckpt = read_checkpoint(path, map_location)
    check_fits(path, ckpt, model, optimizer)
    if model is not None:
        unwrap_model(model).load_state_dict(ckpt["model"])
    if optimizer is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt.get("scheduler") is not None:
        scheduler.load_state_dict(ckpt["scheduler"])
    return ckpt


def read_checkpoint(path, map_location="cpu") -> dict:
    """The checkpoint dict (safe loading), with one clear error for a missing, empty, truncated, unsafe or foreign
    file. Changes nothing."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"resume_from={path!r} is a folder; give the checkpoint file in it, e.g. "
                                f"{os.path.join(path, 'last.pt')!r}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"checkpoint {path!r} is empty (0 bytes): it was never written completely; "
                         "use another checkpoint (e.g. best.pt) or start without resume_from")
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):   # pickle.dump's PROTO opcode
        raise ValueError(f"{path!r} is a bare Python pickle (written by pickle.dump), not a torch.save checkpoint: "
                         "ftkit will not unpickle it (loading a pickle can run any code) and nothing was loaded. "
                         "Write checkpoints with ModelCheckpoint or ftkit.train.save_checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)   # never runs code from the file
    except pickle.UnpicklingError as e:
        refused = _refused_object(str(e))
        if refused is None:
            raise _unreadable(path, e) from None
        hint = ("It may be a checkpoint written by ftkit before checkpoints became plain data (numpy RNG state): "
                "only if you wrote it yourself, convert it once with "
                f"ftkit.train.checkpoint.resave_trusted({path!r})" if refused.startswith("numpy")
                else "Do not load this file; use a checkpoint you wrote yourself, or start without resume_from")
        raise ValueError(f"checkpoint {path!r} was refused: it holds a pickled {refused}, an object whose loading "
                         "can run code (a crafted .pt file can run any command). ftkit loads checkpoints with "
                         "torch.load(weights_only=True), which allows only tensors, numbers, strings, lists and "
                         f"dicts; nothing from the file was run or loaded. {hint}") from None
    except Exception as e:  # EOFError, UnpicklingError, BadZipFile, OverflowError… all mean: not readable
        raise _unreadable(path, e) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "optimizer" not in ckpt:
        what = (f"a plain state_dict of {len(ckpt)} tensors" if isinstance(ckpt, dict) and ckpt and all(
            isinstance(v, torch.Tensor) for v in ckpt.values()) else f"a {type(ckpt).__name__}")
        raise ValueError(f"{path!r} holds {what}, not an ftkit checkpoint (model + optimizer + history, written by "
                         "ModelCheckpoint or save_checkpoint); load weights with model.load_state_dict("
                         "torch.load(path)) and train without resume_from")
    _check_contents(path, ckpt)
    return ckpt


def _check_contents(path, ckpt: dict) -> None:
    """One clear error for a checkpoint dict whose parts are not what ftkit writes (edited or written by hand)."""
    def bad(what, fix="write it again with ModelCheckpoint or save_checkpoint"):
        return ValueError(f"checkpoint {path!r} is not a complete ftkit checkpoint: {what}; nothing was loaded. "
                          f"Use another checkpoint, or {fix}")
    model, opt = ckpt["model"], ckpt["optimizer"]
    if not isinstance(model, dict):
        raise bad(f"its 'model' is a {type(model).__name__}, not a state_dict")
    not_tensors = [k for k, v in model.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise bad(f"its model weights {not_tensors[:3]} are {type(model[not_tensors[0]]).__name__}s, not tensors")
    if not isinstance(opt, dict) or not isinstance(opt.get("param_groups"), list) or "state" not in opt:
        raise bad("its 'optimizer' has no 'param_groups' list and 'state' (an optimizer.state_dict() has both)")
    rng = ckpt.get("rng")
    if not isinstance(rng, dict) or not isinstance(rng.get("torch"), torch.Tensor) or "numpy" not in rng \
            or "python" not in rng:
        raise bad("it has no random-number state ('rng' with 'torch', 'numpy' and 'python'), so a resume could not "
                  "continue the same random draws")
    history = ckpt.get("history")
    if not isinstance(history, dict) or not isinstance(history.get("steps"), list) or \
            not isinstance(history.get("epochs"), list):
        raise bad("its 'history' is not a dict with 'steps' and 'epochs' lists")
    for key in ("epoch", "step"):
        if isinstance(ckpt.get(key), bool) or not isinstance(ckpt.get(key), int):
            raise bad(f"its {key!r} is {ckpt.get(key)!r}, not a whole number")


def check_fits(path, ckpt: dict, model=None, optimizer=None) -> None:
    """Raise, changing nothing, unless ``model`` and ``optimizer`` can take the checkpoint's state exactly."""
    if model is not None:
        _check_fits(path, "model", unwrap_model(model).state_dict(), ckpt["model"], ckpt.get("model_class"),
                    type(unwrap_model(model)).__name__)
    if optimizer is not None:
        saved = ckpt.get("optimizer_class")
        if saved and saved != type(optimizer).__name__:
            raise ValueError(f"checkpoint {path!r} was trained with {saved}, but the optimizer given is "
                             f"{type(optimizer).__name__}; resume with the same optimizer type")
        n_saved, n_now = len(ckpt["optimizer"]["param_groups"]), len(optimizer.param_groups)
        decay = _weight_decay_change(ckpt["optimizer"]["param_groups"], optimizer.param_groups)
        if n_saved != n_now and decay:
            raise ValueError(f"checkpoint {path!r} was trained with weight_decay={decay[0]:g}, the optimizer given has "
                             f"weight_decay={decay[1]:g} (make_optimizer puts biases and norm weights in a group of "
                             f"their own only when weight_decay > 0: {n_saved} param group(s) saved, {n_now} given); "
                             f"build the optimizer with weight_decay={decay[0]:g} to resume, and change it from here "
                             "on with ParamControl.set(weight_decay=...)")
        if n_saved != n_now:
            raise ValueError(f"checkpoint {path!r} has {n_saved} optimizer param groups, the optimizer given has "
                             f"{n_now}; build the optimizer the same way as for the saved run")
        sizes = [len(g["params"]) for g in ckpt["optimizer"]["param_groups"]]
        if sizes != [len(g["params"]) for g in optimizer.param_groups]:
            raise ValueError(f"checkpoint {path!r} has optimizer param groups of {sizes} tensors, the optimizer given "
                             f"{[len(g['params']) for g in optimizer.param_groups]}; build the optimizer the same "
                             "way as for the saved run")


def _weight_decay_change(saved_groups, groups):
    """(saved, given) largest weight decay when they differ (what changes make_optimizer's group count), else None."""
    saved = max((g.get("weight_decay", 0.0) or 0.0 for g in saved_groups), default=0.0)
    given = max((g.get("weight_decay", 0.0) or 0.0 for g in groups), default=0.0)
    return (float(saved), float(given)) if float(saved) != float(given) else None


def _unreadable(path, e) -> ValueError:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    why = next((ln.strip() for ln in lines[1:] if not ln.startswith("Check the doc")), lines[0] if lines else "")
    return ValueError(f"checkpoint {path!r} ({os.path.getsize(path)} bytes) cannot be read — it is truncated, "
                      f"corrupted or not a torch file ({type(e).__name__}: {why[:120]}); use another "
                      "checkpoint (e.g. best.pt) or start without resume_from")


def _refused_object(message: str) -> str | None:
    """The global torch's safe unpickler refused (``posix.system``, ``numpy…_reconstruct``), or None."""
    if "Weights only load failed" not in message:
        return None
    found = re.search(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) ([\w.]+)", message)
    return found.group(1) if found else None   # no global: the bytes are damaged (a bad opcode…)


def resave_trusted(path, out=None) -> str:
    """Convert a checkpoint **you wrote yourself** with an older ftkit (numpy RNG state inside) to plain data.

    This is the one place that loads with ``weights_only=False``, which runs whatever the file holds: never
    call it on a file you were sent or downloaded. Writes ``out`` (default: over ``path``), atomically."""
    ckpt = torch.load(os.fspath(path), map_location="cpu", weights_only=False)
    for rng in (ckpt.get("rng"), (ckpt.get("resume") or {}).get("epoch_rng")):
        if isinstance(rng, dict) and isinstance(rng.get("numpy"), tuple):
            kind, key, pos, has_gauss, gauss = rng["numpy"]
            rng["numpy"] = {"kind": kind, "key": torch.from_numpy(np.asarray(key).astype(np.int64)), "pos": int(pos),
                            "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)}
            version, words, py_gauss = rng["python"]
            rng["python"] = {"version": version, "state": list(words), "gauss": py_gauss}
    payload = plain_state(ckpt)
    return atomic_write(os.fspath(out or path), save=lambda f: torch.save(payload, f))


def _check_fits(path, what, current: dict, saved: dict, saved_class, current_class) -> None:
    missing, unexpected = sorted(set(current) - set(saved)), sorted(set(saved) - set(current))
    shapes = sorted(k for k in set(current) & set(saved) if tuple(current[k].shape) != tuple(saved[k].shape))
    dtypes = sorted(k for k in set(current) & set(saved) if current[k].dtype != saved[k].dtype)
    if dtypes and not (missing or unexpected or shapes):   # load_state_dict would cast silently: not the saved run
        k = dtypes[0]
        raise ValueError(f"checkpoint {path!r} holds {what} weights in {saved[k].dtype} ({k!r}), the model given is "
                         f"in {current[k].dtype}; nothing was loaded. Resume with the model in the saved dtype "
                         f"(e.g. model.to({saved[k].dtype})) — amp= changes the compute dtype, not the weights'")
    if missing or unexpected or shapes:
        detail = "; ".join(part for part in (
            f"missing {missing[:3]}" if missing else "", f"unexpected {unexpected[:3]}" if unexpected else "",
            f"shape of {shapes[0]!r}: saved {tuple(saved[shapes[0]].shape)}, model "
            f"{tuple(current[shapes[0]].shape)}" if shapes else "") if part)
        raise ValueError(f"checkpoint {path!r} holds a different {what} ({saved_class or '?'}) than the one given "
                         f"({current_class}): {detail}. Nothing was loaded; build the same model as for the "
                         "saved run")
