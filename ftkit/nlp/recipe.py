"""One recipe shape for every fine-tuning: a dataclass of the knobs, each with its why, and one ``fit_args()``.

    recipe = Recipe(lr=5e-5, batch_size=8, warmup_ratio=0.1)                 # the fields every task shares
    history = ftkit.fit(**recipe.fit_args(model, train_set, epochs=2, val_set=dev_set))

Each task adds its own fields in a subclass — :class:`ftkit.nlp.ner.NerRecipe` (a 10× head lr, length-grouped
windows), :class:`ftkit.nlp.sft.SFTRecipe` (label checks), :class:`ftkit.nlp.lm.LMRecipe` (nanoGPT's β₂ and final
lr) — and sentence classification builds a :class:`Recipe` per mode (:func:`ftkit.nlp.finetune.recipe_for`).

``fit_args`` returns ``model, train_loader, loss (None: the model's own), optimizer, epochs, scheduler,
grad_clip`` (+ ``val_loader``, ``metrics`` when there are any). The schedule is a ``(name, options)`` pair that
``fit`` builds for the run's real number of optimizer steps: no recipe counts steps, and a resume with another
batch size re-times it (as it does for ``scheduler="cosine"``).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..optim import make_optimizer
from ..params import count_trainable
from ..schedules import SCHEDULERS
from ..utils import check_int, check_number, choose
from .hf import FeatureDataset, make_loader

__all__ = ["Recipe"]


@dataclass
class Recipe:
    """The knobs every fine-tuning shares (AdamW, a warmup schedule, gradient clipping); defaults are BERT's."""
    lr: float = 5e-5                  # pre-trained weights need only a nudge (BERT's paper searched 2e-5 – 5e-5)
    batch_size: int = 8               # in a short budget more updates beat bigger batches (Trainer's default too)
    weight_decay: float = 0.01        # AdamW decay on matrices only (not biases/LayerNorm): mild regularisation
    schedule: str = "linear_warmup"   # a name of ftkit.schedules.SCHEDULERS with warmup (or 'cosine_warmup')
    warmup_ratio: float = 0.1         # ramp the lr up first: a fresh head's large early gradients shake the encoder
    warmup_steps: int | None = None   # a fixed warmup instead of the ratio (nanoGPT counts steps)
    final_factor: float = 0.0         # the lr at the end, as a fraction of lr (linear/cosine decay to it)
    grad_clip: float | None = 1.0     # clip the global gradient norm: rare large batches cannot undo pre-training
    sort_by_length: bool = False      # length-grouped batches pad less but are alike: costs accuracy at short budgets
    fused: bool = False               # AdamW in one kernel per step (Trainer's adamw_torch_fused)
    betas: tuple[float, float] = (0.9, 0.999)   # AdamW's moment decays (torch's and Trainer's)

    def __post_init__(self):
        check_number("lr", self.lr, positive=True)
        self.batch_size = check_int("batch_size", self.batch_size)
        check_number("weight_decay", self.weight_decay)
        choose("scheduler", self.schedule, SCHEDULERS)
        if not 0 <= check_number("warmup_ratio", self.warmup_ratio) <= 1:
            raise ValueError(f"warmup_ratio must be in [0, 1], got {self.warmup_ratio!r}")
        if self.warmup_steps is not None:
            self.warmup_steps = check_int("warmup_steps", self.warmup_steps, 0)
        if self.grad_clip is not None:
            check_number("grad_clip", self.grad_clip, positive=True)

    # ---- the parts, each overridable by a task
    def param_groups(self, model):
        """What the optimizer trains: the model (``make_optimizer`` puts biases and norms in an undecayed group)."""
        return model

    def optimizer(self, model):
        """AdamW over the trainable parameters (frozen ones are skipped)."""
        extra = {"fused": True} if self.fused else {}
        return make_optimizer("adamw", self.param_groups(model), lr=self.lr, weight_decay=self.weight_decay,
                              betas=tuple(self.betas), **extra)

    def scheduler(self) -> tuple[str, dict]:
        """The schedule as a ``(name, options)`` pair; ``fit`` fills in ``total_steps``."""
        warmup = {"warmup_ratio": self.warmup_ratio} if self.warmup_steps is None else {"warmup_steps": self.warmup_steps}
        return self.schedule, {**warmup, "final_factor": self.final_factor}

    def loader(self, data, *, batch_size: int, shuffle: bool, sort_by_length: bool, seed: int, pad_id: int):
        """Batches of an encoded dataset (a ready loader passes through)."""
        if not isinstance(data, FeatureDataset):
            return data
        return make_loader(data, batch_size, shuffle=shuffle, sort_by_length=sort_by_length, seed=seed, pad_id=pad_id)

    def check(self, train_loader, val_loader) -> None:
        """Checks a task runs on its loaders before training (SFT: a batch whose every label is -100)."""

    def extra_args(self) -> dict:
        """Further ``fit`` arguments of a task (e.g. its ``metrics``)."""
        return {}

    # ---- the one entry point
    def fit_args(self, model, train_set, epochs: int = 1, *, val_set=None, seed: int = 0,
                 pad_id: int | None = None) -> dict:
        """Keyword arguments for ``ftkit.fit`` / ``fit_live_async``: ``fit(**recipe.fit_args(...), device=...)``.

        ``model``: the model, or a task object holding ``.model`` and ``.tokenizer`` (``NerTagger``,
        ``SentenceClassifier``; its tokenizer's pad id pads the batches). ``train_set`` / ``val_set``: encoded
        datasets (batched here; validation in batches of 2 × ``batch_size``, longest first) or ready loaders.
        """
        # a task object (NerTagger, SentenceClassifier) holds .model and .tokenizer; a model is an nn.Module (a
        # Hugging Face model has a .model too: its body without the head, never the thing to train)
        net, tokenizer = (model, None) if isinstance(model, nn.Module) else (model.model, model.tokenizer)
        if pad_id is None:
            pad_id = (getattr(tokenizer, "pad_token_id", None) or 0) if tokenizer is not None else 0
        epochs = check_int("epochs", epochs)
        seed = check_int("seed", seed, 0)
        if not count_trainable(net):
            raise ValueError("no parameter of the model trains: choose which do first (a mode 'full', 'head' or "
                             "'lora'; for a causal LM apply_lora(model) or apply_full(model))")
        train_loader = self.loader(train_set, batch_size=self.batch_size, shuffle=True,
                                   sort_by_length=self.sort_by_length, seed=seed, pad_id=pad_id)
        val_loader = None if val_set is None else self.loader(val_set, batch_size=2 * self.batch_size,
                                                              shuffle=False, sort_by_length=True, seed=seed,
                                                              pad_id=pad_id)
        self.check(train_loader, val_loader)
        args = {"model": net, "train_loader": train_loader, "loss": None, "optimizer": self.optimizer(net),
                "epochs": epochs, "scheduler": self.scheduler(), "grad_clip": self.grad_clip, **self.extra_args()}
        if val_loader is not None:
            args["val_loader"] = val_loader
        return args
