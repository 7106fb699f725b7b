"""ftkit.nlp.hf: loading and saving Hugging Face model folders."""
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


# --------------------------------------------------------------------------- Transformers: labels, texts, folders
@pytest.fixture
def tiny(tiny_bert):
    return tiny_bert          # conftest's: one tiny BERT per session


DATA_LABELS = ["negative", "positive"]


def test_save_onto_a_file_fails_before_writing(tiny, tmp_path):
    from ftkit.nlp.classify import SentenceClassifier
    from ftkit.nlp.ner import NerTagger
    target = tmp_path / "model"
    target.write_text("not a folder")
    clf = SentenceClassifier.from_pretrained(tiny, DATA_LABELS)
    with pytest.raises(FileExistsError, match=r"cannot save to '.*model': '.*model' is a file, and a saved model "
                                              r"is a folder"):
        clf.save(target)
    with pytest.raises(FileExistsError, match=r"is a file, and a saved model is a folder"):
        clf.save(target / "inner")
    with pytest.raises(FileExistsError, match="is a file"):
        NerTagger.from_pretrained(tiny, ["O", "B-PER"]).save(target)
    assert target.read_text() == "not a folder"
