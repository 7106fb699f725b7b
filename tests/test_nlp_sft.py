"""ftkit.nlp.sft / causal and the shipped instruction set, on a tiny random Llama built offline (no download)."""
from __future__ import annotations

import re

import pytest
import torch

import ftkit
from ftkit.core import IGNORE
from ftkit.data import shipped
from ftkit.data.instructions import exact_match, exact_match_by_task, load_instructions, make_instructions, \
    write_instructions
from ftkit.nlp import sft
from ftkit.nlp.causal import build_tiny_causal_lm, folder_size_mb, generate, load_causal_lm
from ftkit.nlp.hf import make_loader

TRAIN, TEST = load_instructions()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    texts = [e["prompt"] + " " + e["completion"] for e in TRAIN] + ["user assistant system"]
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "llama", texts)



@pytest.fixture
def lm(tiny):
    return load_causal_lm(tiny)


# --------------------------------------------------------------------------- the instruction set
def test_the_shipped_set_is_what_the_generator_writes_and_test_is_disjoint(tmp_path):
    write_instructions(tmp_path)
    for name in ("train", "test"):
        assert (tmp_path / f"{name}.jsonl").read_text() == (shipped("instructions") / f"{name}.jsonl").read_text()
    assert (len(TRAIN), len(TEST)) == (600, 200)
    assert not {e["prompt"] for e in TRAIN} & {e["prompt"] for e in TEST}
    assert {e["task"] for e in TRAIN} == {"arithmetic", "formatting", "extraction"}
    assert make_instructions(5, seed=3) == make_instructions(5, seed=3) != make_instructions(5, seed=4)


def test_the_answers_are_right():
    for e in make_instructions(90, seed=7):
        p, c = e["prompt"], e["completion"]
        if p.startswith("Write in capital letters: "):
            assert c == p.split(": ")[1].upper()
        elif p.startswith("Sort these numbers"):
            assert c == ", ".join(map(str, sorted(int(x) for x in p.split(": ")[1].split(", "))))
        elif e["task"] == "arithmetic":
            a, op, b = re.search(r"(\d+) ([-+x]) (\d+)", p).groups()
            assert int(c) == {"+": int(a) + int(b), "-": int(a) - int(b), "x": int(a) * int(b)}[op]
        elif "email" in p:
            assert c in p and "@" in c


def test_exact_match_strips_spaces_but_not_case():
    assert exact_match(["85", " RIVER ", "river"], ["85", "RIVER", "RIVER"]) == pytest.approx(2 / 3)
    by = exact_match_by_task(["1", "x"], [{"completion": "1", "task": "a"}, {"completion": "y", "task": "b"}])
    assert by == {"a": 1.0, "b": 0.0, "all": 0.5}
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        exact_match(["a", "b"], ["a"])


# --------------------------------------------------------------------------- formatting and the mask
def test_labels_are_minus_100_on_the_prompt_and_count_only_the_reply(lm):
    model, tok = lm
    data = sft.encode(tok, TRAIN[:20], max_length=128)
    for ex, f in zip(TRAIN[:20], data.features):
        head, tail = sft.split_example(tok, ex)
        n_prompt = len(tok(head, add_special_tokens=False)["input_ids"])
        assert (f["labels"][:n_prompt] == IGNORE).all() and (f["labels"][n_prompt:] == f["input_ids"][n_prompt:]).all()
        assert tok.decode(f["input_ids"][n_prompt:]) == ex["completion"] + "<|im_end|>\n"
    assert data.trained_tokens == data.completion_tokens                    # masked: the replies, counted
    table = sft.token_table(tok, data[0])
    assert table["trained"].sum() == int((data[0]["labels"] != IGNORE).sum())
    assert "".join(table[table.trained].token) == TRAIN[0]["completion"] + "<|im_end|>\n"
    unmasked = sft.encode(tok, TRAIN[:20], max_length=128, mask_prompt=False)
    assert unmasked.trained_tokens == data.prompt_tokens + data.completion_tokens - 20   # all but position 0


def test_the_masked_loss_is_the_models_own_loss_and_differs_from_the_unmasked(lm):
    model, tok = lm
    masked = next(iter(make_loader(sft.encode(tok, TRAIN[:8]), 8, pad_id=tok.pad_token_id)))
    full = next(iter(make_loader(sft.encode(tok, TRAIN[:8], mask_prompt=False), 8, pad_id=tok.pad_token_id)))
    out = model(**masked)
    assert sft.sft_loss(out.logits, masked["labels"]).item() == pytest.approx(out.loss.item(), rel=1e-5)
    logp = torch.log_softmax(out.logits[:, :-1].float(), -1)
    y = masked["labels"][:, 1:]
    keep = y != IGNORE   # by hand: the mean of -log p over the reply positions only
    by_hand = -logp.gather(-1, y.clamp(min=0)[..., None])[..., 0][keep].mean()
    assert out.loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    # without the mask: the token-weighted mean of the prompt positions' loss and the reply positions' loss
    nll = -logp.gather(-1, full["labels"][:, 1:].clamp(min=0)[..., None])[..., 0]
    counted = full["labels"][:, 1:] != IGNORE
    prompt = counted & ~keep
    mix = (nll[prompt].sum() + nll[keep].sum()) / (prompt.sum() + keep.sum())
    assert model(**full).loss.item() == pytest.approx(mix.item(), rel=1e-5)
    assert prompt.sum() > 3 * keep.sum()   # most tokens are prompt: unmasked SFT mostly trains prompt-writing


def test_plain_template_for_a_model_without_chat_template(tmp_path):
    folder = build_tiny_causal_lm(tmp_path / "base", ["Write in capital letters: river RIVER"], vocab_size=300,
                                  chat_template=None)
    _, tok = load_causal_lm(folder)
    head, tail = sft.split_example(tok, TRAIN[0])
    assert head == sft.PLAIN_TEMPLATE.format(prompt=TRAIN[0]["prompt"]) and tail == TRAIN[0]["completion"] + tok.eos_token
    with pytest.raises(ValueError, match="has no chat template.*chat=False"):
        sft.encode(tok, TRAIN[:2], chat=True)


def test_packing_removes_padding_and_keeps_the_mask(lm):
    _, tok = lm
    plain = sft.encode(tok, TRAIN[:64], max_length=128)
    packed = sft.encode(tok, TRAIN[:64], max_length=128, pack=True)
    assert sft.padding_share(make_loader(plain, 8, shuffle=True, pad_id=tok.pad_token_id)) > 0.2
    assert sft.padding_share(make_loader(packed, 8, pad_id=tok.pad_token_id)) < 0.05
    assert len(packed) < len(plain)
    # every trained position is a reply token: as many as unpacked, minus those at a block start
    assert plain.trained_tokens - len(packed) <= packed.trained_tokens <= plain.trained_tokens


# --------------------------------------------------------------------------- bad input, before training
@pytest.mark.parametrize("examples, message", [
    ([{"instruction": "a", "response": "b"}], "example 0 has no 'prompt' / 'completion' string.*instruction→prompt"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], "last message is the 'user'"),
    ([{"messages": [{"role": "bot", "content": "hi"}]}], "example 0, message 0: expected"),
    ([], "the dataset is empty"),
])
def test_a_dataset_without_the_expected_columns_or_roles_is_refused(lm, examples, message):
    with pytest.raises(ValueError, match=message):
        sft.encode(lm[1], examples)


@pytest.mark.parametrize("examples, message", [
    ([{"prompt": "  ", "completion": "x"}], r"example 0 has an empty 'prompt' \('  '\): there is nothing to answer"),
    ([TRAIN[0], {"prompt": "hi", "completion": ""}], r"example 1 has an empty 'completion'.*answer with nothing"),
    ([{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]}],
     r"example 0, message 1: the assistant's content is empty"),
    ({"prompt": ["a", "b"], "completion": ["c"]}, r"a dict is read as columns of equal length"),
    ("write a poem", r"examples is a string"),
])
def test_blank_texts_and_shapes_that_are_not_examples_are_refused(lm, examples, message):
    with pytest.raises((ValueError, TypeError), match=message):
        sft.encode(lm[1], examples)


def test_a_generator_and_a_dict_of_columns_encode_like_the_list(lm):
    rows = TRAIN[:6]
    as_list = sft.encode(lm[1], rows)
    columns = {k: [r[k] for r in rows] for k in rows[0]}          # what Dataset.to_dict() returns
    for other in (sft.encode(lm[1], (r for r in rows)), sft.encode(lm[1], columns)):
        assert len(other) == 6 and all(torch.equal(a["labels"], b["labels"])
                                       for a, b in zip(as_list.features, other.features))


def test_a_reply_cut_by_max_length_is_warned_with_its_count(lm):
    long = {"prompt": "Repeat: river", "completion": " ".join(["river"] * 60)}
    with pytest.warns(UserWarning, match=r"1 of 2 replies do not fit in max_length=64 tokens .*the first: example 1\)"
                                         r".*lose their end-of-turn token"):
        data = sft.encode(lm[1], [{"prompt": "hi", "completion": "x"}, long], max_length=64)
    assert data.n_truncated == 1 and len(data.features[1]["input_ids"]) == 64


def test_instruction_files_with_bad_lines_name_the_file_and_line(tmp_path):
    from ftkit.data.instructions import read_jsonl
    good = '{"prompt": "a", "completion": "b"}\n'
    cases = {"json": (good + "\n" + '{"prompt": "a", "completion": \n').encode(), "latin1": (good + good).encode()
             + '{"prompt": "caf\u00e9", "completion": "b"}\n'.encode("latin-1"), "list": (good + "[1, 2]\n").encode()}
    messages = {"json": r"train\.jsonl, line 3: not valid JSON", "latin1": r"train\.jsonl, line 3: byte 0xe9 at "
                r"column 16 is not UTF-8 .*save the file as UTF-8", "list": r"train\.jsonl, line 2: a JSON list"}
    for case, data in cases.items():
        (tmp_path / "train.jsonl").write_bytes(data)
        with pytest.raises(ValueError, match=messages[case]):
            read_jsonl(tmp_path / "train.jsonl")
    (tmp_path / "train.jsonl").write_bytes(b"\xef\xbb\xbf" + (good * 2).encode())   # a BOM: read, not refused
    assert read_jsonl(tmp_path / "train.jsonl") == [{"prompt": "a", "completion": "b"}] * 2
    (tmp_path / "train.jsonl").write_text("\n  \n")
    (tmp_path / "test.jsonl").write_text(good)
    with pytest.raises(ValueError, match=r"train\.jsonl holds no example"):
        load_instructions(tmp_path)


def test_a_prompt_longer_than_the_context_is_refused_with_its_length(lm):
    with pytest.raises(ValueError, match=r"example 1: its prompt is \d+ tokens.*max_length=24"):
        sft.encode(lm[1], [{"prompt": "hi", "completion": "x"}, TRAIN[2]], max_length=24)


def test_a_batch_whose_labels_are_all_minus_100_stops_before_training(lm):
    model, tok = lm
    data = sft.encode(tok, TRAIN[:8])
    for f in data.features:
        f["labels"][:] = IGNORE
    model = sft.apply_lora(model)
    with pytest.raises(ValueError, match="train batch 0: every label is -100"):
        sft.fit_args(model, data, lr=1e-3)


def test_4bit_off_cuda_says_so(tiny, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        load_causal_lm(tiny, load_in_4bit=True)


def test_a_model_folder_without_weights_tokenizer_or_a_tensor_says_which(tiny, tmp_path, monkeypatch):
    import shutil
    from safetensors.torch import load_file, save_file
    from ftkit.nlp import causal
    cases = {}
    for case in ("weights", "tokenizer", "tensor"):
        folder = tmp_path / case
        shutil.copytree(tiny, folder)
        if case == "weights":
            (folder / "model.safetensors").unlink()
        elif case == "tokenizer":
            for f in folder.iterdir():
                if f.name.startswith(("tokenizer", "vocab", "merges", "special_tokens")):
                    f.unlink()
        else:
            weights = load_file(folder / "model.safetensors")
            dropped = sorted(k for k in weights if "layers.0.mlp.down_proj" in k)[0]
            save_file({k: v for k, v in weights.items() if k != dropped}, folder / "model.safetensors",
                      metadata={"format": "pt"})
        cases[case] = folder
    with pytest.raises(FileNotFoundError, match=r"has no model weights \(model\.safetensors or pytorch_model\.bin"):
        load_causal_lm(cases["weights"])
    with pytest.raises(FileNotFoundError, match=r"has no tokenizer files .*tokenizer\.save_pretrained"):
        load_causal_lm(cases["tokenizer"])
    with pytest.raises(ValueError, match=r"its weights lack 1 tensor\(s\) the model needs \(.*layers\.0\.mlp\.down_proj"):
        load_causal_lm(cases["tensor"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert causal._hub_reachable() is False        # offline: known at once, no retries


def test_a_model_folder_that_is_missing_names_its_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model folder"):
        load_causal_lm(str(tmp_path / "nothing" / "here"))


# --------------------------------------------------------------------------- LoRA, training, save, merge
def test_lora_trains_only_the_adapters_and_lowers_the_held_out_loss(lm):
    model, tok = lm
    ftkit.seed_everything(0)
    model = sft.apply_lora(model, r=4, alpha=8)
    table = sft.parameter_table(model)
    n_layers, d, kv = 2, 64, 32   # q_proj 64→64 and v_proj 64→32 per layer: r(d_in + d_out) each
    assert table.loc["LoRA A-B", "trainable"] == n_layers * 4 * ((d + d) + (d + kv))
    assert table.loc["decoder", "trainable"] == 0 and table.loc["total", "trainable"] == table.loc["LoRA A-B", "total"]
    train, val = sft.encode(tok, TRAIN[:48]), sft.encode(tok, TEST[:16])
    args = sft.fit_args(model, train, val, epochs=3, lr=2e-2, batch_size=8, pad_id=tok.pad_token_id)
    before = ftkit.evaluate(model, args["val_loader"], None, device="cpu")["loss"]
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    history = ftkit.fit(**args, progress=False, device="cpu")
    assert history["val_loss"][-1] < before - 0.1, (before, history["val_loss"])
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)


def test_adapter_reloads_in_a_fresh_process_and_merging_keeps_the_logits(lm, tmp_path):
    model, tok = lm
    ftkit.seed_everything(0)
    model = sft.apply_lora(model, r=4)
    for n, p in model.named_parameters():   # a non-zero B, so the adapter changes the output
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)
    texts = [sft.split_example(tok, e)[0] for e in TEST[:3]]
    ours = sft.logits(model, tok, texts)
    model.save_pretrained(tmp_path / "adapter")
    tok.save_pretrained(tmp_path / "adapter")
    sizes = folder_size_mb(tmp_path / "adapter")
    assert "adapter_model.safetensors" in sizes and "model.safetensors" not in sizes
    again = sft.logits_in_fresh_process(tmp_path / "adapter", texts)
    assert (again - ours).abs().max() < 1e-5
    with model.disable_adapter():
        assert (sft.logits(model, tok, texts) - ours).abs().max() > 1e-2   # the adapter matters
    merged = sft.merge(model)
    assert (sft.logits(merged, tok, texts) - ours).abs().max() <= 1e-4
    merged.save_pretrained(tmp_path / "merged")
    from safetensors.torch import load_file
    keys = load_file(tmp_path / "merged" / "model.safetensors").keys()
    assert keys and not any("lora" in k for k in keys)   # plain weights: loads without peft


def test_generate_is_greedy_and_replies_per_prompt(lm):
    model, tok = lm
    a = generate(model, tok, [e["prompt"] for e in TEST[:5]], max_new_tokens=4, batch_size=2)
    b = generate(model, tok, [e["prompt"] for e in TEST[:5]], max_new_tokens=4, batch_size=5)
    assert len(a) == 5 and a == b   # left padding: the batch size does not change a reply
