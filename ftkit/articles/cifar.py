"""Seed 000's CIFAR-10 experiment with its own settings — its CNN, Adam 1e-3 at a constant rate, no augmentation,
10 epochs, the **test set evaluated after every epoch** (000:231–243) — measured, so its printed table can stand
next to what that setting really gives.

:func:`article_run` trains once with :func:`ftkit.fit` and records, after every epoch, the per-image loss on each
named split (:class:`EveryEpoch`: the article's ``evaluate_step(x_test, y_test)``). From it:

* S0-08: the last epoch's test loss and a second, final evaluation of the same weights on the same images are
  equal (difference 0), unlike 000:283–284.
* S0-09, S0-01: test accuracy and per-epoch validation loss (the U the article's monotone column hides), and the
  train / validation accuracy gap.
* S1-09: seed 001's print ``Σ(epoch means)/n_batches`` against the true per-epoch mean (:func:`loss_prints`).
* S4-10: seed 004's print, the last batch's loss, against the epoch mean (:func:`loss_prints`).
* S0-07: :func:`selection_bias` — choosing the epoch by the test loss, the way these loops invite, and scoring the
  choice on a fresh split the choice never saw.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..core import Callback
from ..data.images import make_loaders
from ..models import SimpleCNN
from ..train.loop import fit
from ..train.step import predict
from ..utils import check_int, seed_everything

__all__ = ["ARTICLE_SETTINGS", "EveryEpoch", "ArticleRun", "article_run", "per_image_losses", "split_scores", "loss_prints",
           "selection_bias"]

# 000:189–209 and 000:233 (epochs = 10 is implied by the printed table; batching is never defined, S0-06: the
# audit's fix batches by 64)
ARTICLE_SETTINGS = dict(model="simple_cnn", optimizer="adam", lr=1e-3, scheduler="constant", augment=False,
                        epochs=10, batch_size=64)


def per_image_losses(model, loader, labels, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy per image, correct per image) of ``model`` on an unshuffled loader, in eval mode."""
    logits = predict(model, loader, device=device).float()
    labels = torch.as_tensor(labels)
    return F.cross_entropy(logits, labels, reduction="none"), (logits.argmax(1) == labels)


class EveryEpoch(Callback):
    """After each epoch, the per-image loss and correctness on every split in ``splits``
    (name -> (unshuffled loader, labels)): the article's test evaluation, kept per image."""

    def __init__(self, splits: dict, device):
        self.splits, self.device = splits, device
        self.losses = {name: [] for name in splits}
        self.correct = {name: [] for name in splits}

    def on_epoch_end(self, state):
        for name, (loader, labels) in self.splits.items():
            loss, ok = per_image_losses(state.model, loader, labels, self.device)
            self.losses[name].append(loss)
            self.correct[name].append(ok)


@dataclass
class ArticleRun:
    """One run of the article's setting: the History, per-epoch per-image losses (``losses[split]``, epochs × N)
    and correctness, the final model and the two evaluations of S0-08."""
    history: object
    losses: dict
    correct: dict
    model: torch.nn.Module
    final_test_loss: float
    n_batches: int
    settings: dict = field(default_factory=dict)

    def curve(self, split: str, what: str = "loss") -> list[float]:
        table = self.losses[split] if what == "loss" else self.correct[split]
        return table.float().mean(1).tolist()


def article_run(data, *, epochs: int = 10, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
                device="cpu", progress: bool = False) -> ArticleRun:
    """Train seed 000's CNN with seed 000's settings on ``data`` (a :class:`~ftkit.data.cifar10.Cifar10`) and
    evaluate the test and validation splits after every epoch."""
    epochs, batch_size = check_int("epochs", epochs), check_int("batch_size", batch_size)
    seed_everything(seed)
    train_loader, val_loader, test_loader = make_loaders(data, batch_size, augment=False, device=device)
    splits = {"test": (test_loader, data.test.labels)}
    if val_loader is not None:
        splits["val"] = (val_loader, data.val.labels)
    every = EveryEpoch(splits, device)
    model = SimpleCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = fit(model, train_loader, "cross_entropy", opt, epochs, scheduler="constant", callbacks=[every],
                  metrics=["accuracy"], device=device, progress=progress)
    final = float(per_image_losses(model, test_loader, data.test.labels, device)[0].mean())   # 000:241
    return ArticleRun(history, {k: torch.stack(v) for k, v in every.losses.items()},
                      {k: torch.stack(v) for k, v in every.correct.items()}, model, final, len(train_loader),
                      dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, augment=False,
                           scheduler="constant", model="simple_cnn"))


def split_scores(model, data, split: str, *, batch_size: int = 256, device="cpu", limit: int | None = None) -> dict:
    """Mean cross-entropy and accuracy of ``model`` on ``data.<split>`` ("train", "val", "test"), at most
    ``limit`` images: S2-13's "test" score read from ``data[0]`` is this on ``"train"``."""
    images, labels = getattr(data, split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    sub = dataclasses.replace(data, test=type(data.test)(images, labels))
    loader = make_loaders(sub, batch_size, augment=False, device=device)[2]
    loss, ok = per_image_losses(model, loader, labels, device)
    return {"split": split, "n": len(labels), "loss": float(loss.mean()), "accuracy": float(ok.float().mean())}


def loss_prints(history, n_batches: int) -> dict[str, list[float]]:
    """What each article's loop prints per epoch, from one History, next to the true per-epoch mean.

    ``seed001``: ``train_loss += train(...)`` then ``train_loss / len(loader)`` — the running sum of the epoch
    means divided by the batch count (001:162–164). ``seed004``: ``loss.item()`` of the epoch's last batch (004:90).
    """
    steps = history.to_frame("step")
    mean = [float(x) for x in steps.groupby("epoch")["loss"].mean()]
    last = [float(x) for x in steps.groupby("epoch")["loss"].last()]
    return {"epoch_mean": mean, "seed001_print": (np.cumsum(mean) / n_batches).tolist(), "seed004_print": last}


def selection_bias(test_losses, val_losses=None, *, splits: int = 200, seed: int = 0) -> dict:
    """The optimism of choosing on the test set (S0-07), measured.

    ``test_losses``: per-image test losses of every candidate (runs × epochs × N, or a list of epochs × N
    tensors): the grid a user picks from. For each of ``splits`` random halvings of the test images, half A plays
    the article's test set (the candidate with the lowest A loss is chosen and A's loss reported), half B is a
    fresh split nobody looked at. At a fixed candidate A and B estimate the same loss, so the mean of
    ``reported - fresh`` is the selection bias alone. With ``val_losses`` (runs × epochs, mean validation loss)
    the kit's way is scored too: choose on validation, report on B.
    """
    losses = torch.stack(list(test_losses)) if not isinstance(test_losses, torch.Tensor) else test_losses
    losses = losses.reshape(-1, losses.shape[-1]).double()          # candidates × N
    n = losses.shape[1]
    g = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    val_pick = None
    if val_losses is not None:
        val_pick = int(torch.as_tensor(val_losses, dtype=torch.float64).reshape(-1).argmin())
    reported, fresh, by_val = [], [], []
    for _ in range(check_int("splits", splits)):
        order = torch.randperm(n, generator=g)
        a, b = order[: n // 2], order[n // 2:]
        la, lb = losses[:, a].mean(1), losses[:, b].mean(1)
        pick = int(la.argmin())
        reported.append(float(la[pick]))
        fresh.append(float(lb[pick]))
        if val_pick is not None:
            by_val.append(float(lb[val_pick]))
    reported, fresh = np.array(reported), np.array(fresh)
    out = {"candidates": losses.shape[0], "splits": splits, "reported_test_loss": float(reported.mean()),
           "fresh_loss_of_that_choice": float(fresh.mean()), "optimism": float((reported - fresh).mean()),
           "optimism_std": float((reported - fresh).std()),
           "share_of_splits_optimistic": float((reported < fresh).mean())}
    if val_pick is not None:
        out["fresh_loss_choosing_on_val"] = float(np.mean(by_val))
    return out
