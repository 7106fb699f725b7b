"""Resume bookkeeping, in one place: loading a checkpoint into a ``fit``, and the resume point that every finished
optimizer step moves forward (``state.resume``, which :func:`~ftkit.train.checkpoint.save_checkpoint` writes).

The resume point is ``{"epoch", "batches", "samples", "step", "loss_sum", "n_seen", "metrics", "epoch_rng"}`` while
an epoch runs and ``{"epoch", "complete": True, "step"}`` after it (the epoch is complete once validated), each with
the run's ``settings`` (batch size, samples and batches per epoch, grad_accum).

**Resume is exact or refused, and decided before anything changes.** :meth:`Resume.load` reads the file and checks
everything — model and optimizer fit, epochs, max_steps, schedule, dataset size, batch size — before it loads any
state into the model, the optimizer, the callbacks or the RNG. Settings that may change between runs:

* **batch size** (or ``grad_accum``): a resumed epoch trains exactly the samples the interrupted one had not (the
  epoch's shuffle is drawn again from its RNG state; the first batch is cut where the saved run stopped), and a
  schedule given by name continues from the same fraction of training, counted in the new steps;
* **epochs** (more of them): a named schedule is rebuilt for the new total and continued at the same point.

A scheduler object cannot be re-timed, ``max_steps`` counts steps whose size would change, and a dataset of
another size has other samples: those resumes are refused with the reason.
"""
from __future__ import annotations

import math
import warnings

import torch

from ..core import TrainState
from .checkpoint import unwrap_model, capture_rng, check_fits, read_checkpoint, restore_rng, rng_state

__all__ = ["Resume", "loader_settings"]


def loader_settings(loader, grad_accum: int) -> dict:
    """What a resume compares: the loader's (global) batch size, samples and batches per epoch, and grad_accum;
    ``None`` where the loader does not say."""
    n_batches = len(loader) if hasattr(loader, "__len__") else None
    batch_size = getattr(loader, "batch_size", None)
    if batch_size is None and getattr(loader, "batch_sampler", None) is not None:
        batch_size = getattr(loader.batch_sampler, "batch_size", None)
    dataset = getattr(loader, "dataset", None)
    n = len(dataset) if dataset is not None and hasattr(dataset, "__len__") else None
    if n is not None and batch_size and n_batches and getattr(loader, "drop_last", False):
        n = n_batches * batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or n is None:
        batch_size = n = None
    return {"batch_size": batch_size, "samples_per_epoch": n, "batches_per_epoch": n_batches, "grad_accum": grad_accum}


class Resume:
    """Owns ``state.resume`` for one ``fit``: :meth:`load` (from ``resume_from``), :meth:`epoch` (where an epoch
    starts), :meth:`step_done` (after each finished optimizer step) and :meth:`epoch_done`."""

    def __init__(self, state: TrainState, strategy, settings: dict):
        self.s, self.strategy = state, strategy
        self.settings = {**settings, "processes": getattr(strategy, "world", 1)}
        self.cut = 0   # samples of the first batch of a resumed epoch that the saved run already trained on
        self._buffer_names = None

    # ---------------------------------------------------------------- loading: decide, then change
    def load(self, path) -> int:
        """Check that the checkpoint can continue this fit exactly (or raise, changing nothing); then restore model,
        optimizer, schedule, history, callbacks and RNG. Return the epoch to start at."""
        s = self.s
        ckpt = read_checkpoint(path, map_location=s.device)
        check_fits(path, ckpt, s.model, s.optimizer)
        start, position = self._plan(path, ckpt)
        given = {k: v for k, v in s.optimizer.param_groups[0].items() if k != "params"}
        unwrap_model(s.model).load_state_dict(ckpt["model"])
        s.optimizer.load_state_dict(ckpt["optimizer"])
        s.history.steps = ckpt["history"]["steps"]
        # a stop inside an epoch wrote that epoch's row marked partial; the resumed run finishes the epoch instead
        s.history.epochs = [row for row in ckpt["history"]["epochs"] if not row.get("partial")]
        s.history.events = ckpt["history"].get("events", [])
        s.step = ckpt["step"]
        s.lr = s.history.steps[-1]["lr"] if s.history.steps else s.lr   # the lr of the last step, as in a straight run
        s.lr_schedule.resume(ckpt, position)
        self._warn_settings(given, ckpt)
        for cb in s.callbacks:
            if cb.state_key in ckpt.get("callbacks", {}):
                cb.load_state_dict(ckpt["callbacks"][cb.state_key])
        done = ckpt.get("resume") or {"epoch": ckpt["epoch"], "complete": True}
        s.resume = {**done, "rng": ckpt["rng"], "rows": len(s.history.steps), "buffers": self._buffers()}
        restore_rng(ckpt["rng"])
        self.strategy.after_resume(s)
        return start

    def _plan(self, path, ckpt) -> tuple[int, int]:
        """(epoch to start at, point of the schedule to continue from), or a ``ValueError`` naming what does not fit."""
        s, now = self.s, self.settings
        done = ckpt.get("resume") or {"epoch": ckpt["epoch"], "complete": True}
        then = done.get("settings") or {}
        start = done["epoch"] + 1 if done.get("complete") else done["epoch"]
        if s.max_steps is not None and ckpt["step"] >= s.max_steps:
            raise ValueError(f"{path!r} already took {ckpt['step']} optimizer steps, and max_steps={s.max_steps} is "
                             f"the total to reach: pass max_steps > {ckpt['step']} to train on")
        if start > s.epochs:
            raise ValueError(f"{path!r} already finished epoch {ckpt['epoch']}, and epochs={s.epochs} is the total "
                             f"to reach, not a number of extra epochs: pass epochs > {ckpt['epoch']} to train on")
        if ckpt.get("scheduler") is not None and s.scheduler is None:
            raise ValueError(f"{path!r} was trained with a learning-rate schedule (lr now "
                             f"{ckpt['optimizer']['param_groups'][0]['lr']:.3g}); pass the same scheduler= to continue "
                             "it (a named one is rebuilt for the new total and continued at the saved step), or "
                             "scheduler='constant' to go on at the initial lr")
        mid = not done.get("complete") and done.get("batches", 0) > 0
        samples = done.get("samples")
        saved_metrics = set((done.get("metrics") or ({}, {}))[0]) | set(done.get("metric_states") or ())
        logged = getattr(s, "log_keys", None)
        if logged is not None:   # the metrics this fit logs (a resume with metrics=[] continues without them)
            saved_metrics &= {k.removeprefix("train_") for k in logged}
        if mid and then.get("processes", 1) > 1 and not done.get("merged") and saved_metrics:
            raise ValueError(f"{path!r} was written inside epoch {done['epoch']} by process 0 of "
                             f"{then['processes']} after an error or interrupt that ended it alone: its totals of "
                             f"that epoch's metrics ({', '.join(sorted(saved_metrics))}) hold only process 0's share, "
                             "so they would log wrong numbers. Resume with metrics=[] (training continues exactly, "
                             "without metric columns), or from a checkpoint written at an epoch end or by a stop")
        if mid and done.get("metric_states_unmerged"):
            raise ValueError(f"{path!r} stopped inside epoch {done['epoch']} on several processes, and the metric "
                             f"{done['metric_states_unmerged']}: its value for that epoch cannot be continued "
                             "exactly. Resume from a checkpoint written at an epoch end, or train with metrics that "
                             "torchmetrics can merge (full_state_update=False)")
        if mid and then.get("samples_per_epoch") not in (None, now["samples_per_epoch"]):
            raise ValueError(f"{path!r} stopped in epoch {done['epoch']} after {samples} of its "
                             f"{then['samples_per_epoch']} samples, but the train_loader now has "
                             f"{now['samples_per_epoch']} samples: the rest of that epoch cannot be told apart. Resume "
                             "with the same dataset, or from a checkpoint written at an epoch end")
        resized = then.get("batch_size") not in (None, now["batch_size"])
        unknown = then.get("batch_size") is None or now["batch_size"] is None or samples is None
        if mid and unknown and (resized or then.get("batches_per_epoch") not in (None, now["batches_per_epoch"])):
            raise ValueError(f"{path!r} stopped mid-epoch, and the train_loader's batches changed ("
                             f"{then.get('batches_per_epoch')} → {now['batches_per_epoch']} per epoch) without a batch "
                             "size and dataset length to count samples by (a DataLoader has both), so the samples "
                             "left in that epoch cannot be found: resume with the same batch size")
        self.cut = 0
        if mid and resized:
            self.cut = samples % now["batch_size"] if samples < now["samples_per_epoch"] else 0
            if self.cut and getattr(self.strategy, "world", 1) > 1:
                raise ValueError(f"{path!r} stopped after {samples} samples of epoch {done['epoch']}, inside a batch "
                                 f"of {now['batch_size']}; on several processes a batch cannot be cut: resume with a "
                                 f"batch size dividing {samples}, or from a checkpoint written at an epoch end")
        spe_then = _steps_per_epoch(then.get("batches_per_epoch"), then.get("grad_accum"))
        spe_now = _steps_per_epoch(now["batches_per_epoch"], now["grad_accum"])
        if spe_then is None or spe_now is None or spe_then == spe_now:
            return start, ckpt["step"]
        what = (f"{spe_then} optimizer steps per epoch, this run {spe_now} (batch size {then.get('batch_size')} → "
                f"{now['batch_size']}, grad_accum {then.get('grad_accum')} → {now['grad_accum']})")
        if s.max_steps is not None:
            raise ValueError(f"{path!r} was trained with {what}: max_steps counts optimizer steps, whose size changes; "
                             "give epochs= instead, or keep the batch size and grad_accum")
        if ckpt.get("scheduler") is not None and s.lr_schedule.spec is None:
            raise ValueError(f"{path!r} was trained with {what}; a scheduler object cannot be re-timed to the new "
                             "steps: pass the scheduler by name (e.g. scheduler='cosine', rebuilt for the new total "
                             "and continued at the same point of its curve), or keep the batch size and grad_accum")
        # the same fraction of training, counted in the new steps: whole epochs, then the batches before the cut one
        batches_in = (samples // now["batch_size"] if samples is not None and now["batch_size"] else
                      done.get("batches", 0) * now["batches_per_epoch"] // then["batches_per_epoch"]) if mid else 0
        return start, (start - 1) * spe_now + min(batches_in // now["grad_accum"], spe_now)

    def _warn_settings(self, given: dict, ckpt) -> None:
        """**One rule for every schedule:** resume continues the saved run exactly. Optimizer settings given that
        differ from the checkpoint's — the lr (under a schedule: its base lr, or one-cycle's ``max_lr``), weight
        decay, momentum, betas… — are not applied; one warning names each. What a schedule itself changes (the lr
        along its curve, one-cycle's momentum / β₁ cycle) is not a user change and is not reported."""
        s = self.s
        saved = ckpt["optimizer"]["param_groups"][0]
        skip = {"lr"} if s.scheduler is not None or ckpt.get("lr_override") else set()
        if "max_lr" in saved:                # one-cycle: max_lr is the lr the user gave; the others follow from it
            skip |= {"initial_lr", "min_lr"}
        if "max_momentum" in saved:          # one-cycle cycles momentum / beta1 itself
            skip |= {"momentum", "betas"}
        if ckpt.get("lr_override"):          # a manual lr won before the checkpoint: it goes on
            skip |= {"initial_lr", "max_lr", "min_lr"}
        changed = [(k, saved[k], v) for k, v in given.items() if k not in skip and k in saved and _differs(v, saved[k])]
        if changed:
            parts = [f"{_NAMES.get(k, k)} {_fmt(old)} (the optimizer given had {_fmt(new)})" for k, old, new in changed]
            warnings.warn(f"resuming with the checkpoint's {', '.join(parts)}: resume continues the saved run exactly"
                          + (", its schedule included" if s.scheduler is not None else "")
                          + f". To change {'it' if len(changed) == 1 else 'them'} from here on, use "
                          f"ParamControl.set({_NAMES.get(changed[0][0], changed[0][0]).split()[0]}=...) or the "
                          "dashboard; to start afresh, train without resume_from", stacklevel=4)

    # ---------------------------------------------------------------- during the fit
    def epoch(self, epoch: int, loader, tracker):
        """``(enumerate(batches), loss_sum, n_seen)`` for ``epoch``: from its start, or — resumed mid-epoch — from
        the first sample the saved run had not trained on, with the saved totals put back into ``tracker``."""
        s = self.s
        resume = s.resume if s.resume.get("epoch") == epoch and not s.resume.get("complete") else {}
        tracker.reset()
        if resume.get("metrics") or resume.get("metric_states"):
            totals, counts = resume.get("metrics") or ({}, {})
            tracker.load_state({"totals": totals, "counts": counts, "stateful": resume.get("metric_states")})
        skip, cut = self._skip(resume)
        if resume.get("batches") and resume.get("epoch_rng") is not None:
            restore_rng(resume["epoch_rng"])
        else:
            start = rng_state()
            s.resume = {"epoch": epoch, "batches": 0, "samples": 0, "step": s.step, "epoch_rng": start, "rng": start,
                        "rows": len(s.history.steps), "buffers": self._buffers(), "settings": self.settings}
        # accelerate.skip_first_batches is not used: it makes accelerate's process-wide PartialState in the notebook
        # process (which ftkit.launch then forks) and it rebuilds DataLoaders only (TensorLoader and lists of batches
        # need this path anyway). The done batches are drawn and dropped, so the loader's RNG draws match.
        it = iter(loader)
        for _ in range(skip):
            next(it, None)
        if resume.get("batches") and resume.get("rng") is not None:
            restore_rng(resume["rng"])
        batches = enumerate(it, start=skip)
        if cut:
            batches = _cut_first(batches, cut)
        return batches, resume.get("loss_sum", 0.0), resume.get("n_seen", 0)

    def _skip(self, resume: dict) -> tuple[int, int]:
        """(whole batches to skip, samples to cut from the next one) for the resumed epoch."""
        done = resume.get("batches", 0)
        same_size = resume.get("settings", {}).get("batch_size") in (None, self.settings["batch_size"])
        if not done or not self.cut and same_size:
            return done, 0
        samples, size = resume["samples"], self.settings["batch_size"]
        if samples >= self.settings["samples_per_epoch"]:
            return self.settings["batches_per_epoch"], 0
        return samples // size, samples % size

    def step_done(self, batches: int, loss_sum, n_seen, tracker) -> None:
        """A clean point to resume from: after a finished optimizer step, ``batches`` into the epoch.

        It keeps what the next batches change before their own step finishes — the RNG (dropout, augmentation),
        the buffers (BatchNorm statistics), the number of step rows (a ``grad_accum`` batch records one before its
        step) — so that a checkpoint written after an interrupt anywhere (in backward, on the second batch of a
        ``grad_accum`` group, in validation) holds exactly this point."""
        s, size, n = self.s, self.settings["batch_size"], self.settings["samples_per_epoch"]
        s.resume = {"epoch": s.epoch, "batches": batches, "samples": min(batches * size, n) if size else None,
                    "step": s.step, "loss_sum": loss_sum, "n_seen": n_seen, "rng": capture_rng(),
                    "rows": len(s.history.steps) + 1,   # this batch's row: History, the first callback, adds it next
                    "buffers": self._buffers(),
                    "metrics": (dict(tracker.totals), dict(tracker.counts)), "epoch_rng": s.resume.get("epoch_rng"),
                    **({"metric_states": tracker.state()["stateful"]} if tracker.stateful else {}),
                    "settings": self.settings}

    def _buffers(self) -> dict:
        if self._buffer_names is None:   # the buffers a checkpoint saves (not the non-persistent ones)
            model = unwrap_model(self.s.model)
            self._buffer_names = set(model.state_dict(keep_vars=True)) & {n for n, _ in model.named_buffers()}
        return _buffers(self.s.model, self._buffer_names)

    def epoch_done(self, epoch: int) -> None:
        self.s.resume = {"epoch": epoch, "complete": True, "step": self.s.step, "settings": self.settings}

    def at_step(self) -> bool:
        """True when the weights are those of the resume point (no optimizer step since it was set)."""
        return self.s.resume.get("step", self.s.step) == self.s.step


def _buffers(model, names: set) -> dict:
    """Copies of the model's saved buffers (BatchNorm's running statistics): a forward in training mode changes them
    before its optimizer step is finished."""
    return {name: b.detach().clone() for name, b in unwrap_model(model).named_buffers() if name in names}


_NAMES = {"initial_lr": "lr (the schedule's base)", "max_lr": "lr (one-cycle's max_lr)"}


def _differs(given, saved) -> bool:
    if isinstance(given, (tuple, list)) and isinstance(saved, (tuple, list)):
        return len(given) != len(saved) or any(_differs(a, b) for a, b in zip(given, saved))
    numbers = (int, float)
    if isinstance(given, bool) or isinstance(saved, bool) or not isinstance(given, numbers) \
            or not isinstance(saved, numbers):
        return False
    return not math.isclose(given, saved, rel_tol=1e-9, abs_tol=0.0)


def _fmt(value) -> str:
    return f"({', '.join(f'{v:.3g}' for v in value)})" if isinstance(value, (tuple, list)) else f"{value:.3g}"


def _steps_per_epoch(batches, grad_accum):
    return math.ceil(batches / grad_accum) if batches and grad_accum else None


def _cut_first(batches, cut: int):
    """The first batch without its first ``cut`` samples (the saved run trained on them), then the rest."""
    for i, batch in batches:
        yield i, _slice(batch, cut)
        break
    yield from batches


def _slice(batch, cut: int):
    if isinstance(batch, torch.Tensor) or isinstance(batch, list) and not any(
            isinstance(b, (torch.Tensor, list, tuple, dict)) for b in batch):   # a tensor, or a list of texts
        return batch[cut:]
    if hasattr(batch, "keys"):       # a dict or a Hugging Face BatchEncoding
        return {k: _slice(batch[k], cut) for k in batch.keys()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_slice(b, cut) for b in batch)
    raise TypeError(f"a resumed epoch must cut {cut} samples off a {type(batch).__name__} batch, which is not a "
                    "tensor, list, tuple or dict: resume with the batch size of the saved run")
