r"""Sentence classification with a pre-trained Transformer: encode, train through ``fit``, score, predict, save.

The encoder reads ``[CLS] sentence [SEP]`` (or a pair ``[CLS] a [SEP] b [SEP]``); a linear head on the pooled
``[CLS]`` vector gives logits :math:`z`, and training minimises the cross-entropy
:math:`L = -\log \operatorname{softmax}(z)_y`, as ``BertForSequenceClassification`` does.

    clf = SentenceClassifier.from_pretrained("bert-base-uncased", data.label_list, mode="lora")
    train_set, test_set = clf.encode(data.train), clf.encode(data.test)
    history = ftkit.fit(**clf.fit_args(train_set, epochs=1, val_set=clf.encode(data.valid)))
    evaluate_classifier(clf.model, test_set, clf.label_list)["accuracy"]
    clf.predict(["a gripping, funny film"])   # [{'label': 'positive', 'prob': 0.97, 'probs': {...}}]
    clf.save("out/model"); SentenceClassifier.from_pretrained("out/model")   # same logits, LoRA included

Loading never runs code from a model repository (``trust_remote_code=False`` everywhere).
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass

import torch

from ..data.text import TextSplit
from ..params import count_trainable
from .finetune import check_mode, apply_mode, parameter_table, recipe_for
from .recipe import Recipe
from .hf import (FeatureDataset, TruncationWarning, check_head_and_length, check_texts, from_pretrained, load_config,
                 load_tokenizer, make_loader, save_folder, check_save_folder)
from ..train.step import predict as _predict
from ..metrics import confusion_matrix
from ..utils import check_int, get_device
from ..env import require

__all__ = ["EncodedText", "LabelOrderWarning", "SentenceClassifier", "evaluate_classifier", "scores_from_confusion"]

META = "ftkit_classifier.json"  # label list, mode and max_length saved next to the weights


class _ClassifierRecipe(Recipe):
    """A classification recipe: the same knobs, and the accuracy logged each epoch."""

    def extra_args(self) -> dict:
        return {"metrics": ["accuracy"]}


class LabelOrderWarning(UserWarning):
    """The data names its labels in another order than the classifier: they were mapped by name."""


@dataclass
class EncodedText(FeatureDataset):
    """Tokenized sentences: ``features[i]`` holds 1-D model inputs and a 0-d ``labels``; ``n_truncated`` counts
    the sentences (or pairs) cut at ``max_length`` (``cut``: their indices); ``label_list`` names the label
    indices (the classifier's order)."""
    features: list[dict]
    n_truncated: int
    max_length: int
    label_list: list[str] | None = None
    cut: list[int] | None = None

    @property
    def labels(self) -> torch.Tensor:
        return torch.stack([f["labels"] for f in self.features])


def scores_from_confusion(cm: torch.Tensor, label_list: list[str]) -> dict:
    r"""Accuracy, macro-F1 and per-class precision/recall/F1 from a confusion matrix (rows true, columns predicted).

    :math:`P_c = C_{cc}/\sum_i C_{ic}`, :math:`R_c = C_{cc}/\sum_j C_{cj}`, :math:`F_c = 2P_cR_c/(P_c+R_c)`
    (0 where undefined); macro-F1 is the mean of :math:`F_c`.
    """
    cm = cm.double()
    tp, pred, true = cm.diag(), cm.sum(0), cm.sum(1)
    p = torch.where(pred > 0, tp / pred.clamp(min=1), torch.zeros_like(tp))
    r = torch.where(true > 0, tp / true.clamp(min=1), torch.zeros_like(tp))
    f = torch.where(p + r > 0, 2 * p * r / (p + r).clamp(min=1e-12), torch.zeros_like(tp))
    per_class = {name: {"precision": float(p[c]), "recall": float(r[c]), "f1": float(f[c]), "support": int(true[c])}
                 for c, name in enumerate(label_list)}
    return {"accuracy": float(tp.sum() / cm.sum()), "macro_f1": float(f.mean()), "per_class": per_class,
            "confusion": cm.long().tolist()}


@torch.no_grad()
def evaluate_classifier(model, encoded: EncodedText, label_list: list[str], *, batch_size: int = 64,
                        device="auto") -> dict:
    """Accuracy, macro-F1, per-class scores and the confusion matrix of ``model`` on ``encoded``.

    ``label_list`` must be the order ``encoded`` was made with (``clf.label_list``): the data's own list in
    another order would put every score under the wrong name."""
    if getattr(encoded, "label_list", None) is not None and list(label_list) != list(encoded.label_list):
        raise ValueError(f"label_list {list(label_list)} is not the order these sentences were encoded with "
                         f"({list(encoded.label_list)}): scores would carry the wrong names; pass the classifier's "
                         "clf.label_list")
    if len(encoded) == 0:
        raise ValueError("evaluate_classifier got no sentences (an empty split)")
    loader = make_loader(encoded, batch_size, sort_by_length=True)
    logits = _predict(model, loader, device=device)
    target = encoded.labels[list(loader.sampler)]
    return scores_from_confusion(confusion_matrix(logits.argmax(-1), target, len(label_list)), label_list)


def _new_modules(info, meta: dict) -> list[str]:
    """Layers the checkpoint lacks start random (the head; a pooler some checkpoints leave out): they must train
    and be saved, also with a frozen encoder or LoRA. A saved classifier remembers which ones were new."""
    return sorted({k.rsplit(".", 1)[0] for k in info["missing_keys"]} | set(meta.get("new_modules", [])))


def _load_model(path: str, label_list, mode: str, lora: dict):
    """(model, label_list, mode): a fine-tuned classifier keeps its labels (and must match ``label_list``)."""
    require("transformers")
    from transformers import AutoModelForSequenceClassification as Auto
    meta = {}
    if os.path.isfile(os.path.join(path, META)):
        with open(os.path.join(path, META)) as f:
            meta = json.load(f)
    adapter = os.path.isfile(os.path.join(path, "adapter_config.json"))
    config = None if adapter else load_config(path)
    saved = meta.get("label_list")
    if saved is None and config is not None and any(a.endswith("ForSequenceClassification")
                                                    for a in config.architectures or []):
        saved = [config.id2label[i] for i in range(config.num_labels)]
    if saved is not None:
        if label_list is not None and list(label_list) != list(saved):
            raise ValueError(f"{path!r} was fine-tuned for {len(saved)} labels {saved}, but the data has "
                             f"{len(label_list)}: {list(label_list)}; start from its base model or use data with "
                             "the same labels in the same order")
        label_list = saved
    elif label_list is None:
        raise ValueError(f"{path!r} has no classification head yet; pass label_list= (e.g. load_text(...).label_list)")
    names = {"num_labels": len(label_list), "id2label": dict(enumerate(label_list)),
             "label2id": {t: i for i, t in enumerate(label_list)}}
    if adapter:
        require("peft")
        from peft import PeftConfig, PeftModel
        base_path = PeftConfig.from_pretrained(path).base_model_name_or_path
        base, info = from_pretrained(Auto, base_path, **names, trust_remote_code=False)
        base.ftkit_new_modules = _new_modules(info, meta)  # restored from the adapter's modules_to_save
        return PeftModel.from_pretrained(base, path, is_trainable=True), list(label_list), "lora"
    model, info = from_pretrained(Auto, path, **names, trust_remote_code=False)
    new = _new_modules(info, meta)
    mode = meta.get("mode", mode) if saved is not None and mode == "full" else mode
    return apply_mode(model, mode, new_modules=new, **lora), list(label_list), mode


class SentenceClassifier:
    """Model + tokenizer + label list: ``encode`` sentences, ``fit_args`` for ``fit``, ``predict``, ``save``."""

    def __init__(self, model, tokenizer, label_list: list[str], max_length: int = 128, mode: str = "full"):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        check_head_and_length(base.config, tokenizer, label_list, max_length, "tokens")
        self.model, self.tokenizer, self.label_list = model, tokenizer, list(label_list)
        self.max_length, self.mode = max_length, check_mode(mode)

    @classmethod
    def from_pretrained(cls, model_name_or_path, label_list: list[str] | None = None, *, mode: str = "full",
                        max_length: int | None = None, lora_r: int = 8, lora_alpha: float = 16,
                        lora_dropout: float = 0.1, target_modules=None):
        """A Hub id or folder: a base encoder gets a fresh head for ``label_list``; a saved classifier (full, head
        or LoRA) comes back with its labels, mode and weights. The tokenizer loads first, so a folder without
        one fails before any weight is read."""
        path = os.fspath(model_name_or_path)
        check_mode(mode)
        tokenizer = load_tokenizer(path)
        lora = {"r": lora_r, "alpha": lora_alpha, "dropout": lora_dropout, "target_modules": target_modules}
        model, label_list, mode = _load_model(path, label_list, mode, lora)
        meta = os.path.join(path, META)
        if max_length is None and os.path.isfile(meta):
            with open(meta) as f:
                max_length = json.load(f).get("max_length")
        return cls(model, tokenizer, label_list, 128 if max_length is None else max_length, mode)

    def __repr__(self):
        return (f"SentenceClassifier({self.mode}, {type(self.model).__name__}, {count_trainable(self.model):,} of "
                f"{sum(p.numel() for p in self.model.parameters()):,} parameters train, labels={self.label_list}, "
                f"max_length={self.max_length})")

    def parameter_table(self):
        return parameter_table(self.model)

    # ----------------------------------------------------------------------- data
    def encode(self, split: TextSplit | list[str], pairs: list[str] | None = None) -> EncodedText:
        """Token ids for a :class:`TextSplit` (or plain texts, label 0); cut sentences are counted and warned.

        A split whose ``label_list`` orders the same labels differently is mapped by name to this classifier's
        order (with a warning that says so); other labels fail."""
        if not isinstance(split, TextSplit):
            split = TextSplit(check_texts(split), [0] * len(split), pairs)
        check_texts(split.texts)
        if split.pairs is not None:
            check_texts(split.pairs)
        if split.pairs is not None and len(split.pairs) != len(split.texts):
            raise ValueError(f"{len(split.texts)} texts but {len(split.pairs)} pairs: give one second sentence per "
                             "text")
        labels = self._labels_by_name(split)
        if len(split) == 0:  # the tokenizer cannot take an empty batch
            return EncodedText([], 0, self.max_length, list(self.label_list), [])
        args = (split.texts,) if split.pairs is None else (split.texts, split.pairs)
        full = self.tokenizer(*args, truncation=False, verbose=False)["input_ids"]  # lengths before any cut
        cut = [i for i, ids in enumerate(full) if len(ids) > self.max_length]
        enc = self.tokenizer(*args, truncation=True, max_length=self.max_length)
        keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in enc]
        features = [{**{k: torch.tensor(enc[k][i]) for k in keys}, "labels": torch.tensor(y)}
                    for i, y in enumerate(labels)]
        if cut:
            warnings.warn(f"{len(cut)} of {len(split)} sentences are longer than max_length={self.max_length} "
                          f"tokens and were cut (first: sentence {cut[0] + 1}, {len(full[cut[0]])} tokens); raise "
                          "max_length to keep them whole", TruncationWarning, stacklevel=2)
        return EncodedText(features, len(cut), self.max_length, list(self.label_list), cut)

    def _labels_by_name(self, split: TextSplit) -> list[int]:
        names = split.label_list
        if names is None or list(names) == self.label_list:
            return list(split.labels)
        if sorted(names) != sorted(self.label_list):
            raise ValueError(f"the data's labels {list(names)} are not the classifier's {self.label_list}; build the "
                             "classifier with label_list=data.label_list (or from a model fine-tuned on these labels)")
        index = {name: i for i, name in enumerate(self.label_list)}
        warnings.warn(f"the data orders its labels {list(names)}, the classifier {self.label_list}: labels are mapped "
                      "by name (index i of the data is the classifier's index of the same name)", LabelOrderWarning,
                      stacklevel=3)
        return [index[names[y]] for y in split.labels]

    def loader(self, encoded: EncodedText, batch_size: int = 16, **options):
        return make_loader(encoded, batch_size, pad_id=self.tokenizer.pad_token_id or 0, **options)

    # ----------------------------------------------------------------------- training
    def recipe(self, **overrides):
        """This mode's :class:`~ftkit.nlp.recipe.Recipe` (:data:`ftkit.nlp.finetune.RECIPES`,
        :data:`~ftkit.nlp.finetune.COMMON`) with ``overrides``: AdamW over the trainable parameters, linear warmup
        then decay, gradient clipping; batches in random order for ``full`` and ``lora``, length-grouped for
        ``head`` (``sort_by_length``: what each mode measured best, see ``RECIPES``)."""
        return _ClassifierRecipe(**vars(recipe_for(self.mode, **overrides)))

    def fit_args(self, train_set: EncodedText, epochs: int = 1, *, val_set: EncodedText | None = None,
                 batch_size: int | None = None, lr: float | None = None, weight_decay: float | None = None,
                 warmup_ratio: float | None = None, grad_clip: float | None = None, sort_by_length: bool | None = None,
                 seed: int = 0) -> dict:
        """Keyword arguments for ``ftkit.fit`` / ``fit_live_async``: ``self.recipe(...).fit_args(self, ...)``, the
        accuracy metric included."""
        recipe = self.recipe(batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup_ratio=warmup_ratio,
                             grad_clip=grad_clip, sort_by_length=sort_by_length)
        return recipe.fit_args(self, train_set, epochs, val_set=val_set, seed=seed)

    # ----------------------------------------------------------------------- inference
    def _encode_for_prediction(self, texts, pairs) -> EncodedText:
        texts = check_texts([texts] if isinstance(texts, str) else texts)
        if pairs is not None:
            pairs = check_texts([pairs] if isinstance(pairs, str) else pairs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncationWarning)  # said below, in prediction terms
            encoded = self.encode(texts, pairs)
        if encoded.cut:
            warnings.warn(f"{len(encoded.cut)} of {len(texts)} texts are longer than max_length={self.max_length} "
                          f"tokens: only their start was read (first: text {encoded.cut[0] + 1}); the "
                          "predictions say so ('cut': True). Raise max_length (up to the model's limit) to read more",
                          TruncationWarning, stacklevel=3)
        return encoded

    def predict_proba(self, texts, pairs: list[str] | None = None, *, device="auto",
                      batch_size: int = 64) -> torch.Tensor:
        """Class probabilities ``(len(texts), n_labels)`` in the order of ``texts``. Empty or missing texts fail;
        texts longer than ``max_length`` tokens are cut, with a warning."""
        return self._proba(self._encode_for_prediction(texts, pairs), device, batch_size)

    def _proba(self, encoded: EncodedText, device, batch_size: int) -> torch.Tensor:
        batch_size = check_int("batch_size", batch_size, meaning=" (texts per forward pass)")
        if len(encoded) == 0:
            return torch.empty(0, len(self.label_list))
        loader = self.loader(encoded, batch_size, sort_by_length=True)
        logits = _predict(self.model, loader, device=get_device(device))
        out = torch.empty_like(logits)
        out[list(loader.sampler)] = logits
        return out.softmax(-1)

    def predict(self, texts, pairs: list[str] | None = None, *, device="auto", batch_size: int = 64) -> list[dict]:
        """Per text: the predicted ``label`` (a name from the model's own label list), its ``prob``, every class's
        probability in ``probs`` and whether the text was ``cut`` at ``max_length``. ``predict([])`` is ``[]``."""
        encoded = self._encode_for_prediction(texts, pairs)
        probs = self._proba(encoded, device, batch_size)
        cut = set(encoded.cut or ())
        return [{"label": self.label_list[int(row.argmax())], "prob": float(row.max()),
                 "probs": {name: float(q) for name, q in zip(self.label_list, row)}, "cut": i in cut}
                for i, row in enumerate(probs)]

    def save(self, folder) -> str:
        """One folder: weights (or the LoRA adapter with the head), tokenizer, ``ftkit_classifier.json`` and a
        ``config.json`` whose ``id2label``/``label2id`` name the labels, so transformers and peft show them (not
        ``LABEL_0``) whichever tool opens the folder."""
        save_folder(folder, self.model, self.tokenizer)  # checks first that folder is not a file
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        if hasattr(self.model, "get_base_model"):        # an adapter folder: peft writes no config of its own
            base.config.save_pretrained(folder)
        self._write_meta(folder, self.mode, list(getattr(base, "ftkit_new_modules", [])))
        return os.fspath(folder)

    def _write_meta(self, folder, mode: str, new_modules: list) -> None:
        with open(os.path.join(folder, META), "w") as f:
            json.dump({"label_list": self.label_list, "mode": mode, "max_length": self.max_length,
                       "new_modules": new_modules}, f, indent=1)

    def export_merged(self, folder) -> str:
        """A LoRA classifier as one plain transformers model: the adapters folded into the weights (W + BA·α/r),
        saved as safetensors with the labels in its config — ``AutoModelForSequenceClassification.from_pretrained
        (folder)`` opens it without peft, and it predicts what this classifier predicts. The classifier itself is
        left as it is (the merge runs on a copy). A full or head-only classifier is saved as it is."""
        import copy
        if not hasattr(self.model, "merge_and_unload"):
            return self.save(folder)
        check_save_folder(folder)
        merged = copy.deepcopy(self.model).merge_and_unload()
        os.makedirs(folder, exist_ok=True)
        merged.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        self._write_meta(folder, "full", [])
        return os.fspath(folder)

    def push_to_hub(self, repo_id: str, *, merged: bool = False, folder=None, private: bool = True,
                    token: str | None = None, commit_message: str = "ftkit: fine-tuned classifier") -> str:
        """Save (``merged=True``: :meth:`export_merged`) to ``folder`` (a temporary one by default), add a model
        card, and upload the folder to the Hugging Face Hub as ``repo_id`` (created if missing, private by default;
        ``token``: a write token, else ``huggingface-cli login``'s). Returns the folder that was uploaded."""
        import tempfile
        require("huggingface_hub", "nlp")
        from huggingface_hub import HfApi
        if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
            raise ValueError(f"repo_id must be 'user_or_org/name', got {repo_id!r}")
        folder = os.fspath(folder) if folder is not None else tempfile.mkdtemp(prefix="ftkit-hub-")
        (self.export_merged if merged else self.save)(folder)
        with open(os.path.join(folder, "README.md"), "w") as f:
            f.write(model_card(self, merged=merged))
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message)
        return folder


def model_card(clf, *, merged: bool = False) -> str:
    """A short model card: the labels, how it was fine-tuned, how to load it."""
    mode = "full" if merged else clf.mode
    load = ("from peft import AutoPeftModelForSequenceClassification\n"
            "model = AutoPeftModelForSequenceClassification.from_pretrained(REPO)") if mode == "lora" else (
            "from transformers import AutoModelForSequenceClassification\n"
            "model = AutoModelForSequenceClassification.from_pretrained(REPO)")
    return (f"---\nlibrary_name: {'peft' if mode == 'lora' else 'transformers'}\npipeline_tag: text-classification\n"
            f"tags: [ftkit]\n---\n# Sentence classifier (ftkit)\n\nLabels: {', '.join(clf.label_list)}. "
            f"Fine-tuned with ftkit ({clf.mode}{', adapters merged' if merged and clf.mode == 'lora' else ''}), "
            f"max_length {clf.max_length}.\n\n```python\n{load}\n```\n")

