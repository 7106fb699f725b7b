"""ftkit.nlp.recipe: one recipe shape for every fine-tuning, one fit_args(), the schedule left to fit."""
from __future__ import annotations

import math

import pytest

import ftkit
from ftkit.data.instructions import load_instructions
from ftkit.nlp import sft
from ftkit.nlp.causal import build_tiny_causal_lm, load_causal_lm
from ftkit.nlp.finetune import recipe_for
from ftkit.nlp.lm import LMRecipe
from ftkit.nlp.ner import NerRecipe
from ftkit.nlp.recipe import Recipe

TRAIN, _ = load_instructions()


@pytest.fixture(scope="module")
def causal(tmp_path_factory):
    texts = [e["prompt"] + " " + e["completion"] for e in TRAIN[:64]] + ["user assistant system"]
    return load_causal_lm(build_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "llama", texts))


def test_every_task_recipe_is_a_recipe_with_its_own_defaults():
    assert all(issubclass(cls, Recipe) for cls in (NerRecipe, sft.SFTRecipe, LMRecipe))
    lora = recipe_for("lora")
    assert (lora.lr, lora.batch_size, lora.weight_decay, lora.warmup_ratio, lora.grad_clip, lora.fused) == (
        5e-4, 8, 0.01, 0.1, 1.0, True)
    assert recipe_for("Head", lr=1e-2, batch_size=None).lr == 1e-2 and recipe_for("head").sort_by_length
    assert LMRecipe().betas == (0.9, 0.99) and LMRecipe().scheduler() == (
        "linear_warmup", {"warmup_ratio": 0.05, "final_factor": 0.1})
    with pytest.raises(ValueError, match=r"unknown mode 'lorra'; choose one of: full, head, lora; did you mean 'lora'\?"):
        recipe_for("lorra")
    with pytest.raises(ValueError, match=r"unknown scheduler 'cosin_warmup'.*did you mean 'cosine_warmup'\?"):
        Recipe(schedule="cosin_warmup")
    with pytest.raises(ValueError, match="warmup_ratio must be in \\[0, 1\\], got 1.5"):
        Recipe(warmup_ratio=1.5)


def test_fit_args_trains_the_model_given_and_leaves_the_step_count_to_fit(causal):
    model, tok = causal
    model = sft.apply_full(model)      # a Hugging Face model has a .model too (its body without the LM head)
    data = sft.encode(tok, TRAIN[:20])
    args = sft.SFTRecipe(lr=1e-3, batch_size=8, schedule="cosine_warmup").fit_args(model, data, 2,
                                                                                    pad_id=tok.pad_token_id)
    assert args["model"] is model and args["loss"] is None and len(args["train_loader"]) == 3
    assert args["scheduler"] == ("cosine_warmup", {"warmup_ratio": 0.1, "final_factor": 0.0})
    history = ftkit.fit(**args, device="cpu", progress=False)
    lrs = [r["lr"] for r in history.steps]     # 3 batches x 2 epochs = 6 steps; W = round(0.6) = 1
    assert len(lrs) == 6 and lrs[0] == pytest.approx(1e-3)
    assert lrs[1:] == pytest.approx([1e-3 * (1 + math.cos(math.pi * (s - 1) / 5)) / 2 for s in range(1, 6)])
