"""ftkit.nlp's Hugging Face loading: a model folder's own code never runs (``trust_remote_code=False``), whichever
ftkit class loads it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ftkit.nlp.classify import SentenceClassifier
from ftkit.nlp.ner import NerTagger

LOADERS = {   # ftkit class, the Auto class a folder's auto_map may redirect, a real class to hide behind
    "classify": (SentenceClassifier, ["negative", "positive"], "AutoModelForSequenceClassification",
                 "BertForSequenceClassification"),
    "ner": (NerTagger, ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"],
            "AutoModelForTokenClassification", "BertForTokenClassification"),
}


@pytest.mark.parametrize("kind", LOADERS)
def test_code_in_a_model_folder_never_runs(tiny_bert, tmp_path, kind):
    cls, labels, auto, real = LOADERS[kind]
    folder = Path(shutil.copytree(tiny_bert, tmp_path / "remote"))
    marker = tmp_path / "code_ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                    f"from transformers import {real} as EvilModel\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {auto: "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    loaded = cls.from_pretrained(folder, labels)
    assert type(loaded.model).__module__.startswith("transformers.models.bert")
    assert not marker.exists()
