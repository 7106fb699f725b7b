"""ftkit's fine-tuning recipe given to ``transformers.Trainer`` (and TRL's ``SFTTrainer``, a subclass): the helper
the "same recipe" rows of benchmarks/sft.py, ner.py and sentence_classification.py share, so that those rows
measure the training code, not the recipe.

Every value comes from the :class:`ftkit.nlp.recipe.Recipe` object itself (lr, batch size, weight decay, gradient
clipping, AdamW betas and fused kernel, length grouping). Two settings Trainer's arguments cannot express are
set through the hooks its docs name for that (subclass ``create_optimizer`` / ``create_scheduler``):

* the schedule: ftkit's ``linear_warmup`` ramps as (s+1)/W (the first step already trains), Trainer's ``linear`` as
  s/W (its first step has lr 0: with 12 steps and W=1 it loses one step in twelve). The Trainer here steps
  ftkit's own schedule (``make_scheduler`` on the recipe's ``(name, options)``), for the same number of steps;
* a larger lr for the fresh classifier (``NerRecipe.head_lr_mult``): one more pair of param groups.

What stays Trainer's: its loop, data collator, sampler (another random order than ftkit's for the same seed),
its weight-decay split (``get_decay_parameter_names``: biases and LayerNorm undecayed, as ftkit's) and AdamW.
"""
from __future__ import annotations

import ftkit

__all__ = ["recipe_arguments", "with_recipe"]


def recipe_arguments(recipe) -> dict:
    """``TrainingArguments`` / ``SFTConfig`` keyword arguments for ``recipe`` (the schedule: see ``with_recipe``)."""
    return dict(learning_rate=recipe.lr, per_device_train_batch_size=recipe.batch_size,
                weight_decay=recipe.weight_decay, max_grad_norm=recipe.grad_clip or 0.0,
                adam_beta1=recipe.betas[0], adam_beta2=recipe.betas[1],
                optim="adamw_torch_fused" if recipe.fused else "adamw_torch",
                train_sampling_strategy="group_by_length" if recipe.sort_by_length else "random", warmup_steps=0)


def with_recipe(trainer_cls, recipe, head=None):
    """A subclass of ``trainer_cls`` that steps ``recipe``'s schedule and, when the recipe has ``head_lr_mult``,
    trains the modules named in ``head`` (e.g. ``["classifier"]``) at that multiple of the lr."""
    mult = getattr(recipe, "head_lr_mult", 1.0)

    class RecipeTrainer(trainer_cls):
        def create_optimizer(self, model=None):
            if mult == 1.0 or self.optimizer is not None:
                return super().create_optimizer(model)
            model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(model))
            in_head = lambda name: any(part in head for part in name.split("."))  # noqa: E731
            groups = []
            for is_head, lr in ((False, recipe.lr), (True, recipe.lr * mult)):
                for decayed in (True, False):
                    params = [p for n, p in model.named_parameters()
                              if p.requires_grad and in_head(n) == is_head and (n in decay) == decayed]
                    if params:
                        groups.append({"params": params, "lr": lr,
                                       "weight_decay": self.args.weight_decay if decayed else 0.0})
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            self.optimizer = cls(groups, **kwargs)
            return self.optimizer

        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None:
                name, options = recipe.scheduler()
                self.lr_scheduler = ftkit.make_scheduler(name, optimizer or self.optimizer,
                                                         total_steps=num_training_steps, **options)
                self._created_lr_scheduler = True
            return self.lr_scheduler

    RecipeTrainer.__name__ = f"{trainer_cls.__name__}WithFtkitRecipe"
    return RecipeTrainer
