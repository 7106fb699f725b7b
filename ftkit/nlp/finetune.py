r"""Which parameters train: ``full`` fine-tuning, ``head`` only (frozen encoder), or ``lora`` adapters (peft).

LoRA (Hu et al., 2021) keeps a pre-trained weight :math:`W_0 \in \mathbb{R}^{d\times k}` frozen and learns a
low-rank update, scaled by :math:`\alpha / r`:

.. math:: h = W_0 x + \frac{\alpha}{r} B A x,\qquad A \in \mathbb{R}^{r\times k},\ B \in \mathbb{R}^{d\times r},
          \ B_0 = 0

so training starts exactly at the pre-trained model and updates :math:`r(d+k)` numbers per adapted matrix.

    model = apply_mode(model, "lora", r=8, alpha=16)      # peft model; the classifier head trains and is saved
    parameter_table(model)                                # encoder / LoRA A-B / head: trainable, total, share
"""
from __future__ import annotations

from torch import nn

from ..params import parameter_table as _table, set_trainable
from ..utils import check_int, check_number, choose, normalize_name
from .recipe import Recipe
from ..env import require

__all__ = ["MODES", "RECIPES", "COMMON", "check_mode", "recipe_for", "head_modules", "lora_targets", "add_lora",
           "apply_mode", "parameter_table", "training_memory_mb"]

MODES = ("full", "head", "lora")
# Defaults per mode, each with its reason; every value can be overridden.
RECIPES = {
    # the pre-trained weights need only a nudge: BERT's paper searched 2e-5 – 5e-5
    # batches in random order: length-grouped ones (alike) cost accuracy here (MiniLM, 1,000 tweets, 3 seeds:
    # 64.8 % grouped, 65.7 % random, Trainer 65.4 %), as they cost entity F1 in the NER ablation
    "full": {"lr": 5e-5, "sort_by_length": False},
    # a single fresh layer on frozen features: a large step is safe and small ones barely move it
    "head": {"lr": 2e-3, "sort_by_length": True},
    # B starts at 0 and the update is rank-r: LoRA needs ~10x full fine-tuning's rate (LoRA paper: 4e-4 – 5e-4);
    # random batch order here too (same data: 51.3 % grouped, 52.3 % random, Trainer + peft 51.0 %)
    "lora": {"lr": 5e-4, "r": 8, "alpha": 16, "dropout": 0.1, "sort_by_length": False},
}
COMMON = {
    "weight_decay": 0.01,   # AdamW decay on matrices only (not biases/LayerNorm): mild regularisation, as BERT
    "warmup_ratio": 0.1,    # ramp the lr up first: the fresh head's large early gradients would shake the encoder
    "grad_clip": 1.0,       # clip the global gradient norm: rare large batches cannot undo pre-training
    "fused": True,          # AdamW in one kernel per step (Trainer's adamw_torch_fused): full fine-tuning's step
                            # was ~20 % slower than Trainer's without it (MiniLM, CPU)
    "batch_size": 8,        # as Trainer: in a short budget more updates beat bigger batches (benchmark: 16 lost
                            # 3.6 pt full, 4.9 pt LoRA); length grouping keeps small batches cheap
}


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`, else one error listing them (and the nearest)."""
    choose("mode", mode, dict.fromkeys(MODES))
    return normalize_name(mode)


def recipe_for(mode: str, **overrides) -> Recipe:
    """The sentence-classification :class:`~ftkit.nlp.recipe.Recipe` of ``mode`` (:data:`RECIPES` + :data:`COMMON`),
    with ``overrides`` (``None`` values keep the default)."""
    mode = check_mode(mode)
    fields = {"lr": RECIPES[mode]["lr"], "sort_by_length": RECIPES[mode]["sort_by_length"], **COMMON}
    return Recipe(**{**fields, **{k: v for k, v in overrides.items() if v is not None}})


def head_modules(model: nn.Module) -> list[str]:
    """Names of the top-level modules outside the encoder that hold parameters (``classifier``, ``pre_classifier``)."""
    encoder = getattr(model, "base_model_prefix", "")
    return [name for name, child in model.named_children()
            if name != encoder and any(True for _ in child.parameters())]


def _linear_names(model: nn.Module, skip: list[str]) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)
            and name.split(".")[0] not in skip]


def lora_targets(model: nn.Module, target_modules=None) -> list[str]:
    """LoRA's target module names: peft's default for the model type (BERT family: ``query``, ``value``), or
    ``target_modules`` checked against the model; a missing one is an error listing the candidates."""
    require("peft")
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS
    linear = _linear_names(model, head_modules(model))
    candidates = sorted({n.split(".")[-1] for n in linear})
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if target_modules is None:
        if model_type not in DEFAULTS:
            raise ValueError(f"no default LoRA targets for model type {model_type!r}; pass target_modules= with "
                             f"some of its linear layers: {', '.join(candidates)}")
        target_modules = DEFAULTS[model_type]
    targets = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    for t in targets:
        if not any(n == t or n.endswith("." + t) for n in linear):
            raise ValueError(f"LoRA target {t!r} matches no linear layer of this {model_type or 'model'}; "
                             f"candidates: {', '.join(candidates)}")
    return targets


def apply_mode(model: nn.Module, mode: str = "full", *, r: int = 8, alpha: float = 16, dropout: float = 0.1,
               target_modules=None, new_modules=()) -> nn.Module:
    """Set which parameters train. ``lora`` returns a peft model whose head is in ``modules_to_save`` (so it
    trains and is saved with the adapter: else peft re-initializes it at reload, peft #310/#577).

    ``new_modules``: layers the checkpoint did not have (randomly initialized, e.g. ``bert.pooler.dense``);
    like the head they train in every mode and are saved with the adapter.
    """
    head = head_modules(model)
    new = [m for m in new_modules if m.split(".")[0] not in head]
    model.ftkit_new_modules = new  # read by parameter_table
    if not head:
        raise ValueError(f"{type(model).__name__} has no classification head outside its encoder; load it with "
                         "AutoModelForSequenceClassification")
    if check_mode(mode) == "lora":
        return add_lora(model, "SEQ_CLS", r=r, alpha=alpha, dropout=dropout, target_modules=target_modules,
                        modules_to_save=head + new)
    return set_trainable(model, lambda name: _part(name, head, new), "all" if mode == "full" else "head")


def add_lora(model: nn.Module, task_type: str, *, r: int = 8, alpha: float = 16, dropout: float = 0.1,
             target_modules=None, modules_to_save=None) -> nn.Module:
    """The one LoRA builder: a peft model with rank-``r`` adapters (scaled by ``alpha / r``) on ``target_modules``
    (peft's default for the model type when ``None``, else checked against the model), for ``task_type``
    (``"SEQ_CLS"``, ``"CAUSAL_LM"``, ``"TOKEN_CLS"``); ``modules_to_save`` train in full and are saved with it."""
    require("peft")
    from peft import LoraConfig, TaskType, get_peft_model
    r = check_int("r", r, meaning=" (LoRA's rank, e.g. 8)")
    check_number("alpha", alpha, positive=True)
    if not 0 <= check_number("dropout", dropout) < 1:
        raise ValueError(f"dropout must be in [0, 1) (LoRA's dropout, e.g. 0.1), got {dropout!r}")
    config = LoraConfig(task_type=getattr(TaskType, task_type), r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=lora_targets(model, target_modules), modules_to_save=modules_to_save)
    return get_peft_model(model, config)


def _part(name: str, head: list[str], new=()) -> str:
    if "lora_" in name:
        return "LoRA A-B"
    parts = name.split(".")
    while parts[:2] == ["base_model", "model"]:  # peft wraps the model twice over
        parts = parts[2:]
    name = ".".join(parts)
    fresh = any(name.startswith(m + ".") for m in new)
    return "head" if parts[0] in head or fresh else "encoder"


def parameter_table(model: nn.Module):
    """DataFrame: per part (encoder, LoRA A-B, head, total) the trainable and total parameters and the trainable
    share of all parameters. ``head`` includes new layers the checkpoint lacked (see :func:`apply_mode`); a peft
    head counts twice in ``total`` (the frozen original and the trained copy)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    head, new = head_modules(inner), getattr(inner, "ftkit_new_modules", ())
    return _table(model, lambda name: _part(name, head, new), order=("encoder", "LoRA A-B", "head"))


def training_memory_mb(model: nn.Module) -> float:
    """Memory the training state needs, in MiB: all weights + a gradient and two AdamW moments per trainable
    parameter (activations not included; they depend on batch and length). On CUDA measure the real peak with
    ``torch.cuda.max_memory_allocated``."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    state = sum(3 * p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return (weights + state) / 2**20
