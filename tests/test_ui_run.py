"""Stop and Pause as features: after a Stop at any moment the History reads like a finished run's (the interrupted
epoch is a row marked ``partial``, validated), rows are final when recorded, and ``FTKIT_STOP_AFTER_STEPS``
presses Stop in a notebook run by papermill — whose later cells all run (notebooks 03 to 08)."""
from __future__ import annotations

import asyncio
import copy
import json
import time
from pathlib import Path

import pytest

import ftkit
from ftkit.data import synthetic
from ftkit.train.callbacks import Callback
from ftkit.ui import fit_live, fit_live_async, TrainingDashboard

import kernel_watch
from conftest import Pace, drive, mlp
from notebook_runs import TEST_PARAMETERS, execute_notebook


@pytest.fixture
def loaders():
    x, y = synthetic.blobs(n=800, num_classes=3, spread=0.7)
    return synthetic.make_loaders(x, y, batch_size=32)   # 20 train batches of 32, 5 validation batches


class Snapshot(Callback):
    """Copies each epoch row when it is recorded: a row edited later would differ from its copy."""

    def __init__(self):
        self.rows = []

    def on_epoch_end(self, state):
        self.rows.append(copy.deepcopy(state.history.epochs[-1]))


def test_stop_in_the_only_epoch_records_a_partial_validated_row(loaders, monkeypatch):
    monkeypatch.setenv("FTKIT_STOP_AFTER_STEPS", "7")
    train_loader, val_loader = loaders
    ftkit.seed_everything(0)
    model = mlp(2, 32, 3)
    history = fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 1,
                       dashboard=TrainingDashboard(every_ms=0), val_loader=val_loader, metrics=["accuracy"])
    assert history.stop_reason == "stopped by request at epoch 1, step 7" and len(history.steps) == 7
    frame = history.to_frame()[["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "partial"]]
    [row] = history.epochs
    assert (row["epoch"], row["partial"], row["batches"], row["samples"]) == (1, True, 7, 7 * 32)
    assert row["train_loss"] == pytest.approx(sum(r["loss"] for r in history.steps) / 7)   # equal batches: the mean
    whole = ftkit.evaluate(model, val_loader, "cross_entropy", metrics=["accuracy"], device="cpu")
    assert (row["val_loss"], row["val_accuracy"]) == pytest.approx((whole["loss"], whole["accuracy"]))
    assert frame.shape == (1, 6)


def test_stop_before_any_batch_and_the_plot_path(loaders, monkeypatch):
    """Stop pressed before training (the dashboard) or after 3 steps (the plot, no dashboard): a row either way."""
    train_loader, val_loader = loaders
    model = mlp(2, 32, 3)
    dash = TrainingDashboard()
    dash.stop_button.click()
    history = fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 2,
                       dashboard=dash, val_loader=val_loader)
    [row] = history.epochs
    assert history.steps == [] and (row["partial"], row["batches"], row["samples"]) == (True, 0, 0)
    assert row["train_loss"] != row["train_loss"] and row["val_loss"] > 0        # NaN: nothing trained; validated
    monkeypatch.setenv("FTKIT_STOP_AFTER_STEPS", "23")                          # inside the second epoch
    history = fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 3,
                       dashboard=False, val_loader=val_loader, progress=False)
    assert [r.get("partial", False) for r in history.epochs] == [False, True] and len(history.steps) == 23
    assert history.epochs[1]["batches"] == 3 and "partial" not in history.epochs[0]
    monkeypatch.setenv("FTKIT_STOP_AFTER_STEPS", "three")
    with pytest.raises(ValueError, match=r"FTKIT_STOP_AFTER_STEPS='three': set it to a whole number of optimizer "
                                         r"steps >= 1 \(or unset it\)"):
        fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 1, dashboard=False)


def test_a_pause_is_out_of_the_epoch_time_and_rows_are_final_when_recorded(loaders):
    train_loader, val_loader = loaders
    model = mlp(2, 32, 3)
    dash, snap = TrainingDashboard(every_ms=0), Snapshot()

    class PauseOnce(Callback):
        def on_batch_end(self, state):
            if state.step == 4:
                dash.pause()
                import threading
                threading.Timer(0.4, dash.resume).start()
    history = fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 2,
                       dashboard=dash, val_loader=val_loader, callbacks=[PauseOnce(), snap])
    first, second = history.epochs
    assert first["paused_s"] >= 0.35 and "paused_s" not in second               # the pause, in its own column
    assert first["time"] < second["time"] + 0.3                                  # … and out of the epoch's time
    assert snap.rows == history.epochs                                           # nothing edited after recording


@pytest.mark.notebook
def test_stop_early_in_notebook_03_then_every_later_cell_runs(run_notebook, tmp_path, monkeypatch, fake_cifar10):
    monkeypatch.setenv("FTKIT_STOP_AFTER_STEPS", "3")      # the dashboard's Stop after 3 steps of the first epoch
    # the notebook test's small settings (notebook_runs.TEST_PARAMETERS; the articles' experiment too: its preset trains
    # 10 epochs), without the multi-process section
    m = run_notebook("03_cifar10_cnn.ipynb", data_dir=str(fake_cifar10),
                     **{**TEST_PARAMETERS["03_cifar10_cnn.ipynb"], "ddp": False})
    assert m["epochs_run"] == 1 and m["test_accuracy"] < 0.3                      # one partial epoch of 3 steps
    text = _outputs(tmp_path / "03_cifar10_cnn.ipynb")
    assert "Claims not checked: stopped by request at epoch 1, step 3." in text


@pytest.mark.notebook
def test_stop_in_notebook_04s_only_epoch_then_every_later_cell_runs(tmp_path_factory, monkeypatch, tiny_bert):
    from ftkit.data import shipped
    monkeypatch.setenv("FTKIT_STOP_AFTER_STEPS", "2")
    sample = shipped("conll2003_sample")
    out = tmp_path_factory.mktemp("nb04")
    m = execute_notebook("04_bert_ner.ipynb", out, model_name_or_path=str(tiny_bert), data_dir=str(sample), epochs=1,
                         batch_size=32, lr=5e-3, head_lr_mult=1.0, max_length=64, device="cpu", ddp=False)
    assert len(m["val_f1_per_epoch"]) == 1                                         # the partial epoch's row
    assert "Claims not checked: stopped by request at epoch 1, step 2." in _outputs(out / "04_bert_ner.ipynb")


def _outputs(path) -> str:
    import nbformat
    nb = nbformat.read(str(path), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


ASSETS = Path(__file__).parent / "assets"


def test_fit_live_async_serves_the_controls_and_returns_the_history(train_loader):
    """``await fit_live_async(...)``: the same controls, fit in a worker thread while the caller awaits."""
    model = mlp(2, 32, 3)
    dash = TrainingDashboard(every_ms=0)
    drive([(lambda: dash.progress.value >= 8, lambda: setattr(dash.slider, "value", 0.02)),
           (lambda: dash.control.applied, dash.stop)])
    history = asyncio.run(fit_live_async(model, train_loader, "cross_entropy",
                                         ftkit.make_optimizer("sgd", model, lr=0.1), 50, dashboard=dash,
                                         callbacks=[Pace()]))
    lrs = [r["lr"] for r in history.steps]
    k = lrs.index(0.02)
    assert k >= 8 and set(lrs[:k]) == {0.1} and set(lrs[k:]) == {0.02}
    assert len(lrs) < 50 * len(train_loader) and history.stop_reason.startswith("stopped by request")


def test_sync_fit_live_on_ipykernel_7_warns_and_still_trains(train_loader, monkeypatch):
    """ipykernel 7 has no ``do_one_iteration``: a blocking cell cannot serve widgets, so fit_live says so."""
    dash = TrainingDashboard()                                         # built outside a kernel: no plotly widget
    monkeypatch.setattr(ftkit.ui.run, "ipython_kernel", lambda: object())   # a kernel without do_one_iteration
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: type("H", (), {"update": lambda s, o: None})())
    model = mlp(2, 32, 3)
    with pytest.warns(UserWarning, match=r"ipykernel >= 7\) handles widget messages only while a cell awaits.*"
                                         r"history = await fit_live_async"):
        history = fit_live(model, train_loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 1,
                           dashboard=dash)
    assert len(history.steps) == len(train_loader) and history.stop_reason is None and "finished" in dash.readout.value


@pytest.mark.notebook
def test_papermill_kernel_without_frontend_trains_to_the_end(tmp_path):
    """dashboard="auto" (the default) under papermill: the probe gets no answer from a widget front-end, so the
    run draws the static plot, finishes on its own, and the saved notebook keeps the figure."""
    import nbformat
    import papermill as pm
    out = tmp_path / "dashboard_training.ipynb"
    kernel_watch.execute(pm.execute_notebook, out.name, str(ASSETS / "dashboard_training.ipynb"), str(out),
                         kernel_name="python3", cwd=str(tmp_path),
                         parameters={"epochs": 2, "n": 320, "output_dir": str(tmp_path)}, progress_bar=False)
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["steps"]) == 2 * 16 and history["stop_reason"] is None   # 256 train images / 16 per batch
    assert history["epochs"][-1]["val_accuracy"] > 0.8                          # chance is 1/3
    outputs = nbformat.read(out, 4).cells[-1].outputs
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in outputs)
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)   # one line
    assert text.count("ftkit ui: no widget front-end answered within 2.0 s") == 1 and "→ static plot" in text


# Stop pressed early in each other notebook that trains live (05–08): FTKIT_STOP_AFTER_STEPS presses it in every live
# training of the run (a Stop stops the training it is pressed in); every later cell runs and the claims cell says
# why it checked nothing. The tiniest parameters each notebook accepts; the static plot (dashboard=False).
REASON = "stopped by request at epoch 1, step 2"


@pytest.mark.notebook
def test_stop_early_in_notebook_05_then_every_later_cell_runs(tmp_path_factory, monkeypatch):
    from ftkit.data import shipped
    from ftkit.nlp.tiny import build_tiny_bert
    from test_nb_05_sentence_classification import write_tsv
    from test_nlp_classify import keyword_split
    monkeypatch.setenv("FTKIT_STOP_AFTER_STEPS", "2")
    tiny = build_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert", shipped("conll2003_sample"))
    data_dir = tmp_path_factory.mktemp("sentiment")
    for name, (n, seed) in {"train": (64, 0), "dev": (16, 1), "test": (16, 2)}.items():
        write_tsv(data_dir / f"{name}.tsv", keyword_split(n, seed))
    out = tmp_path_factory.mktemp("nb05")
    m = execute_notebook("05_sentence_classification.ipynb", out, model_name_or_path=str(tiny),
                         data_dir=str(data_dir), dataset=None, epochs=2, batch_size=16, max_length=32,
                         device="cpu", dashboard=False, ddp=False, allow_stderr=("TruncationWarning",))
    assert list(m["modes"]) == ["full", "head", "lora"]                          # each mode stopped, each scored
    assert all(len(r["val_accuracy_per_epoch"]) == 1 and r["stop_reason"] == REASON for r in m["modes"].values())
    assert (f"Claims not checked: full: {REASON}; head: {REASON}; lora: {REASON}. Run the training to its end"
            in _outputs(out / "05_sentence_classification.ipynb"))


@pytest.mark.notebook
def test_stop_early_in_notebook_06_then_every_later_cell_runs(run_notebook, tmp_path, monkeypatch):
    from conftest import NOTEBOOKS
    monkeypatch.setenv("FTKIT_STOP_AFTER_STEPS", "2")
    m = run_notebook("06_language_model.ipynb", cwd=NOTEBOOKS, n_layer=1, n_head=2, n_embd=16, block_size=16,
                     batch_size=8, max_steps=20, eval_every=10, finetune_steps=10, losses=["cross_entropy", "mse"],
                     device="cpu", dashboard=False)
    assert (m["steps"], m["stop_reason"], set(m["losses"])) == (2, REASON, {"cross_entropy", "mse"})
    assert f"Claims not checked: {REASON}. Run" in _outputs(tmp_path / "06_language_model.ipynb")   # said once


@pytest.mark.notebook
def test_stop_early_in_notebook_07_then_every_later_cell_runs(run_notebook, tmp_path, monkeypatch):
    from ftkit.data.fake import write_fake_cifar10
    monkeypatch.setenv("FTKIT_STOP_AFTER_STEPS", "2")
    write_fake_cifar10(tmp_path / "cifar10", n_train=300, n_test=100, noise=1.0)
    m = run_notebook("07_model_design.ipynb", data_dir=str(tmp_path / "cifar10"), preset="cpu", subset=120,
                     batch_size=30, depths=[8, 14], width=4, depth_epochs=2, probe_images=32, transfer_modes=["probe"],
                     transfer_epochs=1,
                     resolution=32, resolutions=[32], resolution_mode="probe", test_images=60, download=False,
                     device="cpu", dashboard=False)
    assert all(len(r["train_loss"]) == 1 and r["stop_reason"] == REASON for r in m["depth_runs"].values())
    assert (f"Claims not checked: plain-8: {REASON}; residual-8: {REASON}; plain-14: {REASON}; residual-14: {REASON}; "
            f"probe: {REASON}. Run" in _outputs(tmp_path / "07_model_design.ipynb"))


@pytest.mark.notebook
def test_stop_early_in_notebook_08_then_every_later_cell_runs(run_notebook, tmp_path, tmp_path_factory, monkeypatch):
    from ftkit.data.instructions import load_instructions
    from ftkit.nlp.causal import build_tiny_causal_lm
    monkeypatch.setenv("FTKIT_STOP_AFTER_STEPS", "2")
    train, _ = load_instructions()
    tiny = build_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "llama",
                                [e["prompt"] + " " + e["completion"] for e in train] + ["user assistant system"])
    m = run_notebook("08_instruction_tuning.ipynb", preset="cpu", model_name_or_path=tiny, full_fine_tune=True,
                     full_model_name_or_path=tiny, offline_fallback=False, n_train=24, n_test=6, epochs=2,
                     max_length=128, max_new_tokens=2, fresh_process=False, device="cpu", dashboard=False)
    assert len(m["lora"]["val_loss_per_epoch"]) == 1 and m["lora"]["stop_reason"] == m["full"]["stop_reason"] == REASON
    text = _outputs(tmp_path / "08_instruction_tuning.ipynb")
    assert f"Claims not checked: LoRA: {REASON}; full: {REASON}. Run" in text
