"""ftkit.notebook.setup: presets fill what the user left at None, and every bad parameter stops before any work."""
from __future__ import annotations

import os

import pytest

from ftkit.notebook import Choice, Float, Int, ListOf, OutputDir, ParameterError, setup

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
    for bad in ("gpu", "cuda:x", "cpu:0", 3):
        with pytest.raises(ParameterError, match="expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"):
            setup({"preset": "cpu", "device": bad}, {"device": Device()}, quiet=True)
    res = setup({"preset": "cpu", "device": "cuda:1"}, {"device": Device()}, presets={"cpu": {}, "gpu": {}},
                minutes={"cpu": 4, "gpu": "12 min on a T4 (not run)"}, expected={"cpu": "≈ 0.5", "gpu": "≈ 0.9"})
    out = capsys.readouterr().out
    assert "preset 'cpu' (set by you): about 4 min; preset='gpu' runs the full experiment (about 12 min on a T4 " \
           "(not run))" in out and "expected result: ≈ 0.5" in out
    assert res["device"] == "cuda:1"
    assert res.expect("0.52") == "got 0.52; expected with preset 'cpu': ≈ 0.5; preset 'gpu': ≈ 0.9"


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
