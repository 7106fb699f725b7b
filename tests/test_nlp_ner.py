"""ftkit.nlp.ner: label alignment, truncation, batching, word-level scoring, training, save/load and bad input."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import ftkit
from ftkit.data import shipped
from ftkit.data.conll import load_conll, Sentence
from ftkit.nlp.hf import collate, LengthGroupedBatches, make_loader, TruncationWarning
from ftkit.nlp.ner import Encoded, entity_f1, entity_metrics, evaluate_ner, NerRecipe, NerTagger, words_from_tokens
from ftkit.plots.ner import highlight_html
from ftkit.schedules import make_scheduler

SAMPLE = shipped("conll2003_sample")
LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
ID = {t: i for i, t in enumerate(LABELS)}


@pytest.fixture
def tiny(tiny_bert):
    return tiny_bert          # conftest's: one tiny BERT per session


@pytest.fixture(scope="module")
def data():
    return load_conll(SAMPLE)


def test_tiny_bert_folder(tiny):
    config = json.loads((Path(tiny) / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["model_type"]) == (64, 2, "bert")
    assert {"tokenizer.json", "model.safetensors"} <= {p.name for p in Path(tiny).iterdir()}


def test_first_subword_carries_the_label(tiny):
    tagger = NerTagger.from_pretrained(tiny, LABELS)
    words = ["Angela", "Merkelstein", "visited", "Paris", "."]
    labels = ["B-PER", "I-PER", "O", "B-LOC", "O"]
    pieces = [tagger.tokenizer.tokenize(w) for w in words]
    assert len(pieces[1]) >= 3  # an unseen word: several subwords, so the test covers the -100 fill
    enc = tagger.encode([Sentence(words, labels)])
    expected = [-100] + [x for p, t in zip(pieces, labels) for x in [ID[t]] + [-100] * (len(p) - 1)] + [-100]
    assert enc[0]["labels"].tolist() == expected
    assert tagger.tokenizer.convert_ids_to_tokens(enc[0]["input_ids"]) == ["[CLS]", *sum(pieces, []), "[SEP]"]
    assert enc.n_truncated == 0


def test_truncation_is_counted_and_reported(tiny):
    tagger = NerTagger.from_pretrained(tiny, LABELS, max_length=16)
    long = Sentence(["Paris"] * 30, ["B-LOC"] * 30)
    short = Sentence(["in", "Oslo"], ["O", "B-LOC"])
    with pytest.warns(TruncationWarning, match=r"1 of 2 sentences are longer than max_length=16 subwords and were "
                                               r"cut \(first: sentence 1, 30 words\); their cut words are tagged 'O'"):
        enc = tagger.encode([long, short])
    assert enc.n_truncated == 1 and enc.lengths == [16, 4]
    assert enc.word_ids[0][-2] == 13  # [CLS] + 14 words + [SEP]: words 14..29 are cut


def test_words_from_tokens_uses_first_subwords_and_o_for_cut_words():
    #               [CLS] An     ##gela  Merkel   Par    ##is   [SEP]
    token_tags = ["O", "B-PER", "B-LOC", "I-PER", "O", "B-ORG", "O"]
    word_ids = [None, 0, 0, 1, 2, 2, None]
    assert words_from_tokens(token_tags, word_ids, n_words=4) == ["B-PER", "I-PER", "O", "O"]


def test_collate_pads_dynamically():
    feats = [{"input_ids": torch.tensor([2, 7, 3]), "attention_mask": torch.ones(3, dtype=torch.long),
              "labels": torch.tensor([-100, 1, -100])},
             {"input_ids": torch.tensor([2, 3]), "attention_mask": torch.ones(2, dtype=torch.long),
              "labels": torch.tensor([-100, -100])}]
    batch = collate(feats, pad_id=0)
    assert batch["input_ids"].tolist() == [[2, 7, 3], [2, 3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[-100, 1, -100], [-100, -100, -100]]


def test_length_sorted_batches_pad_less(tiny, data):
    tagger = NerTagger.from_pretrained(tiny, data.label_list)
    enc = tagger.encode(data.train)

    def padded_tokens(loader):
        seen, padded = [], 0
        for batch in loader:
            padded += batch["input_ids"].numel()
            seen += batch["attention_mask"].sum(1).tolist()
        assert sorted(seen) == sorted(enc.lengths)  # every sentence exactly once
        return padded

    real = sum(enc.lengths)
    plain = padded_tokens(make_loader(enc, 32, shuffle=True, seed=0))
    grouped = padded_tokens(make_loader(enc, 32, shuffle=True, sort_by_length=True, seed=0))
    assert grouped - real < 0.5 * (plain - real), (real, plain, grouped)  # less than half the padding
    first = [b["input_ids"].tolist() for b in make_loader(enc, 32, shuffle=True, sort_by_length=True, seed=3)]
    again = [b["input_ids"].tolist() for b in make_loader(enc, 32, shuffle=True, sort_by_length=True, seed=3)]
    assert first == again


class EchoModel(torch.nn.Module):
    """Predicts label ``input_ids[t]`` at token ``t``: lets a test choose every subword prediction."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(id2label=dict(enumerate(LABELS)))
        self.unused = torch.nn.Parameter(torch.zeros(()))

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return SimpleNamespace(logits=F.one_hot(input_ids, len(LABELS)).float())


def hand_case():
    """Three sentences; predictions on non-first subwords are wrong on purpose and must be ignored.

    true entities: PER(Angela Merkel), LOC(Paris), ORG(Siemens), LOC(Oslo)      → 4
    predicted:     PER(Angela Merkel) ✓, MISC(Siemens) ✗, LOC(Oslo) ✓            → 3
    P = 2/3, R = 2/4, F1 = 2PR/(P+R) = 4/7; per type F1: PER 1, LOC 2/3, ORG 0, MISC 0 → macro 5/12.
    """
    sentences = [Sentence(["Angela", "Merkel", "visited", "Paris"], ["B-PER", "I-PER", "O", "B-LOC"]),
                 Sentence(["Siemens", "said"], ["B-ORG", "O"]),
                 Sentence(["in", "Oslo"], ["O", "B-LOC"])]
    word_ids = [[None, 0, 0, 1, 2, 3, 3, None], [None, 0, 0, 1, None], [None, 0, 1, None]]
    token_preds = [["O", "B-PER", "B-LOC", "I-PER", "O", "O", "B-LOC", "O"],
                   ["O", "B-MISC", "B-ORG", "O", "O"],
                   ["O", "O", "B-LOC", "O"]]
    features = []
    for s, wids, preds in zip(sentences, word_ids, token_preds):
        labels = [-100 if w is None or w == p else ID[s.labels[w]] for w, p in zip(wids, [None] + wids[:-1])]
        features.append({"input_ids": torch.tensor([ID[t] for t in preds]),
                         "attention_mask": torch.ones(len(preds), dtype=torch.long), "labels": torch.tensor(labels)})
    return Encoded(sentences, features, word_ids, 0, 16)


def test_word_level_scores_match_hand_computed():
    result = evaluate_ner(EchoModel(), hand_case(), device="cpu", batch_size=2)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(1 / 2)
    assert result["f1"] == pytest.approx(4 / 7)
    assert result["macro_f1"] == pytest.approx(5 / 12)
    assert {t: r["f1"] for t, r in result["per_type"].items()} == pytest.approx(
        {"LOC": 2 / 3, "MISC": 0.0, "ORG": 0.0, "PER": 1.0})
    assert result["per_type"]["LOC"]["support"] == 2
    assert "micro avg" in result["report"]


def test_entity_f1_metric_sums_exactly_over_batches():
    enc = hand_case()
    metric = entity_f1(LABELS)
    total = count = 0
    for batch in make_loader(enc, batch_size=2):  # two batches: (2·1, 2+3) and (2·1, 1+1)
        outputs = F.one_hot(batch["input_ids"], len(LABELS)).float()
        t, c = metric(outputs, batch["labels"])
        total, count = total + t, count + c
    assert (int(total), int(count)) == (4, 7)  # 2·TP / (n_pred + n_true) = 4/7, as seqeval says above


def test_entity_metrics_give_exact_precision_and_recall():
    sums = {}
    for batch in make_loader(hand_case(), batch_size=2):
        outputs = F.one_hot(batch["input_ids"], len(LABELS)).float()
        for metric in entity_metrics(LABELS):
            t, c = metric(outputs, batch["labels"])
            sums[metric.__name__] = tuple(a + int(b) for a, b in zip(sums.get(metric.__name__, (0, 0)), (t, c)))
    assert sums == {"precision": (2, 3), "recall": (2, 4), "f1": (4, 7)}  # P 2/3, R 1/2 as seqeval says above


def test_length_grouped_batches_are_shuffled_and_pad_little():
    rng = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 60, (1000,), generator=rng).tolist()
    sampler = LengthGroupedBatches(lengths, 16, seed=0)
    epoch1, epoch2 = list(sampler), list(sampler)
    assert len(epoch1) == len(sampler) == 63 and sorted(sum(epoch1, [])) == list(range(1000))  # each once
    assert sum(len(b) < 16 for b in epoch1) == 1 and epoch1 != epoch2  # one short batch; a new order per epoch
    assert list(LengthGroupedBatches(lengths, 16, seed=0)) == epoch1  # seeded
    padded = sum(len(b) * max(lengths[i] for i in b) for b in epoch1)
    assert padded < 1.1 * sum(lengths)  # batches of 16 random lengths in 5..59 pad ~75 %
    # HF's sampler runs long -> short inside each mega-batch; shuffled batches do not: max lengths not sorted
    maxima = [max(lengths[i] for i in b) for b in epoch1[:15]]
    assert maxima != sorted(maxima, reverse=True)


def test_recipe_defaults_and_fit_args(tiny, data):
    recipe = NerRecipe()
    assert (recipe.lr, recipe.head_lr_mult, recipe.batch_size, recipe.grad_clip) == (5e-5, 10.0, 16, 1.0)
    assert (recipe.warmup_ratio, recipe.weight_decay, recipe.sort_by_length, recipe.fused) == (0.0, 0.0, False, True)
    tagger = NerTagger.from_pretrained(tiny, data.label_list, max_length=64)
    args = NerRecipe(lr=1e-3, warmup_ratio=0.25, weight_decay=0.01).fit_args(tagger, tagger.encode(data.train[:64]),
                                                                              epochs=2)
    assert args["grad_clip"] == 1.0 and args["loss"] is None and args["epochs"] == 2 and args["model"] is tagger.model
    groups = args["optimizer"].param_groups  # encoder and head, each decayed weights + undecayed biases/norms
    head = {id(p) for p in tagger.model.classifier.parameters()}
    assert [(g["lr"], g["weight_decay"], any(id(p) in head for p in g["params"])) for g in groups] == [
        (1e-3, 0.01, False), (1e-3, 0.0, False), (1e-2, 0.01, True), (1e-2, 0.0, True)]
    assert sum(len(g["params"]) for g in groups) == len(list(tagger.model.parameters()))
    assert len(args["train_loader"]) == 4 and [len(b["labels"]) for b in args["train_loader"]] == [16] * 4
    # the schedule is a (name, options) pair that fit builds for its real step count: 4 batches x 2 epochs = 8
    name, options = args["scheduler"]
    scheduler = make_scheduler(name, args["optimizer"], total_steps=len(args["train_loader"]) * 2, **options)
    lrs = []
    for _ in range(8):  # 8 steps: 2 of warmup, then linear decay to 0
        lrs.append(args["optimizer"].param_groups[0]["lr"])
        args["optimizer"].step()
        scheduler.step()
    assert lrs == pytest.approx([5e-4, 1e-3, 1e-3, 5e-3 / 6, 4e-3 / 6, 3e-3 / 6, 2e-3 / 6, 1e-3 / 6])



def test_fine_tuning_learns_and_round_trips(tiny, data, tmp_path):
    ftkit.seed_everything(0)
    tagger = NerTagger.from_pretrained(tiny, data.label_list, max_length=64)
    train, test = tagger.encode(data.train), tagger.encode(data.test)
    # a randomly initialized model: one big lr for all (no pre-trained encoder to protect)
    recipe = NerRecipe(lr=5e-3, head_lr_mult=1.0, batch_size=32, warmup_ratio=0.1, sort_by_length=True)
    history = ftkit.fit(**recipe.fit_args(tagger, train, 3), device="cpu", progress=False,
                        val_loader=tagger.loader(tagger.encode(data.valid), 64),
                        metrics=entity_metrics(data.label_list))
    assert history["train_loss"][-1] < 0.2 * history["train_loss"][0]
    for p, r, f1 in zip(history["val_precision"], history["val_recall"], history["val_f1"]):  # per-epoch table
        assert f1 == pytest.approx(2 * p * r / (p + r))
    assert history["val_f1"][-1] > history["val_f1"][0]
    before = evaluate_ner(tagger.model, test, device="cpu")
    assert before["f1"] > 0.6, before["report"]  # a model that never learned scores ~0 (random tags)

    folder = tagger.save(tmp_path / "ner")
    shuffled = list(reversed(data.label_list))
    with pytest.warns(UserWarning, match="tags are mapped by name .* pass tagger.label_list"):
        loaded = NerTagger.from_pretrained(folder, label_list=shuffled, max_length=64)
    assert loaded.label_list == data.label_list  # a fine-tuned head keeps its own label order
    after = evaluate_ner(loaded.model, loaded.encode(data.test), device="cpu")
    assert after["f1"] == before["f1"]
    texts = ["Angela Merkel visited Paris .", "Shares in Siemens rose 5 percent ."]
    assert loaded.predict(texts, device="cpu") == tagger.predict(texts, device="cpu")


def test_predict_returns_word_entities_and_html():
    class Fixed(NerTagger):
        def tag(self, texts, *, device="auto"):
            return [["B-PER", "I-PER", "O", "B-LOC", "O"]]
    tagger = Fixed.__new__(Fixed)
    ents = tagger.predict(["Angela Merkel visited Paris ."])
    assert ents == [[{"type": "PER", "text": "Angela Merkel", "start": 0, "end": 2},
                     {"type": "LOC", "text": "Paris", "start": 3, "end": 4}]]
    page = highlight_html("Angela Merkel visited <Paris> .", ents[0])
    assert page.count("<mark") == 2 and "&lt;Paris&gt;" in page and "visited" in page


def test_bad_model_folders(tiny, tmp_path):
    no_tok = tmp_path / "weights_only"
    no_tok.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(tiny) / name, no_tok / name)
    with pytest.raises(FileNotFoundError, match=r"weights_only' has no tokenizer \(none of tokenizer\.json, vocab"):
        NerTagger.from_pretrained(no_tok, LABELS)
    with pytest.raises(FileNotFoundError, match=r"no model folder at .*nowhere' \(its parent holds: .*\); build a "
                                                r"small one offline"):
        NerTagger.from_pretrained(str(tmp_path / "nowhere"), LABELS)

    tagger = NerTagger.from_pretrained(tiny, LABELS)
    tagger.save(tmp_path / "nine")
    with pytest.raises(ValueError, match=r"fine-tuned for 9 labels .* but the data has 3: \['O', 'B-PER', 'I-PER'\]"):
        NerTagger.from_pretrained(tmp_path / "nine", ["O", "B-PER", "I-PER"])
    with pytest.raises(ValueError, match="has no NER head yet; pass label_list="):
        NerTagger.from_pretrained(tiny)
    with pytest.raises(ValueError, match="the model has 9 output labels but label_list has 2"):
        NerTagger(tagger.model, tagger.tokenizer, ["O", "B-PER"])
    with pytest.raises(ValueError, match="max_length=1024 is more than the 512 positions the model has"):
        NerTagger(tagger.model, tagger.tokenizer, LABELS, max_length=1024)
    with pytest.raises(ValueError, match=r"labels \['B-DATE'\] are not among the model's labels"):
        tagger.encode([Sentence(["June"], ["B-DATE"])])


def test_ner_head_that_names_its_labels_refuses_another_order(tiny, tmp_path):
    from ftkit.nlp.ner import NerTagger
    labels = ["O", "B-PER", "I-PER"]
    tagger = NerTagger.from_pretrained(tiny, labels)
    tagger.save(tmp_path / "ner")
    with pytest.warns(UserWarning, match=r"orders its labels \['O', 'B-PER', 'I-PER'\], the data .*mapped by name"):
        again = NerTagger.from_pretrained(tmp_path / "ner", ["B-PER", "I-PER", "O"])
    assert again.label_list == labels
    with pytest.raises(ValueError, match="the model's head names its outputs"):
        NerTagger(again.model, again.tokenizer, ["B-PER", "I-PER", "O"])


def test_ner_max_length_empty_split_and_none_text(tiny):
    from ftkit.nlp.ner import Encoded, NerTagger, evaluate_ner
    with pytest.raises(ValueError, match=r"max_length must be a whole number >= 3"):
        NerTagger.from_pretrained(tiny, ["O", "B-PER"], max_length=0)
    tagger = NerTagger.from_pretrained(tiny, ["O", "B-PER"])
    with pytest.raises(ValueError, match=r"evaluate_ner got no sentences \(an empty split\)"):
        evaluate_ner(tagger.model, tagger.encode([]), device="cpu")
    with pytest.raises(TypeError, match="text 2 of 2 is None.*not a string or a list of words"):
        tagger.tag(["Angela visited", None], device="cpu")


def test_tagger_takes_one_string_as_one_text(tmp_path):
    from pathlib import Path
    from ftkit.data.conll import load_conll
    from ftkit.nlp.ner import NerTagger
    from ftkit.nlp.tiny import build_tiny_bert
    sample = shipped("conll2003_sample")
    tagger = NerTagger.from_pretrained(build_tiny_bert(tmp_path / "bert", sample), load_conll(sample).label_list)
    text = "Angela Merkel visited Paris ."
    assert len(tagger.tag(text)) == 5 and tagger.tag(text) == tagger.tag([text])[0]
    assert tagger.predict(text) == tagger.predict([text])[0]
