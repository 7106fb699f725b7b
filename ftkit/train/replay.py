"""Replay the manual changes of a run: ``fit(..., replay=history)`` or ``callbacks=[Replay(history)]``.

Every change made by hand (the dashboard's slider, ``ParamControl.set``) is an event in ``history.events``:
``{step, epoch, name, old, new, source}``, where ``step`` is the number of optimizer steps done when it was applied
(before the next batch). :class:`Replay` applies the same values before the batch at the same steps, through the
one owner of the learning rate (``state.lr_schedule.set(..., source="replay")``), so a run steered by hand
reproduces bit for bit on CPU with the same seed, data and model. ``events_as_schedule(history)`` writes the
changes as code to paste into a script.
"""
from __future__ import annotations

from ..core import Callback, events_as_schedule, schedule_from_events
from ..optim import check_option

__all__ = ["Replay", "schedule_from_events", "events_as_schedule"]


class Replay(Callback):
    """Apply recorded changes at the steps they were made: ``Replay(history)``, ``Replay(history.events)`` or
    ``Replay({step: {name: value}})``.

    Before training it checks that the optimizer has the param groups the run had (when the events say) and the
    settings named; a change recorded at a step the new run never reaches is reported in ``pending`` afterwards.
    """

    def __init__(self, source, param_groups: int | None = None):
        events = getattr(source, "events", source)
        if isinstance(events, dict):
            self.schedule = {int(k): dict(v) for k, v in events.items()}
        elif isinstance(events, (list, tuple)):
            self.schedule = schedule_from_events(events)
            counts = {e.get("groups") for e in events} - {None}
            param_groups = param_groups or (counts.pop() if len(counts) == 1 else None)
        else:
            raise TypeError(f"replay takes a History, its .events or a {{step: {{name: value}}}} dict, got "
                            f"{type(source).__name__}")
        for step, values in self.schedule.items():  # a hand-written schedule: momentum 5 fails here, not mid-run
            for name, value in values.items():
                try:
                    check_option(name, value)
                except ValueError as e:
                    raise ValueError(f"replay step {step}: {e}") from None
        self.param_groups = param_groups
        self.pending: dict[int, dict] = {}

    def on_fit_start(self, state):
        groups = state.optimizer.param_groups
        if self.param_groups is not None and self.param_groups != len(groups):
            raise ValueError(f"the replayed run's optimizer had {self.param_groups} param group(s), this one has "
                             f"{len(groups)}: its changes would not land on the same parameters. Build the optimizer "
                             "as in the recorded run (same param groups) to replay it")
        unknown = sorted({name for values in self.schedule.values() for name in values} - set(groups[0]))
        if unknown:
            raise ValueError(f"the replayed changes set {unknown}, which this optimizer "
                             f"({type(state.optimizer).__name__}) does not have; replay with the recorded optimizer")
        self.pending = {step: dict(v) for step, v in self.schedule.items() if step >= state.step}

    def on_batch_start(self, state):
        values = self.pending.pop(state.step, None)
        if values:
            state.lr_schedule.set(state, source="replay", **values)
