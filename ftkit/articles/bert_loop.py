"""Seed 001's and 003's BERT code, run as written on a tiny offline BERT, one exception at a time, then fixed.

The article code below is quoted verbatim (001:131–164, 003:174–189, 004:90) and executed with ``exec`` in a
namespace that supplies what the article leaves out (the model, the loaders). :func:`run_stages` applies the fixes
one by one (``SEED001_FIXES``, each a literal replacement of an article line, named by its audit id) and reports
the exception or the printed lines of each stage:

* S1-06 ``input_ids, attention_mask, labels = batch.to(device)``: a collated batch is a list (no ``.to``); a
  ``BatchEncoding`` has ``.to`` but unpacks into its *keys* (:func:`unpack_batch_encoding`).
* S1-07 ``criterion(outputs, labels)`` / ``outputs.argmax(1)`` on a ``SequenceClassifierOutput``.
* S1-08 no ``torch.no_grad()`` in ``evaluate`` (:func:`no_grad_effect`).
* S1-09 ``train_loss += train(...)`` then ``/ len(loader)``: the running sum of the epoch means / the batch count.
* S1-10 ``train_acc`` printed, never computed (always 0.0000).
* S1-11 a sequence classifier (B × 2) presented as a token tagger (B × L × 9) (:func:`output_shapes`).
* S3-12, S3-14 003's ``evaluate``: ``device`` undefined, then the ``labels`` list shadowed by a tensor.
* S3-13 ``criterion(outputs.logits, labels)`` next to ``outputs.loss`` of ``labels=``: the same number
  (:func:`loss_twice`).
* S1-15 ``train_data_loader`` / ``test_data_loader`` are never defined in 001: with every other fix in, the loop
  still stops with a ``NameError`` (:func:`run_as_published`; :func:`run_stages` supplies the two loaders so the
  errors behind it show).
* S0-06 seed 000's loop ``for epoch in range(epochs): for images, labels in train_dataset:`` (000:233–234): neither
  name is defined (:func:`run_seed000_loop`).
* S4-09 004's ``print(f\\"…\\")``: a SyntaxError before anything runs (:func:`syntax_error`).

``ftkit.fit`` takes ``.logits`` from a model output itself, so the S1-07 crash never appears through ``fit``.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from ..data import shipped
from ..data.conll import load_conll
from ..nlp.tiny import build_tiny_bert
from ..env import require

__all__ = ["SEED001_CODE", "SEED001_FIXES", "SEED003_EVALUATE", "SEED004_PRINT", "tiny_classifier",
           "sentence_batches", "apply_fixes", "run_stages", "parse_prints", "unpack_batch_encoding", "output_shapes", "loss_twice",
           "no_grad_effect", "run_seed003_evaluate", "syntax_error", "run_as_published", "SEED000_LOOP",
           "run_seed000_loop"]

# 001:131–164, verbatim (the model / optimizer / criterion lines 124–128 are supplied by the namespace)
SEED001_CODE = '''\
def train(model, data_loader, optimizer, criterion, device):
    model.train()
    total_loss = 0
    for batch in data_loader:
        input_ids, attention_mask, labels = batch.to(device)
        outputs = model(input_ids, attention_mask=attention_mask)
        loss = criterion(outputs, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
    return total_loss / len(data_loader)

def evaluate(model, data_loader, criterion, device):
    model.eval()
    total_loss = 0
    total_correct = 0
    for batch in data_loader:
        input_ids, attention_mask, labels = batch.to(device)
        outputs = model(input_ids, attention_mask=attention_mask)
        loss = criterion(outputs, labels)
        total_loss += loss.item()
        predictions = outputs.argmax(1)
        total_correct += (predictions == labels).sum().item()
    return total_loss / len(data_loader), total_correct / len(data_loader.dataset)

# 训练模型
device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
model.to(device)
train_loss, test_loss, train_acc, test_acc = 0, 0, 0, 0
for epoch in range(10):
    train_loss += train(model, train_data_loader, optimizer, criterion, device)
    test_loss, test_acc = evaluate(model, test_data_loader, criterion, device)
    print(f'Epoch {epoch+1}, train loss: {train_loss/len(train_data_loader):.4f}, test loss: {test_loss:.4f}, train acc: {train_acc:.4f}, test acc: {test_acc:.4f}')
'''

# (audit id, [(article text, replacement), …]), applied in this order; stage k runs with the first k fixes
SEED001_FIXES = [
    ("S1-06", [("input_ids, attention_mask, labels = batch.to(device)",
                "input_ids, attention_mask, labels = (t.to(device) for t in batch)")]),
    ("S1-07", [("loss = criterion(outputs, labels)", "loss = criterion(outputs.logits, labels)"),
               ("predictions = outputs.argmax(1)", "predictions = outputs.logits.argmax(1)")]),
    ("S1-08", [("def evaluate(model, data_loader, criterion, device):",
                "@torch.no_grad()\ndef evaluate(model, data_loader, criterion, device):")]),
    ("S1-09", [("train_loss += train(", "train_loss = train("),
               ("{train_loss/len(train_data_loader):.4f}", "{train_loss:.4f}")]),
    ("S1-10", [("    model.train()\n    total_loss = 0\n", "    model.train()\n    total_loss = 0\n    total_correct = 0\n"),
               ("        total_loss += loss.item()\n    return total_loss / len(data_loader)\n",
                "        total_loss += loss.item()\n        total_correct += (outputs.logits.argmax(1) == labels).sum().item()\n"
                "    return total_loss / len(data_loader), total_correct / len(data_loader.dataset)\n"),
               ("train_loss = train(", "train_loss, train_acc = train(")]),
]

# 003:174–189, verbatim
SEED003_EVALUATE = '''\
def evaluate(model, dataset, batch_size):
    dataloader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    model.eval()
    preds, labels = [], []
    with torch.no_grad():
        for batch in dataloader:
            input_ids = batch['input_ids'].to(device)
            attention_mask = batch['attention_mask'].to(device)
            labels = batch['labels'].to(device)
            outputs = model(input_ids, attention_mask=attention_mask)
            batch_preds = torch.argmax(outputs.logits, dim=1).to('cpu').tolist()
            batch_labels = labels.to('cpu').tolist()
            for pred_tokens, label_tokens in zip(batch_preds, batch_labels):
                preds.append(pred_tokens)
                labels.append(label_tokens)
    return preds, labels
'''

# 000:233–234, verbatim (the loop's body, 000:235–236, calls train_step on each batch)
SEED000_LOOP = '''\
for epoch in range(epochs):
    for images, labels in train_dataset:
        train_step(images, labels)
'''

# 004:90, verbatim (the backslashes are in the article's code block)
SEED004_PRINT = 'print(f\\"Epoch {epoch+1}/{num_epochs}, Loss: {loss.item()}\\")'


def tiny_classifier(folder, num_labels: int = 2, *, token: bool = False, seed: int = 0):
    """(model, tokenizer): a tiny BERT written offline by :func:`ftkit.nlp.tiny.build_tiny_bert` (random weights,
    a WordPiece vocabulary from the shipped CoNLL sample) under ``BertForSequenceClassification`` (or
    ``BertForTokenClassification`` with ``token=True``)."""
    require("transformers")
    from transformers import (AutoTokenizer, BertForSequenceClassification, BertForTokenClassification,
                              logging as hf_logging)
    folder = os.fspath(folder)
    if not os.path.exists(os.path.join(folder, "config.json")):
        build_tiny_bert(folder, seed=seed)
    cls = BertForTokenClassification if token else BertForSequenceClassification
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()           # "newly initialized: classifier" is the point here, not news
    try:
        torch.manual_seed(seed)
        model = cls.from_pretrained(folder, num_labels=num_labels)
    finally:
        hf_logging.set_verbosity(verbosity)
    return model, AutoTokenizer.from_pretrained(folder)


def sentence_batches(tokenizer, n: int = 16, batch_size: int = 4, max_length: int = 32):
    """(train loader, test loader) of (input_ids, attention_mask, label) tuples from the shipped CoNLL sample:
    label 1 when the sentence names a person. What 001 leaves undefined (``train_data_loader``)."""
    data = load_conll(shipped("conll2003_sample"), download=False)
    out = []
    for split in (data.train[:n], data.test[:n]):
        enc = tokenizer([" ".join(s.words) for s in split], truncation=True, max_length=max_length,
                        padding="max_length", return_tensors="pt")
        y = torch.tensor([int(any(t.endswith("PER") for t in s.labels)) for s in split])
        out.append(DataLoader(TensorDataset(enc["input_ids"], enc["attention_mask"], y), batch_size=batch_size,
                              shuffle=False))
    return tuple(out)


def apply_fixes(code: str, fixes) -> str:
    """``code`` with each (id, [(old, new), …]) replacement made; a replacement that matches nothing is an error."""
    for fid, pairs in fixes:
        for old, new in pairs:
            if old not in code:
                raise ValueError(f"fix {fid} {old!r} matches nothing in the article code")
            code = code.replace(old, new)
    return code


def run_stages(model_factory, train_loader, test_loader, *, lr: float = 2e-5, code: str = SEED001_CODE,
               fixes=SEED001_FIXES) -> list[dict]:
    """Run ``code`` as written, then with the first k fixes for k = 1…len(fixes), each on a fresh model from
    ``model_factory()`` with the article's ``optim.Adam(lr=2e-5)`` and ``nn.CrossEntropyLoss()``.

    One row per stage: ``fixed`` (ids applied so far), ``error`` ("TypeName: message" or None), ``printed``
    (the lines printed before it stopped), ``seconds`` and ``namespace`` (the model, the functions).
    """
    rows = []
    for k in range(len(fixes) + 1):
        model = model_factory()
        ns = {"torch": torch, "model": model, "optimizer": torch.optim.Adam(model.parameters(), lr=lr),
              "criterion": torch.nn.CrossEntropyLoss(), "train_data_loader": train_loader,
              "test_data_loader": test_loader}
        buf, error, t0 = io.StringIO(), None, time.perf_counter()
        with contextlib.redirect_stdout(buf):
            try:
                exec(compile(apply_fixes(code, fixes[:k]), f"<article 001, {k} fixes>", "exec"), ns)
            except Exception as e:       # the article's own crash is the result
                error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        rows.append({"fixed": [f[0] for f in fixes[:k]], "error": error, "printed": buf.getvalue().splitlines(),
                     "seconds": time.perf_counter() - t0, "namespace": ns})
    return rows


def parse_prints(lines: list[str]) -> dict[str, list[float]]:
    """The numbers of 001's ``Epoch k, train loss: …, test loss: …, train acc: …, test acc: …`` lines."""
    keys = ("train loss", "test loss", "train acc", "test acc")
    out = {k: [] for k in keys}
    for line in lines:
        for k in keys:
            m = re.search(rf"{k}: (-?[0-9.]+)", line)
            if m:
                out[k].append(float(m.group(1)))
    return out


def unpack_batch_encoding(tokenizer, texts=("EU rejects German call .", "Peter Blackburn")) -> tuple:
    """What ``input_ids, attention_mask, labels = batch.to(device)`` gets from a tokenizer's ``BatchEncoding``:
    its keys, strings (S1-06's other half)."""
    batch = tokenizer(list(texts), padding=True, return_tensors="pt").to("cpu")
    return tuple(iter(batch))


def output_shapes(seq_model, token_model, loader) -> dict[str, tuple]:
    """Output shapes on one batch: a sequence classifier gives one row per sentence, a tagger one per token."""
    input_ids, mask, _ = next(iter(loader))
    with torch.no_grad():
        return {"sequence": tuple(seq_model(input_ids, attention_mask=mask).logits.shape),
                "token": tuple(token_model(input_ids, attention_mask=mask).logits.shape)}


def loss_twice(model, loader) -> dict[str, float]:
    """003:166–167: ``outputs.loss`` of ``model(…, labels=y)`` and ``CrossEntropyLoss()(outputs.logits, y)``."""
    input_ids, mask, y = next(iter(loader))
    model.eval()
    with torch.no_grad():
        out = model(input_ids, attention_mask=mask, labels=y)
        ce = torch.nn.CrossEntropyLoss()(out.logits, y)
    return {"outputs_loss": float(out.loss), "criterion_logits": float(ce), "difference": float(out.loss - ce)}


def no_grad_effect(model, loader, repeats: int = 3) -> dict:
    """One evaluation pass with and without ``torch.no_grad()`` (S1-08): whether the logits carry an autograd
    graph, and the best-of-``repeats`` seconds of each."""
    model.eval()

    def run(grad: bool):
        best, flag = float("inf"), None
        for _ in range(repeats):
            t0 = time.perf_counter()
            with torch.set_grad_enabled(grad):
                for input_ids, mask, _ in loader:
                    logits = model(input_ids, attention_mask=mask).logits
                    flag = logits.requires_grad
            best = min(best, time.perf_counter() - t0)
        return best, flag

    (t_grad, graph), (t_nograd, graph_off) = run(True), run(False)
    return {"seconds_as_written": t_grad, "seconds_no_grad": t_nograd, "graph_kept_as_written": bool(graph),
            "graph_kept_no_grad": bool(graph_off)}


def run_seed003_evaluate(model, loader, *, define_device: bool) -> dict:
    """003's ``evaluate`` as written on dict batches from ``loader``'s tuples; with ``define_device=False`` the
    namespace is the article's (no ``device``: S3-12), with True the next line fails (S3-14)."""
    rows = [{"input_ids": i, "attention_mask": m, "labels": y} for b in loader for i, m, y in zip(*b)]
    ns = {"torch": torch, **({"device": torch.device("cpu")} if define_device else {})}
    exec(compile(SEED003_EVALUATE, "<article 003>", "exec"), ns)
    try:
        ns["evaluate"](model, rows, 4)
    except Exception as e:
        return {"error": f"{type(e).__name__}: {e}"}
    return {"error": None}


def syntax_error(line: str = SEED004_PRINT) -> str:
    """Compile 004:90: the message Python gives before running anything ('' if it compiles)."""
    try:
        compile(line, "<article 004:90>", "exec")
    except SyntaxError as e:
        return f"SyntaxError: {e.msg}"
    return ""


def _error(code: str, ns: dict, where: str) -> str | None:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(code, where, "exec"), ns)
    except Exception as e:           # the article's own crash is the result
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def run_as_published(model_factory, *, lr: float = 2e-5, code: str = SEED001_CODE, fixes=SEED001_FIXES) -> dict:
    """S1-15: 001's loop with every fix of ``fixes`` in, in the namespace the article's listing defines (the model,
    the optimizer, the criterion: 001:124–128) and nothing else: ``train_data_loader`` is never defined, so it stops
    with a NameError after every other fix."""
    model = model_factory()
    ns = {"torch": torch, "model": model, "optimizer": torch.optim.Adam(model.parameters(), lr=lr),
          "criterion": torch.nn.CrossEntropyLoss()}
    return {"fixed": [f[0] for f in fixes], "error": _error(apply_fixes(code, fixes), ns, "<article 001, as published>")}


def run_seed000_loop() -> list[str | None]:
    """S0-06: 000:233–234 as written (``epochs`` undefined), then with ``epochs = 10`` (``train_dataset``
    undefined): the two NameErrors, before TensorFlow is ever called."""
    return [_error(SEED000_LOOP, {}, "<article 000:233>"), _error(SEED000_LOOP, {"epochs": 10}, "<article 000:233>")]
