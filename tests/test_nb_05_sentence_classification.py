"""notebooks/05_sentence_classification.ipynb under papermill: a tiny offline BERT on fixture-written TSV files."""
from pathlib import Path

import pytest

from ftkit.data import shipped
from ftkit.nlp.tiny import build_tiny_bert
from test_classify import keyword_split

SAMPLE = shipped("conll2003_sample")

pytestmark = pytest.mark.notebook


def write_tsv(path, split):
    names = ["negative", "positive"]
    path.write_text("sentence\tlabel\n" + "".join(f"{t}\t{names[y]}\n" for t, y in zip(split.texts, split.labels)))


def test_sentence_classification_notebook(run_notebook, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel's torch: a 64-wide BERT is faster on one thread
    tiny = build_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert", SAMPLE)
    data_dir = tmp_path_factory.mktemp("sentiment")
    for name, (n, seed) in {"train": (192, 0), "dev": (48, 1), "test": (64, 2)}.items():
        write_tsv(data_dir / f"{name}.tsv", keyword_split(n, seed))
    m = run_notebook("05_sentence_classification.ipynb", model_name_or_path=str(tiny), data_dir=str(data_dir),
                     dataset=None, epochs=4, batch_size=16, lr=3e-3, head_lr=1e-2, lora_lr=5e-2,
                     max_length=32, device="cpu", dashboard=False, ddp_max_steps=4)
    assert (m["n_train"], m["n_dev"], m["n_test"]) == (192, 48, 64) and m["labels"] == ["negative", "positive"]
    assert set(m["modes"]) == {"full", "head", "lora"} and m["accuracy"] == m["modes"]["full"]["accuracy"]
    full, head, lora = (m["modes"][k] for k in ("full", "head", "lora"))
    # learned: chance is 0.5 on this balanced keyword task
    assert full["accuracy"] > 0.85 and lora["accuracy"] > 0.7, (full["accuracy"], lora["accuracy"])
    assert head["trainable_params"] < lora["trainable_params"] < full["trainable_params"]
    assert lora["folder_mb"] < full["folder_mb"]
    assert all(r["reload_max_diff"] < 1e-5 for r in m["modes"].values())
    assert all(0 <= r["macro_f1"] <= 1 and r["train_time_s"] > 0 for r in m["modes"].values())
    assert set(full["per_class"]) == {"negative", "positive"}
    assert len(full["val_accuracy_per_epoch"]) == 4
    ddp = m["ddp"]   # the "on several GPUs" section: 2 gloo processes, 4 steps of the first mode
    assert (ddp["processes"], ddp["steps"]) == (2, 4) and 0 <= ddp["val_accuracy"] <= 1
    probs = m["predictions"]["full"][0]["probs"]
    assert sum(probs.values()) == pytest.approx(1)
