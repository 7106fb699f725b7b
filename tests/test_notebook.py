"""ftkit.notebook.setup: presets fill what the user left at None, and every bad parameter stops before any work."""
from __future__ import annotations

import os

import pytest

from ftkit.notebook import Choice, Device, Float, Int, ListOf, OutputDir, ParameterError, setup

SPEC = {"epochs": Int(min=1), "lr": Float(min=0, open_min=True), "optimizer": Choice("adam", "sgd"),
        "modes": ListOf(Choice("full", "head", "lora")), "subset": Int(min=1, optional=True)}
PRESETS = {"cpu": {"epochs": 1, "subset": 500}, "gpu": {"epochs": 10, "subset": None}}


def ns(**over):
    base = {"preset": "cpu", "epochs": None, "lr": 1e-3, "optimizer": "adam", "modes": ["full"], "subset": None,
            "os": os, "setup": setup}
    return {**base, **over}


def test_the_preset_fills_what_was_left_at_none_and_a_set_value_wins(capsys):
    g = ns()
    res = setup(g, SPEC, presets=PRESETS, minutes={"cpu": 3, "gpu": 12})
    assert (g["epochs"], g["subset"], res.preset, res.from_preset) == (1, 500, "cpu", ("epochs", "subset"))
    out = capsys.readouterr().out
    assert "preset 'cpu' (set by you): about 3 min; preset='gpu' runs the full experiment (about 12 min)" in out
    g = ns(epochs=4, preset="gpu")
    setup(g, SPEC, presets=PRESETS, quiet=True)
    assert (g["epochs"], g["subset"]) == (4, None)


def test_auto_picks_the_device(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert setup(ns(preset="auto"), SPEC, presets=PRESETS, quiet=True).preset == "cpu"


@pytest.mark.parametrize("over, message", [
    ({"epochs": "abc"}, "parameter epochs='abc': expected a whole number >= 1"),
    ({"epochs": 0}, "parameter epochs=0: expected a whole number >= 1"),
    ({"lr": 0.0}, "parameter lr=0.0: expected a number > 0"),
    ({"lr": "abc"}, "parameter lr='abc': expected a number > 0"),
    ({"optimizer": "adamm"}, "parameter optimizer='adamm': expected one of 'adam', 'sgd'; did you mean 'adam'?"),
    ({"modes": "full"}, "parameter modes='full': expected a list of one of 'full', 'head', 'lora'; write modes=['full']"),
    ({"modes": ["full", "lorra"]}, "parameter modes[1]='lorra'"),
    ({"epochz": 3}, "unknown parameter 'epochz'; did you mean 'epochs'?"),
    ({"preset": "tpu"}, "parameter preset='tpu': expected one of 'auto', 'cpu', 'gpu'"),
])
def test_a_bad_parameter_stops_with_one_message_naming_it(over, message):
    with pytest.raises(ParameterError) as err:
        setup(ns(**over), SPEC, presets=PRESETS, quiet=True)
    assert message in str(err.value)


def test_an_output_dir_that_cannot_be_written_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ParameterError, match="cannot be written.*Nothing has been trained yet"):
        setup({"preset": "cpu", "output_dir": str(blocker / "sub")}, {"output_dir": OutputDir()}, quiet=True)
    g = {"preset": "cpu", "output_dir": str(tmp_path / "new")}
    setup(g, {"output_dir": OutputDir()}, quiet=True)
    assert (tmp_path / "new").is_dir() and not list((tmp_path / "new").iterdir())


def test_run_all_twice_in_one_kernel_is_not_an_unknown_parameter(capsys):
    """In a kernel the candidates are the names the parameters cell (and papermill's injected cell) assigned, read
    from the input history back to the cell that sets ``preset``: variables later cells made on an earlier Run All
    (``history``, ``test_accuracy``) are no typo, while a new typo in the parameters cell still is."""
    params = "preset = 'cpu'\nepochs = None\nlr = 1e-3\noptimizer = 'adam'\nmodes = ['full']\nsubset = None"
    first_run = ["", params, "chosen = setup(globals(), SPEC)", "history = [1, 2]\ntest_accuracy = 0.9"]
    g = {**ns(), "history": [1, 2], "test_accuracy": 0.9, "In": first_run + [params, "chosen = setup(...)"]}
    assert setup(g, SPEC, presets=PRESETS, quiet=True).preset == "cpu"
    injected = "# Parameters\nepochz = 3\n"
    g = {**ns(epochz=3), "history": [1, 2], "In": first_run + [params, injected, "chosen = setup(...)"]}
    with pytest.raises(ParameterError, match="unknown parameter 'epochz'; did you mean 'epochs'?"):
        setup(g, SPEC, presets=PRESETS, quiet=True)
    # no kernel history: every snake_case variable is a candidate (CONSTANTS and _private names are not)
    with pytest.raises(ParameterError, match="unknown parameter 'history'"):
        setup({**ns(), "history": [1], "OPTIMIZERS": {"adam": 1}}, SPEC, presets=PRESETS, quiet=True)


def test_device_list_hint_minutes_text_and_the_expected_line(capsys):
    from ftkit.notebook import Device
    g = {"preset": "cpu", "device": "cuda:1", "lrs": "[0.1, 0.2]"}
    with pytest.raises(ParameterError, match=r"papermill's -p passes text: give a list with -y, e\.g\. "
                                             r"papermill \.\.\. -y 'lrs: \[0\.1, 0\.2\]'"):
        setup(g, {"device": Device(), "lrs": ListOf(Float(min=0))}, quiet=True)
    assert setup({"preset": "cpu", "device": "cpu:0"}, {"device": Device()}, quiet=True)["device"] == "cpu:0"
    for bad in ("gpu", "cuda:x", "meta", 3):
        with pytest.raises(ParameterError, match="expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"):
            setup({"preset": "cpu", "device": bad}, {"device": Device()}, quiet=True)
    res = setup({"preset": "cpu", "device": "cuda:1"}, {"device": Device()}, presets={"cpu": {}, "gpu": {}},
                minutes={"cpu": 4, "gpu": "12 min on a T4 (not run)"}, expected={"cpu": "≈ 0.5", "gpu": "≈ 0.9"})
    out = capsys.readouterr().out
    assert "preset 'cpu' (set by you): about 4 min; preset='gpu' runs the full experiment (about 12 min on a T4 " \
           "(not run))" in out and "expected result: ≈ 0.5" in out
    assert res["device"] == "cuda:1"
    assert res.expect("0.52") == "got 0.52; expected with preset 'cpu': ≈ 0.5; preset 'gpu': ≈ 0.9"


# --------------------------------------------------------------------------- issue 35: the parameter checks
def test_the_gpu_preset_without_cuda_is_one_clear_error(monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParameterError, match=r"parameter preset='gpu': the full experiment needs a CUDA GPU, and "
                                             r"none is here; use preset='auto' or 'cpu'"):
        setup(ns(preset="gpu", device="auto"), {**SPEC, "device": Device()}, presets=PRESETS, quiet=True)


def test_device_gpu_points_to_cuda():
    from ftkit.notebook import Device
    with pytest.raises(ParameterError, match=r"parameter device='gpu': expected 'auto', 'cpu', 'cuda', 'cuda:N' or "
                                             r"'mps'; did you mean 'cuda'\? \(PyTorch calls an NVIDIA GPU 'cuda'\)"):
        setup({"preset": "cpu", "device": "gpu"}, {"device": Device()}, quiet=True)
    with pytest.raises(ParameterError, match=r"parameter device='cpuu'.*; did you mean 'cpu'\?"):
        setup({"preset": "cpu", "device": "cpuu"}, {"device": Device()}, quiet=True)


def test_numpy_numbers_are_numbers_and_true_is_not_a_whole_number():
    import numpy as np
    g = ns(epochs=np.int64(3), lr=np.float32(0.5), subset=np.int32(7))
    setup(g, SPEC, presets=PRESETS, quiet=True)
    assert (g["epochs"], g["lr"], g["subset"]) == (3, 0.5, 7)
    assert type(g["epochs"]) is int and type(g["lr"]) is float   # plain Python numbers travel on (JSON, logs)
    for bad in (True, np.bool_(True)):
        with pytest.raises(ParameterError, match=r"parameter epochs=.*: expected a whole number >= 1"):
            setup(ns(epochs=bad), SPEC, presets=PRESETS, quiet=True)


def test_a_choice_twice_in_a_list_is_refused_and_dashes_are_forgiven():
    with pytest.raises(ParameterError, match=r"parameter modes=\['full', 'full'\]: expected a list of one of "
                                             r"'full', 'head', 'lora' without repeats \('full' is there twice"):
        setup(ns(modes=["full", "full"]), SPEC, presets=PRESETS, quiet=True)
    g = {"preset": "cpu", "scheduler": "one-cycle"}
    setup(g, {"scheduler": Choice("one_cycle", "cosine")}, quiet=True)
    assert g["scheduler"] == "one_cycle"


def test_output_dir_really_probes_that_the_folder_is_writable(tmp_path):
    """An existing folder that refuses new files (immutable: even root cannot write there) is refused now."""
    import shutil
    import subprocess
    folder = tmp_path / "locked"
    folder.mkdir()
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode:
        pytest.skip("chattr +i is not available here (needs root and a file system that supports it)")
    try:
        with pytest.raises(ParameterError, match=r"parameter output_dir=.*locked.*the folder cannot be written.*"
                                                 r"Nothing has been trained yet"):
            setup({"preset": "cpu", "output_dir": str(folder)}, {"output_dir": OutputDir()}, quiet=True)
        assert os.listdir(folder) == []
    finally:
        subprocess.run(["chattr", "-i", str(folder)])


def test_a_preset_size_larger_than_the_data_uses_what_there_is_and_a_set_one_is_an_error(tmp_path, capsys):
    from ftkit.data.cifar10 import load_cifar10
    from ftkit.data.fake import write_fake_cifar10
    write_fake_cifar10(tmp_path / "c", 50, 10, num_batches=5)
    g = {"preset": "cpu", "subset": None}
    setup(g, {"subset": Int(min=10, optional=True)}, presets={"cpu": {"subset": 10_000}}, quiet=True)
    data = load_cifar10(tmp_path / "c", subset=g["subset"], val_fraction=0.2, download=False)
    assert len(data.train.labels) + len(data.val.labels) == 50
    out = capsys.readouterr().out
    assert "the preset asks for 10,000 training images" in out and "has 50: using all 50" in out
    with pytest.raises(ValueError, match="subset must be between 1 and the 50 training images"):
        load_cifar10(tmp_path / "c", subset=10_000, download=False)


def test_the_dashboard_parameter_is_one_spec():
    from ftkit.notebook import Dashboard
    for value in ("auto", True, False):
        g = {"preset": "cpu", "dashboard": value}
        setup(g, {"dashboard": Dashboard()}, quiet=True)
        assert g["dashboard"] is value or g["dashboard"] == value
    with pytest.raises(ParameterError, match=r"parameter dashboard='autp': expected one of 'auto', True, False; "
                                             r"did you mean 'auto'\?"):
        setup({"preset": "cpu", "dashboard": "autp"}, {"dashboard": Dashboard()}, quiet=True)
    with pytest.raises(ParameterError, match=r"parameter dashboard=1: expected one of 'auto', True, False"):
        setup({"preset": "cpu", "dashboard": 1}, {"dashboard": Dashboard()}, quiet=True)   # 1 == True, but not a bool


def test_claims_print_each_value_beside_its_margin_and_fail_together(capsys):
    from ftkit.notebook import Claims
    claims = Claims()
    assert claims.check("loss fell", 0.4, above=0.1) and not claims.check("reload diff", 2e-3, below=1e-4)
    assert claims.check("ratio", 1.07, above=0.9, below=1.5)
    out = capsys.readouterr().out.splitlines()
    assert out == ["holds  loss fell: 0.4 (must be > 0.1)", "FAILS  reload diff: 0.002 (must be < 0.0001)",
                   "holds  ratio: 1.07 (must be > 0.9 and < 1.5)"]
    with pytest.raises(AssertionError, match=r"claims that do not hold on this run: reload diff: got 0.002, must be < "
                                             r"0.0001$"):
        claims.verify()
    with pytest.raises(ValueError, match="give the margin it must clear"):
        claims.check("no margin", 1.0)


def test_claims_about_a_stopped_training_print_their_values_and_say_once_why_they_are_not_checked(capsys):
    from ftkit.core import History
    from ftkit.notebook import Claims
    full, lora = History(), History(stop_reason="stopped by request at epoch 1, step 2")
    claims = Claims(full)                                              # a finished run: checked as usual
    claims.check("reload diff", 2e-3, below=1e-4)
    with pytest.raises(AssertionError, match="reload diff"):
        claims.verify()
    capsys.readouterr()
    interrupted = History(stop_reason="interrupted at epoch 2, step 9")
    claims = Claims({"full": full, "lora": lora, "none": None}, lora, interrupted)     # lora twice: said once
    assert not claims.check("reload diff", 2e-3, below=1e-4)          # a failing value: printed, not raised
    assert claims.verify() == [{"claim": "reload diff", "value": 2e-3, "must be": "< 0.0001", "holds": False}]
    assert capsys.readouterr().out.splitlines() == [
        "not checked reload diff: 0.002 (must be < 0.0001)",
        "Claims not checked: lora: stopped by request at epoch 1, step 2; interrupted at epoch 2, step 9. "
        "Run the training to its end to check them."]
