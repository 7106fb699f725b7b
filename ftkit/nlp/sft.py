r"""Supervised fine-tuning (SFT, "instruction tuning") of a causal LM: format, mask, pack, adapt, train, score.

A causal LM's loss is the final loss of the seeds' fourth article written correctly: the mean next-token
cross-entropy :math:`-\frac{1}{|S|}\sum_{(i,t)\in S}\log p_\theta(x_{i,t}\mid x_{i,<t})` over a set :math:`S` of
positions. Pre-training counts every position; SFT counts only the **completion** (the answer), so the model is
not trained to write prompts: the prompt's labels are −100, the value cross-entropy skips (as padding's).

    data = encode(tokenizer, examples, max_length=256)   # chat template, prompt labels -100, clear errors
    token_table(tokenizer, data[0])                       # which tokens train
    model = apply_lora(model, r=8)                        # peft, LoRA on the attention projections (per model type)
    history = ftkit.fit(**fit_args(model, data, val, epochs=1, lr=2e-4))
    score(model, tokenizer, test_examples)                # exact match per task, from greedy replies

Examples are dicts with ``prompt`` and ``completion`` strings (TRL's prompt/completion format) or ``messages``,
a list of ``{"role", "content"}`` whose last turn is the assistant's (the trained one).
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import torch

from ..core import IGNORE, eval_mode
from .finetune import add_lora, parameter_table as _parameter_table
from .recipe import Recipe
from .causal import PLAIN_TEMPLATE, use_chat, format_prompt
from .hf import FeatureDataset
from ..env import require

__all__ = ["PLAIN_TEMPLATE", "RECIPES", "as_examples", "check_examples", "format_prompt", "split_example", "encode", "SFTDataset",
           "token_table", "padding_share", "check_labels", "apply_lora", "apply_full", "parameter_table",
           "SFTRecipe", "fit_args", "sft_loss", "score", "merge", "logits", "logits_in_fresh_process", "load_folder", "perplexity"]

ROLES = ("system", "user", "assistant")
RECIPES = {
    # LoRA: B starts at 0 and the update is rank r, so it needs far more than full fine-tuning's lr. QLoRA's 2e-4 is
    # for long runs; in a short budget it barely moves the model (SmolLM2-135M-Instruct, 96 shipped examples, 12
    # steps: 2e-4 → held-out loss 1.58→1.24, exact match 0 → 0; 1e-3 → 0.63, exact match 0 → 0.31)
    "lora": {"lr": 1e-3, "r": 8, "alpha": 16, "dropout": 0.05},
    # every weight moves: a small step keeps what pre-training learned (SmolLM2's own SFT: 3e-4 peak on 2 T tokens
    # with large batches; for a few hundred examples 2e-5 as TRL's default)
    "full": {"lr": 2e-5},
    "common": {"batch_size": 8, "weight_decay": 0.0, "warmup_ratio": 0.1, "grad_clip": 1.0},
}


# --------------------------------------------------------------------------- checks and formatting
def as_examples(examples) -> list:
    """``examples`` as a list: a list, a generator or any iterable of example dicts, a Hugging Face ``Dataset``, or a
    dict of columns (``Dataset.to_dict()``, a pandas ``to_dict('list')``: ``{"prompt": [...], "completion": [...]}``)
    turned into rows."""
    if isinstance(examples, dict):
        columns = {k: v for k, v in examples.items() if isinstance(v, (list, tuple))}
        if not columns or len(columns) != len(examples) or len({len(v) for v in columns.values()}) != 1:
            raise ValueError(f"examples is a dict with keys {', '.join(map(repr, examples)) or 'none'}: a dict is read "
                             "as columns of equal length ({'prompt': [...], 'completion': [...]}); pass a list of "
                             "example dicts, or columns of equal length")
        return [dict(zip(columns, row)) for row in zip(*columns.values())]
    if isinstance(examples, (str, bytes)):
        raise TypeError("examples is a string; pass a list of {'prompt': ..., 'completion': ...} dicts (or "
                        "'messages' lists)")
    try:
        return list(examples)
    except TypeError:
        raise TypeError(f"examples is a {type(examples).__name__}, not a list or iterable of example dicts") from None


def check_examples(examples) -> str:
    """'prompt_completion' or 'messages': the format of ``examples``, or one error naming the first bad one
    (blank prompts and replies included: nothing to learn from, or to learn to say)."""
    examples = as_examples(examples)
    if not examples:
        raise ValueError("no examples: the dataset is empty")
    kind = "messages" if "messages" in examples[0] else "prompt_completion"
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict):
            raise TypeError(f"example {i} is a {type(ex).__name__}; each example must be a dict with 'prompt' and "
                            "'completion' strings, or 'messages'")
        if kind == "prompt_completion":
            missing = [k for k in ("prompt", "completion") if not isinstance(ex.get(k), str)]
            if missing:
                raise ValueError(f"example {i} has no {' / '.join(repr(m) for m in missing)} string (its keys: "
                                 f"{', '.join(ex) or 'none'}); give 'prompt' + 'completion' columns (rename yours, "
                                 "e.g. instruction→prompt, response→completion) or a 'messages' list")
            blank = [k for k in ("prompt", "completion") if not ex[k].strip()]
            if blank:
                raise ValueError(f"example {i} has an empty {blank[0]!r} ({ex[blank[0]]!r}): "
                                 + ("there is nothing to answer" if blank[0] == "prompt" else "the model would learn "
                                    "to answer with nothing") + "; drop or fix it")
            continue
        msgs = ex.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise ValueError(f"example {i} has no 'messages' list; every example needs one (the first has)")
        for j, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise ValueError(f"example {i}, message {j}: expected {{'role': one of {', '.join(ROLES)}, "
                                 f"'content': str}}, got {m!r}")
        if msgs[-1]["role"] != "assistant":
            raise ValueError(f"example {i}: the last message is the {msgs[-1]['role']!r}'s; SFT trains the "
                             "assistant's reply, so the last message must have role 'assistant'")
        if not any(m["role"] == "user" for m in msgs[:-1]):
            raise ValueError(f"example {i}: no 'user' message before the assistant's reply")
        empty = next((j for j, m in enumerate(msgs) if m["role"] != "system" and not m["content"].strip()), None)
        if empty is not None:
            raise ValueError(f"example {i}, message {empty}: the {msgs[empty]['role']}'s content is empty "
                             f"({msgs[empty]['content']!r}); drop or fix it")
    return kind


def split_example(tokenizer, example, *, chat=None, system=None) -> tuple[str, str]:
    """(prompt text, completion text) of one example; the completion ends with the end-of-turn (chat) or the EOS
    token (plain), so the model learns to stop."""
    if "messages" in example:
        msgs = list(example["messages"])
        prompt, reply = msgs[:-1], msgs[-1]["content"]
    else:
        prompt, reply = example["prompt"], example["completion"]
    head = format_prompt(tokenizer, prompt, chat=chat, system=system)
    if not use_chat(tokenizer, chat):
        return head, reply + (tokenizer.eos_token or "")
    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system is not None:
        msgs = [{"role": "system", "content": system}, *msgs]
    full = tokenizer.apply_chat_template([*msgs, {"role": "assistant", "content": reply}], tokenize=False)
    if not full.startswith(head):
        raise ValueError("this chat template renders the conversation differently from its prompt with "
                         "add_generation_prompt=True, so the prompt/completion split is unclear; pass chat=False")
    return head, full[len(head):]


# --------------------------------------------------------------------------- encoding
class SFTDataset(FeatureDataset):
    """Encoded examples (``input_ids``, ``attention_mask``, ``labels`` per item) and their counts."""

    def __init__(self, features, *, n_examples, prompt_tokens, completion_tokens, n_truncated, packed, masked):
        self.features, self.n_examples, self.packed, self.masked = features, n_examples, packed, masked
        self.prompt_tokens, self.completion_tokens, self.n_truncated = prompt_tokens, completion_tokens, n_truncated

    @property
    def trained_tokens(self) -> int:
        """Positions the loss counts: labels other than −100 after the one-token shift (position 0 predicts nothing)."""
        return int(sum((f["labels"][1:] != IGNORE).sum() for f in self.features))

    def __repr__(self):
        return (f"SFTDataset({self.n_examples} examples → {len(self)} sequences, {self.prompt_tokens} prompt + "
                f"{self.completion_tokens} completion tokens, loss on {self.trained_tokens}, "
                f"{self.n_truncated} completions cut{', packed' if self.packed else ''})")


def encode(tokenizer, examples, *, max_length: int = 256, chat=None, mask_prompt: bool = True, pack: bool = False,
           system: str | None = None) -> SFTDataset:
    """Tokenize examples as ``prompt + completion`` with labels −100 on the prompt (``mask_prompt=False``: every
    token is trained, as in pre-training). A prompt that leaves no room for its reply in ``max_length`` tokens is
    an error naming it; a completion that does not fit is cut and counted.

    ``pack``: concatenate the examples and cut the stream into ``max_length`` blocks — no padding, but attention
    then crosses example boundaries (the naive packing; the loss still skips every prompt).
    """
    examples = as_examples(examples)
    check_examples(examples)
    limit = min(int(max_length), getattr(tokenizer, "model_max_length", max_length) or max_length)
    feats, n_prompt, n_completion, n_cut, first_cut = [], 0, 0, 0, None
    for i, ex in enumerate(examples):
        head, tail = split_example(tokenizer, ex, chat=chat, system=system)
        p = tokenizer(head, add_special_tokens=False)["input_ids"]
        c = tokenizer(tail, add_special_tokens=False)["input_ids"]
        if len(p) >= limit:
            raise ValueError(f"example {i}: its prompt is {len(p)} tokens, as long as the context (max_length="
                             f"{limit}) or longer, so no reply token could be trained; raise max_length (the model "
                             f"reads up to {getattr(tokenizer, 'model_max_length', '?')}) or shorten/drop it: "
                             f"{head[:80]!r}…")
        if len(p) + len(c) > limit:
            c, n_cut = c[:limit - len(p)], n_cut + 1
            first_cut = i if first_cut is None else first_cut
        n_prompt, n_completion = n_prompt + len(p), n_completion + len(c)
        ids = torch.tensor(p + c)
        labels = ids.clone()
        if mask_prompt:
            labels[:len(p)] = IGNORE
        feats.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    if n_cut:
        warnings.warn(f"{n_cut} of {len(examples)} replies do not fit in max_length={limit} tokens after their prompt "
                      f"(the first: example {first_cut}): they are cut and lose their end-of-turn token, so the model "
                      "does not learn to stop after them; raise max_length or shorten them", stacklevel=2)
    if pack:
        feats = _pack(feats, limit)
    return SFTDataset(feats, n_examples=len(examples), prompt_tokens=n_prompt, completion_tokens=n_completion,
                      n_truncated=n_cut, packed=pack, masked=mask_prompt)


def _pack(feats, block: int):
    ids = torch.cat([f["input_ids"] for f in feats])
    labels = torch.cat([f["labels"] for f in feats])
    out = []
    for s in range(0, len(ids), block):
        chunk, lab = ids[s:s + block], labels[s:s + block].clone()
        lab[0] = IGNORE     # its previous token is in the block before: nothing predicts it here
        if (lab[1:] != IGNORE).any():
            out.append({"input_ids": chunk, "attention_mask": torch.ones_like(chunk), "labels": lab})
    return out


def token_table(tokenizer, feature, *, max_rows: int | None = None):
    """DataFrame, one row per token: position, token text, id, label (−100 or the id) and whether the loss counts
    it (the label predicted from the previous position; padding has ``attention_mask`` 0)."""
    import pandas as pd
    ids, labels = feature["input_ids"].tolist(), feature["labels"].tolist()
    mask = feature.get("attention_mask", torch.ones(len(ids))).tolist()
    rows = [{"position": t, "token": tokenizer.decode([i]), "id": i, "label": lab,
             "trained": bool(t > 0 and lab != IGNORE), "padding": not bool(m)}
            for t, (i, lab, m) in enumerate(zip(ids, labels, mask))]
    return pd.DataFrame(rows[:max_rows] if max_rows else rows).set_index("position")


def padding_share(loader) -> float:
    """Share of the batches' positions that are padding (``attention_mask`` 0): compute spent on nothing."""
    pad = total = 0
    for batch in loader:
        pad += int((batch["attention_mask"] == 0).sum())
        total += batch["attention_mask"].numel()
    return pad / total if total else 0.0


def check_labels(loader, name: str = "train") -> None:
    """Raise before training if a batch has every label −100 (nothing to learn: all prompt, padding or cut)."""
    for k, batch in enumerate(loader):
        if not (batch["labels"][:, 1:] != IGNORE).any():
            raise ValueError(f"{name} batch {k}: every label is -100, so the loss has nothing to count (the replies "
                             "were cut, masked or empty). Raise max_length, check the completions, or use "
                             "mask_prompt=False")


# --------------------------------------------------------------------------- which weights train
def apply_lora(model, *, r: int = 8, alpha: float = 16, dropout: float = 0.05, target_modules=None):
    """A peft causal-LM model with LoRA adapters on peft's default targets for the model type (Llama, Qwen2:
    ``q_proj``, ``v_proj``), or ``target_modules`` checked against the model. The LM head stays frozen and tied.
    A 4-bit model is first prepared for k-bit training (norms in float32, input gradients on)."""
    if getattr(model, "is_loaded_in_4bit", False):
        require("peft")
        from peft import prepare_model_for_kbit_training
        model = prepare_model_for_kbit_training(model)
    return add_lora(model, "CAUSAL_LM", r=r, alpha=alpha, dropout=dropout, target_modules=target_modules)


def apply_full(model):
    """Every weight trains (the comparison for the smallest model)."""
    for p in model.parameters():
        p.requires_grad = True
    return model


def parameter_table(model):
    """Notebook 05's table for a decoder: trainable and total parameters of the pre-trained decoder (embeddings
    included; a tied LM head is the embedding matrix, counted once), the LoRA A-B matrices and an untied LM head."""
    return _parameter_table(model).rename(index={"encoder": "decoder", "head": "lm_head (untied)"})


# --------------------------------------------------------------------------- training
@dataclass
class SFTRecipe(Recipe):
    """The SFT defaults (:data:`RECIPES`): AdamW over the trainable weights, linear warmup then decay, gradient
    clipping; ``fit_args`` first checks that no batch has every label -100."""
    lr: float = RECIPES["lora"]["lr"]
    batch_size: int = RECIPES["common"]["batch_size"]
    weight_decay: float = RECIPES["common"]["weight_decay"]
    warmup_ratio: float = RECIPES["common"]["warmup_ratio"]
    grad_clip: float | None = RECIPES["common"]["grad_clip"]

    def check(self, train_loader, val_loader) -> None:
        check_labels(train_loader)
        if val_loader is not None:
            check_labels(val_loader, "validation")


def fit_args(model, train_set: SFTDataset, val_set: SFTDataset | None = None, *, epochs: int = 1, lr: float,
             batch_size: int | None = None, seed: int = 0, pad_id: int = 0, sort_by_length: bool = False,
             weight_decay: float | None = None, warmup_ratio: float | None = None, grad_clip: float | None = None):
    """Keyword arguments for ``ftkit.fit`` / ``fit_live_async``: the model's own loss (the masked next-token CE),
    and :class:`SFTRecipe` with the values given (``None``: its default); the label checks run first."""
    given = dict(lr=lr, batch_size=batch_size, weight_decay=weight_decay, warmup_ratio=warmup_ratio,
                 grad_clip=grad_clip, sort_by_length=sort_by_length)
    recipe = SFTRecipe(**{k: v for k, v in given.items() if v is not None})
    return recipe.fit_args(model, train_set, epochs, val_set=val_set, seed=seed, pad_id=pad_id)


def sft_loss(logits, labels) -> torch.Tensor:
    r"""Mean next-token cross-entropy over the counted positions: :math:`-\frac{1}{|S|}\sum_{(i,t)\in S}
    \log \operatorname{softmax}(z_{i,t-1})_{x_{i,t}}`, :math:`S` the labels other than −100 (what a Hugging Face
    causal LM's ``outputs.loss`` computes)."""
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                             ignore_index=IGNORE)


@torch.no_grad()
def score(model, tokenizer, examples, *, max_new_tokens: int = 24, batch_size: int = 16, chat=None, system=None):
    """(exact match per task and ``all``, the replies): greedy generation on each example's prompt."""
    from ..data.instructions import exact_match_by_task
    from .causal import generate
    prompts = [ex["prompt"] if "prompt" in ex else ex["messages"][:-1] for ex in examples]
    refs = [ex if "completion" in ex else {**ex, "completion": ex["messages"][-1]["content"]} for ex in examples]
    replies = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, chat=chat,
                       system=system)
    return exact_match_by_task(replies, refs), replies


# --------------------------------------------------------------------------- save, reload, merge
@torch.no_grad()
def logits(model, tokenizer, texts) -> torch.Tensor:
    """Float32 logits of ``texts`` (padded on the right; padded positions zeroed), on the CPU."""
    device = next(model.parameters()).device
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    enc = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
    tokenizer.padding_side = side
    with eval_mode(model):
        out = model(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)).logits
    return out.float().cpu() * enc["attention_mask"][..., None]


def merge(model):
    """``merge_and_unload``: W ← W₀ + (α/r)·BA in every adapted layer; returns the plain transformers model. On
    4-bit (QLoRA) weights the merged sum is rounded back to 4 bits, so the logits move: merge a float copy of the
    base instead (load it without ``load_in_4bit`` and ``load_folder`` the adapter onto it)."""
    return model.merge_and_unload()


def logits_in_fresh_process(folder, texts, *, load_in_4bit: bool = False, timeout: int = 600) -> torch.Tensor:
    """Load ``folder`` (a full model or a LoRA adapter, whose base it names) in a new Python process and return the
    logits of ``texts`` there: proof that the folder alone rebuilds the model."""
    import json
    import subprocess
    import sys
    import tempfile
    code = ("import json, sys, torch\n"
            "from ftkit.nlp.sft import load_folder, logits\n"
            "model, tok = load_folder(sys.argv[1], load_in_4bit=sys.argv[4] == '1')\n"
            "torch.save(logits(model, tok, json.loads(sys.argv[2])), sys.argv[3])\n")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "logits.pt")
        done = subprocess.run([sys.executable, "-c", code, os.fspath(folder), json.dumps(list(texts)), out,
                               "1" if load_in_4bit else "0"],
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"reloading {folder} in a fresh process failed:\n{done.stderr[-2000:]}")
        return torch.load(out)


def load_folder(folder, *, load_in_4bit: bool = False):
    """(model, tokenizer) from a folder written by ``save_pretrained``: a full model, or a LoRA adapter loaded on
    the base model its ``adapter_config.json`` names (``load_in_4bit``: as it was trained, for QLoRA)."""
    from .causal import load_causal_lm
    if os.path.isfile(os.path.join(folder, "adapter_config.json")):
        import json
        require("peft")
        from peft import PeftModel
        require("transformers")
        from transformers import AutoTokenizer
        with open(os.path.join(folder, "adapter_config.json")) as f:
            base = json.load(f)["base_model_name_or_path"]
        model, _ = load_causal_lm(base, load_in_4bit=load_in_4bit)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        tokenizer.padding_side = "right"
        return PeftModel.from_pretrained(model, folder), tokenizer
    return load_causal_lm(folder, load_in_4bit=load_in_4bit)


def perplexity(loss: float) -> float:
    """:math:`e^{\\text{loss}}`: the number of equally likely tokens that would give this loss."""
    return math.exp(loss) if loss < 700 else float("inf")
