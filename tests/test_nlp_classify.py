"""ftkit.nlp.classify / ftkit.nlp.finetune: encoding, modes and their parameter counts, scores, training, save/reload."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import ftkit
from ftkit.data import cifar10 as C, shipped
from ftkit.data.text import TextSplit
from ftkit.nlp.classify import evaluate_classifier, scores_from_confusion, SentenceClassifier
from ftkit.nlp.finetune import lora_targets, parameter_table
from ftkit.nlp.hf import TruncationWarning
from ftkit.params import count_trainable

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = shipped("conll2003_sample")
LABELS = ["negative", "positive"]
GOOD, BAD = ["good", "great", "fine", "nice"], ["bad", "awful", "poor", "weak"]
THINGS = ["film", "plot", "cast", "match", "game", "team", "speech", "market"]


def keyword_split(n: int, seed: int) -> TextSplit:
    """'the plot was great' (positive) / 'the game was awful' (negative): learnable from one word."""
    g = torch.Generator().manual_seed(seed)
    texts, labels = [], []
    for _ in range(n):
        y, thing, word = (int(torch.randint(k, (1,), generator=g)) for k in (2, len(THINGS), 4))
        texts.append(f"the {THINGS[thing]} was {(GOOD if y else BAD)[word]}")
        labels.append(y)
    return TextSplit(texts, labels)


@pytest.fixture
def tiny(tiny_bert):
    return tiny_bert          # conftest's: one tiny BERT per session



def test_encode_pads_dynamically_and_counts_cut_sentences(tiny):
    clf = SentenceClassifier.from_pretrained(tiny, LABELS, max_length=8)
    split = TextSplit(["a b", "a b c d e f g h i j", "c"], [0, 1, 0])  # one character = one token
    with pytest.warns(TruncationWarning, match=r"1 of 3 sentences are longer than max_length=8 tokens and were cut "
                                               r"\(first: sentence 2, 12 tokens\)"):
        enc = clf.encode(split)
    assert enc.n_truncated == 1 and enc.lengths == [4, 8, 3]
    batch = next(iter(clf.loader(enc, 3)))
    assert batch["input_ids"].shape == (3, 8) and batch["labels"].tolist() == [0, 1, 0]
    assert batch["attention_mask"].sum(1).tolist() == enc.lengths
    pair = clf.encode(TextSplit(["a b"], [1], ["c"]))
    assert pair[0]["token_type_ids"].tolist() == [0, 0, 0, 0, 1, 1]  # [CLS] a b [SEP] c [SEP]


def test_modes_train_the_right_parameters(tiny):
    full = SentenceClassifier.from_pretrained(tiny, LABELS)
    total = sum(p.numel() for p in full.model.parameters())
    assert parameter_table(full.model).loc["total", "trainable"] == total

    # the classifier Linear(64 → 2) and the pooler Linear(64 → 64), which the tiny checkpoint lacks (random: trains)
    head = SentenceClassifier.from_pretrained(tiny, LABELS, mode="head")
    assert head.parameter_table().loc["total", "trainable"] == 130 + 4160
    assert {n for n, p in head.model.named_parameters() if p.requires_grad} == {
        "classifier.weight", "classifier.bias", "bert.pooler.dense.weight", "bert.pooler.dense.bias"}

    lora = SentenceClassifier.from_pretrained(tiny, LABELS, mode="lora", lora_r=4)
    table = lora.parameter_table()
    # r(d + k) per adapted 64x64 matrix; query and value in each of the 2 layers
    assert table.loc["LoRA A-B", "trainable"] == 4 * (64 + 64) * 2 * 2
    assert table.loc["head", "trainable"] == 4290 and table.loc["encoder", "trainable"] == 0
    assert table.loc["total", "trainable"] == count_trainable(lora.model) == 2048 + 4290
    assert table.loc["total", "trainable %"] == pytest.approx(100 * 6338 / table.loc["total", "total"], abs=1e-3)
    assert lora_targets(full.model) == ["query", "value"]


def test_scores_match_a_hand_computed_confusion_matrix():
    cm = torch.tensor([[5, 1, 0], [2, 3, 1], [0, 0, 0]])  # rows true, columns predicted
    s = scores_from_confusion(cm, ["a", "b", "c"])
    assert s["accuracy"] == pytest.approx(8 / 12)
    pa, ra = 5 / 7, 5 / 6
    pb, rb = 3 / 4, 3 / 6
    fa, fb = 2 * pa * ra / (pa + ra), 2 * pb * rb / (pb + rb)
    assert s["per_class"]["a"] == pytest.approx({"precision": pa, "recall": ra, "f1": fa, "support": 6})
    assert s["per_class"]["b"]["f1"] == pytest.approx(fb)
    assert s["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert s["macro_f1"] == pytest.approx((fa + fb + 0) / 3)


def test_fine_tuning_learns_and_reloads_to_the_same_logits(tiny, tmp_path):
    train, test = keyword_split(256, 0), keyword_split(64, 1)
    texts = ["the film was great", "the market was awful", "the team was fine"]
    logits = {}
    for mode, lr in (("full", 3e-3), ("lora", 3e-2)):  # a random tiny encoder: LoRA must move far
        ftkit.seed_everything(0)
        clf = SentenceClassifier.from_pretrained(tiny, LABELS, mode=mode, max_length=32)
        args = clf.fit_args(clf.encode(train), 6, val_set=clf.encode(test), lr=lr, batch_size=16)
        history = ftkit.fit(**args, device="cpu", progress=False)
        scores = evaluate_classifier(clf.model, clf.encode(test), LABELS, device="cpu")
        assert scores["accuracy"] > 0.9, (mode, scores["accuracy"], history["val_accuracy"])  # chance: 0.5
        assert history["val_accuracy"][-1] == pytest.approx(scores["accuracy"])
        assert [p["label"] for p in clf.predict(texts, device="cpu")] == ["positive", "negative", "positive"]
        clf.save(tmp_path / mode)
        again = SentenceClassifier.from_pretrained(tmp_path / mode)
        assert again.mode == mode and again.parameter_table().equals(clf.parameter_table())
        logits[mode] = torch.log(clf.predict_proba(texts, device="cpu")).tolist()
    assert (tmp_path / "lora" / "adapter_config.json").exists()
    assert not (tmp_path / "lora" / "model.safetensors").exists()  # the adapter (+ head) only, not the encoder
    code = ("import json, sys, torch; from ftkit.nlp.classify import SentenceClassifier as C; "
            f"t = {texts!r}; print(json.dumps({{m: torch.log(C.from_pretrained(sys.argv[1] + '/' + m)"
            ".predict_proba(t, device='cpu')).tolist() for m in ('full', 'lora')}))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    reloaded = json.loads(out.stdout.strip().splitlines()[-1])
    for mode in ("full", "lora"):
        assert torch.allclose(torch.tensor(reloaded[mode]), torch.tensor(logits[mode]), atol=1e-5), mode


def test_bad_input_gets_one_clear_error(tiny, tmp_path):
    with pytest.raises(ValueError, match="unknown mode 'adapters'; choose one of: full, head, lora"):
        SentenceClassifier.from_pretrained(tiny, LABELS, mode="adapters")
    with pytest.raises(ValueError, match=r"LoRA target 'q_proj' matches no linear layer of this bert; candidates: "
                                         r"dense, key, query, value"):
        SentenceClassifier.from_pretrained(tiny, LABELS, mode="lora", target_modules=["q_proj"])
    no_tok = tmp_path / "weights_only"
    no_tok.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(tiny) / name, no_tok / name)
    with pytest.raises(FileNotFoundError, match=r"weights_only' has no tokenizer"):
        SentenceClassifier.from_pretrained(no_tok, LABELS)
    with pytest.raises(ValueError, match="has no classification head yet; pass label_list="):
        SentenceClassifier.from_pretrained(tiny)
    SentenceClassifier.from_pretrained(tiny, LABELS).save(tmp_path / "two")
    with pytest.raises(ValueError, match=r"fine-tuned for 2 labels \['negative', 'positive'\], but the data has 3"):
        SentenceClassifier.from_pretrained(tmp_path / "two", ["a", "b", "c"])
    with pytest.raises(ValueError, match="max_length=1024 is more than the 512 positions"):
        SentenceClassifier.from_pretrained(tiny, LABELS, max_length=1024)


@pytest.mark.parametrize("kind", ["distilbert", "deberta-v2"])
def test_lora_saves_every_head_module(tiny, tmp_path, kind):
    """Heads with other names than BERT's: DistilBERT's ``pre_classifier`` + ``classifier``, DeBERTa-v2's
    ``pooler`` + ``classifier``. peft saves on its own only modules whose name ends in ``classifier`` or
    ``score``: a ``pooler`` survives a reload only if the kit puts it in ``modules_to_save``."""
    from safetensors.torch import load_file
    from transformers import DebertaV2Config, DebertaV2Model, DistilBertConfig, DistilBertModel
    from ftkit.nlp.finetune import head_modules
    from ftkit.nlp.hf import load_tokenizer
    base = tmp_path / kind
    torch.manual_seed(0)
    if kind == "distilbert":
        DistilBertModel(DistilBertConfig(vocab_size=1000, dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                                         max_position_embeddings=64, pad_token_id=0)).save_pretrained(base)
        targets, head = ["q_lin", "v_lin"], {"pre_classifier", "classifier"}
    else:
        DebertaV2Model(DebertaV2Config(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=64,
                                       pad_token_id=0)).save_pretrained(base)
        targets, head = None, {"pooler", "classifier"}  # peft's default targets: query_proj, value_proj
    load_tokenizer(tiny).save_pretrained(base)  # any WordPiece vocabulary of <= 1000 tokens will do
    clf = SentenceClassifier.from_pretrained(base, LABELS, mode="lora", max_length=16, target_modules=targets)
    inner = clf.model.get_base_model()
    assert set(head_modules(inner)) == head
    with torch.no_grad():  # stands in for training: every trainable tensor (head copies, LoRA A-B) moves
        g = torch.Generator().manual_seed(1)
        for p in clf.model.parameters():
            if p.requires_grad:
                p.add_(0.5 * torch.randn(p.shape, generator=g))
    texts = ["the film was great", "the match was awful"]
    before = clf.predict_proba(texts, device="cpu")
    clf.save(tmp_path / "saved")
    saved = load_file(tmp_path / "saved" / "adapter_model.safetensors")
    for name in head:  # every module the kit treats as head is in the adapter file
        assert any(k.startswith(f"base_model.model.{name}.") for k in saved), (name, sorted(saved)[:5])
    torch.manual_seed(123)  # a head re-initialized at reload would come out different
    again = SentenceClassifier.from_pretrained(tmp_path / "saved")
    assert torch.allclose(again.predict_proba(texts, device="cpu"), before, atol=1e-6)


# --------------------------------------------------------------------------- exports other tools open (issue 34)
def _moved(clf, seed=1):
    """Stands in for training: every trainable tensor (head, LoRA A-B) moves, so a lost piece shows."""
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        for p in clf.model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return clf


def test_a_lora_save_names_its_labels_for_transformers_and_peft(tiny, tmp_path):
    from peft import AutoPeftModelForSequenceClassification
    from transformers import AutoConfig
    clf = _moved(SentenceClassifier.from_pretrained(tiny, LABELS, mode="lora", max_length=16))
    clf.save(tmp_path / "lora")
    assert AutoConfig.from_pretrained(tmp_path / "lora").id2label == {0: "negative", 1: "positive"}
    opened = AutoPeftModelForSequenceClassification.from_pretrained(tmp_path / "lora")
    texts = ["the film was great", "the match was awful"]
    enc = clf.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = clf.model.eval()(**enc).logits
        assert torch.allclose(opened.eval()(**enc).logits, expected, atol=1e-5)


def test_merged_export_opens_without_peft_with_label_names_and_the_same_predictions(tiny, tmp_path):
    from transformers import AutoModelForSequenceClassification
    clf = _moved(SentenceClassifier.from_pretrained(tiny, LABELS, mode="lora", max_length=16))
    texts = ["the film was great", "the match was awful", "the cast was weak"]
    before = clf.predict_proba(texts, device="cpu")
    clf.export_merged(tmp_path / "merged")
    files = {p.name for p in (tmp_path / "merged").iterdir()}
    assert "model.safetensors" in files and "adapter_config.json" not in files
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    assert plain.config.id2label == {0: "negative", 1: "positive"}
    assert not any("lora" in name for name, _ in plain.named_parameters())
    enc = clf.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.allclose(plain(**enc).logits.softmax(-1), before, atol=1e-5)
    assert torch.allclose(clf.predict_proba(texts, device="cpu"), before)          # the classifier is untouched
    again = SentenceClassifier.from_pretrained(tmp_path / "merged")               # ftkit reopens it as a full model
    assert again.mode == "full" and torch.allclose(again.predict_proba(texts, device="cpu"), before, atol=1e-5)


def test_push_to_hub_uploads_the_saved_folder_with_a_model_card(tiny, tmp_path, monkeypatch):
    import huggingface_hub
    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo",
                        lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder",
                        lambda self, **kw: calls.append(("upload", kw["repo_id"], sorted(
                            p.name for p in Path(kw["folder_path"]).iterdir()))))
    clf = SentenceClassifier.from_pretrained(tiny, LABELS, mode="lora", max_length=16)
    folder = clf.push_to_hub("me/sentiment", merged=True, folder=tmp_path / "hub")
    assert calls[0] == ("create", "me/sentiment", {"private": True, "exist_ok": True})
    assert calls[1][:2] == ("upload", "me/sentiment") and {"README.md", "config.json", "model.safetensors"} <= set(
        calls[1][2])
    card = (Path(folder) / "README.md").read_text()
    assert "Labels: negative, positive" in card and "AutoModelForSequenceClassification" in card
    with pytest.raises(ValueError, match=r"repo_id must be 'user_or_org/name', got 'sentiment'"):
        clf.push_to_hub("sentiment", folder=tmp_path / "x")


def test_model_checkpoint_writes_the_best_hugging_face_model_as_a_folder(tiny, tmp_path):
    from transformers import AutoModelForSequenceClassification
    from ftkit.train.callbacks import ModelCheckpoint
    clf = SentenceClassifier.from_pretrained(tiny, LABELS, max_length=32)
    train = clf.encode(keyword_split(64, 0))
    ckpt = ModelCheckpoint(tmp_path / "ckpt", monitor="train_loss")
    model = clf.model
    ftkit.fit(model, clf.loader(train, 16), "cross_entropy", ftkit.make_optimizer("adamw", model, lr=1e-3), epochs=1,
              callbacks=[ckpt], progress=False)
    best = AutoModelForSequenceClassification.from_pretrained(ckpt.best_folder).eval()
    assert best.config.id2label == {0: "negative", 1: "positive"}
    assert (Path(ckpt.best_folder) / "model.safetensors").is_file()
    enc = clf.tokenizer(["the plot was great"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(best(**enc).logits, model.eval()(**enc).logits, atol=1e-6)


DATA_LABELS = ["negative", "positive"]


def test_labels_in_another_order_are_mapped_by_name(tiny):
    from ftkit.nlp.classify import LabelOrderWarning, SentenceClassifier
    split = TextSplit(["the film was great", "the plot was awful"], [1, 0], label_list=DATA_LABELS)
    clf = SentenceClassifier.from_pretrained(tiny, ["positive", "negative"])
    with pytest.warns(LabelOrderWarning, match=r"the data orders its labels \['negative', 'positive'\], the "
                                               r"classifier \['positive', 'negative'\]: labels are mapped by name"):
        enc = clf.encode(split)
    # the bug: 'great' was labelled 1, which is 'negative' for this classifier
    assert [clf.label_list[int(y)] for y in enc.labels] == ["positive", "negative"]
    from ftkit.nlp.classify import evaluate_classifier
    with pytest.raises(ValueError, match=r"label_list \['negative', 'positive'\] is not the order these sentences "
                                         r"were encoded with"):
        evaluate_classifier(clf.model, enc, DATA_LABELS, device="cpu")
    with pytest.raises(ValueError, match=r"the data's labels \['a', 'b'\] are not the classifier's"):
        clf.encode(TextSplit(["x y"], [0], label_list=["a", "b"]))


def test_a_head_that_names_its_labels_refuses_another_order(tiny, tmp_path):
    from ftkit.nlp.classify import SentenceClassifier
    clf = SentenceClassifier.from_pretrained(tiny, DATA_LABELS, max_length=16)
    clf.save(tmp_path / "clf")
    again = SentenceClassifier.from_pretrained(tmp_path / "clf")
    assert again.label_list == DATA_LABELS and again.max_length == 16
    assert set(again.predict(["the film was great"], device="cpu")[0]["probs"]) == set(DATA_LABELS)
    with pytest.raises(ValueError, match=r"fine-tuned for 2 labels \['negative', 'positive'\].*same order"):
        SentenceClassifier.from_pretrained(tmp_path / "clf", ["positive", "negative"])
    with pytest.raises(ValueError, match=r"the model's head names its outputs \['negative', 'positive'\].*but "
                                         r"label_list is \['positive', 'negative'\]"):
        SentenceClassifier(again.model, again.tokenizer, ["positive", "negative"])


def test_predict_texts_are_checked(tiny):
    from ftkit.nlp.classify import SentenceClassifier
    from ftkit.nlp.hf import TruncationWarning
    clf = SentenceClassifier.from_pretrained(tiny, DATA_LABELS, max_length=16)
    with pytest.raises(ValueError, match="text 1 of 1 is empty: there is nothing to classify"):
        clf.predict("")
    with pytest.raises(ValueError, match="text 2 of 2 is empty"):
        clf.predict(["a film", "   "])
    with pytest.raises(TypeError, match=r"text 1 of 1 is None \(NoneType\), not a string"):
        clf.predict([None])
    assert clf.predict([]) == [] and clf.predict_proba([]).shape == (0, 2)
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1"):
        clf.predict(["a film"], batch_size=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a notebook that silenced warnings still learns it from the result
        out = clf.predict(["great " * 2000, "a film"], device="cpu")
    assert [p["cut"] for p in out] == [True, False]
    with pytest.warns(TruncationWarning, match=r"1 of 1 texts are longer than max_length=16 tokens: only their "
                                               r"start was read"):
        clf.predict("the film was great " * 500, device="cpu")  # 10,000 characters
    with pytest.raises(ValueError, match=r"max_length must be a whole number >= 3 \(tokens per sentence"):
        SentenceClassifier.from_pretrained(tiny, DATA_LABELS, max_length=0)


def test_model_folders_are_named(tiny, tmp_path, monkeypatch):
    from ftkit.nlp.classify import SentenceClassifier
    from ftkit.nlp.hf import load_config
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in os.listdir(tiny):
        if f != "config.json":
            with open(os.path.join(tiny, f), "rb") as src:
                (bare / f).write_bytes(src.read())
    with pytest.raises(FileNotFoundError, match=r"bare' has no config.json \(it holds: .*model.safetensors"):
        SentenceClassifier.from_pretrained(bare, DATA_LABELS)
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_config(bare)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "distilbert").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no model folder at .*models/bert. \(its parent holds: distilbert\)"):
        load_config("models/bert")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="'weights.bin' is a file; a model is a folder"):
        load_config("weights.bin")


# --------------------------------------------------------------------------- neighbours
def test_neighbours_zero_sizes_seeds_and_replayed_values(tiny):
    from ftkit.data.text import load_text
    from ftkit.nlp.classify import SentenceClassifier
    from ftkit.train.replay import Replay
    with pytest.raises(ValueError, match=r"replay step 3: momentum must be in \[0, 1\), got 5"):
        Replay({3: {"momentum": 5}})
    with pytest.raises(ValueError, match="seed must be a whole number >= 0, got 'abc'"):
        C.load_cifar10("nowhere", seed="abc", download=False)
    with pytest.raises(ValueError, match="seed must be a whole number >= 0, got 'abc'"):
        load_text("nowhere", seed="abc")
    with pytest.raises(ValueError, match=r"val_fraction must be a number, got '0.1' \(a string"):
        load_text("nowhere", val_fraction="0.1")
    clf = SentenceClassifier.from_pretrained(tiny, DATA_LABELS, max_length=16)
    enc = clf.encode(TextSplit(["a film", "a plot"], [0, 1]))
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1, got 0"):
        clf.fit_args(enc, batch_size=0)  # 0 was taken for "not given" (the default, 16)
    with pytest.raises(ValueError, match=r"2 texts but 1 pairs"):
        clf.encode(TextSplit(["a", "b"], [0, 1], ["c"]))
