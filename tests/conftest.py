"""Shared test helpers: the one torch-thread policy, deterministic CPU torch, the small models and data several
test files train on, the notebook fixtures (a per-session cache of executed notebooks; the runs themselves are in
tests/notebook_runs.py, the watch on a hung run in tests/kernel_watch.py, Chromium in tests/chromium.py), and the
order and pytest-xdist groups of the suite."""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import kernel_watch
from ftkit.core import Callback
from ftkit.data import FILES
from ftkit.utils import skip_iri_grammar
from notebook_runs import NOTEBOOKS, ROOT, TEST_PARAMETERS, execute_notebook, make_once

DATA = FILES          # the texts ftkit ships (ftkit/data/files)

# ---------------------------------------------------------------------------------------- the one thread policy
# Set here and nowhere else: one thread per process. The tests' models are tiny (a second thread only adds
# synchronization: up to 100x slower on a busy 2-core machine), and the suite's parallelism is pytest-xdist's
# worker processes, not threads. OMP_NUM_THREADS carries the policy into every process a test starts: papermill
# kernels, launch's workers (ftkit.launch takes OMP_NUM_THREADS when set), subprocesses. A test that needs another
# count for a moment (a count to be restored, say) uses ``with torch_threads(n):``.
THREADS = 1
os.environ["OMP_NUM_THREADS"] = str(THREADS)
torch.set_num_threads(THREADS)
kernel_watch.install()   # every kernel a test starts dumps its stacks on SIGUSR1 (a hung notebook run: see there)
skip_iri_grammar()       # before any nbformat import: each worker's papermill starts 2 s sooner; no test checks an IRI


def fresh_interpreter(code: str):
    """What ``code`` prints last (as JSON) when run in a new Python process (``json`` already imported)."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def torch_threads(n: int):
    """``with torch_threads(n):`` torch computes on ``n`` threads inside the block, the policy's count after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed():
    import ftkit
    ftkit.seed_everything(0)


# ---------------------------------------------------------------------------------------- the small training task
def mlp(inputs: int = 4, hidden: int = 16, classes: int = 3, *, dropout: float | None = None) -> nn.Sequential:
    """Linear → ReLU → (Dropout, when ``dropout`` is given, even 0.0) → Linear: the classifier the training tests
    fit. Its layers (and so its state_dict keys and its draws from the RNG) are fixed by the arguments alone."""
    layers = [nn.Linear(inputs, hidden), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout is not None else [])
    return nn.Sequential(*layers, nn.Linear(hidden, classes))


def toy_data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples of 4 features and 3 classes from a generator seeded 0: the same numbers as
    ``torch.manual_seed(0); torch.randn(n, 4), torch.randint(0, 3, (n,))``, without touching the global RNG."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, torch.randint(0, 3, (n,), generator=g)


X, Y = toy_data()     # the standard task: 64 samples (read-only: clone before changing them)


def toy_loader(batch_size: int = 4, data=None, shuffle: bool = True):
    """``data`` (default: the standard task) in batches of ``batch_size``."""
    from torch.utils.data import DataLoader, TensorDataset
    return DataLoader(data if data is not None else TensorDataset(X, Y), batch_size=batch_size, shuffle=shuffle)


def fit_toy(epochs, *, batch_size: int = 4, opt="sgd", lr: float = 0.1, dropout: float | None = None, seed: int = 1,
            model=None, data=None, callbacks=(), resume_from=None, scheduler=None, **kw):
    """``ftkit.fit`` on the standard task, seeded with ``seed``: returns ``(history, model)``. ``opt``: an optimizer
    name (built with ``lr``) or an optimizer; ``model``: default ``mlp(dropout=dropout)``."""
    import ftkit
    ftkit.seed_everything(seed)
    model = model or mlp(dropout=dropout)
    if opt is None or isinstance(opt, str):
        opt = ftkit.make_optimizer(opt or "sgd", model, lr=lr)
    history = ftkit.fit(model, toy_loader(batch_size, data), "cross_entropy", opt, epochs, callbacks=callbacks,
                        resume_from=resume_from, scheduler=scheduler, progress=False, **kw)
    return history, model


def weights(model) -> torch.Tensor:
    """All of a model's parameters as one flat tensor (to compare two models exactly)."""
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def fit_toy_adamw(epochs, **kw):
    """``fit_toy`` in batches of 16 with AdamW at 1e-2 and an MLP with dropout 0.2: ``(history, model)``."""
    return fit_toy(epochs, **{"batch_size": 16, "opt": "adamw", "lr": 1e-2, "dropout": 0.2, **kw})


@pytest.fixture
def blobs():
    """``(train_loader, val_loader)``: 600 two-dimensional points in 3 blobs, batches of 32."""
    from ftkit.data import synthetic
    x, y = synthetic.blobs(n=600, num_classes=3, spread=0.7)
    return synthetic.make_loaders(x, y, batch_size=32)


@pytest.fixture
def train_loader():
    """640 two-dimensional points in 3 blobs (512 for training): 16 batches of 32 per epoch."""
    from ftkit.data import synthetic
    x, y = synthetic.blobs(n=640, num_classes=3, spread=0.7)
    return synthetic.make_loaders(x, y, batch_size=32)[0]


class At(Callback):
    """Run ``action(state)`` at the end of global batch number ``n`` (counting from 1)."""

    def __init__(self, n, action):
        self.n, self.action, self.seen = n, action, 0

    def on_batch_end(self, state):
        self.seen += 1
        if self.seen == self.n:
            self.action(state)


class Values(Callback):
    """Writes ``val_loss`` from a dict {epoch: value} into each epoch's logs (a stand-in validation)."""

    def __init__(self, values):
        self.values = dict(values)

    def on_epoch_end(self, state):
        state.logs["val_loss"] = self.values[state.epoch]


class Pace(Callback):
    """Sleep after each batch: gives a driver thread (a widget's stand-in) time to act mid-training."""

    def __init__(self, seconds=0.002):
        self.seconds = seconds

    def on_batch_end(self, state):
        time.sleep(self.seconds)


def drive(actions, timeout=10.0):
    """Run ``[(condition, action), …]`` in order on a thread: each action once its condition holds."""
    def run():
        for condition, action in actions:
            deadline = time.monotonic() + timeout
            while not condition():
                if time.monotonic() > deadline:
                    return
                time.sleep(0.001)
            action()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


class StopAt(Callback):
    """Stops after optimizer step ``step`` (a mid-epoch resume point) or after epoch ``epoch``."""

    def __init__(self, step=None, epoch=None):
        self.step, self.epoch = step, epoch

    def on_batch_end(self, state):
        if self.step is not None and state.step == self.step:
            state.stop = True

    def on_epoch_end(self, state):
        if self.epoch is not None and state.epoch == self.epoch:
            state.stop = True


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A randomly initialised 2-layer, 64-wide BERT whose WordPiece vocabulary comes from the shipped CoNLL sample
    (``ftkit.nlp.tiny.build_tiny_bert``), built once per session (per xdist worker). Read-only: copy it to change it."""
    from ftkit.data import shipped
    from ftkit.nlp.tiny import build_tiny_bert
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert", shipped("conll2003_sample"))


@pytest.fixture
def torchmetrics():
    """The torchmetrics module, or a skip where it is absent (an extra: the floors env has none). Imported only by
    the tests that ask for it, which form one xdist group: its import loads transformers, torchvision, scipy and
    scikit-learn, about 8 s of CPU, which each worker paid while collecting when a test module imported it."""
    return pytest.importorskip("torchmetrics")


@pytest.fixture
def run_notebook(tmp_path):
    def run(name, *, check: bool = True, cwd: Path = ROOT, allow_stderr=(), **parameters):
        return execute_notebook(name, tmp_path, check, cwd=cwd, allow_stderr=allow_stderr, **parameters)
    return run


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory) -> Path:
    """A folder every pytest-xdist worker of this session sees (the session's base temp without xdist)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared"
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def fake_cifar10(shared_dir) -> Path:
    """A CIFAR-10 folder in the real format: 600 training and 200 test images with a learnable signal (noise 1.0),
    written once per session (notebook 03's test and the browser test run the notebook on it)."""
    from ftkit.data.fake import write_fake_cifar10
    return make_once(shared_dir / "fake-cifar10-600",
                     lambda d: write_fake_cifar10(d, n_train=600, n_test=200, noise=1.0))


@pytest.fixture(scope="session")
def executed_notebook(shared_dir):
    """``executed_notebook(name, **parameters) -> (executed .ipynb path, metrics)``: each notebook runs once per
    session and parameter set (``TEST_PARAMETERS[name]`` under the given ones), whichever test asks first
    (pytest-xdist workers share the folder, under a lock), so a test of what is built from an executed notebook
    (the static site) does not train again."""
    import hashlib

    def run(name: str, **parameters):
        parameters = {**TEST_PARAMETERS.get(name, {}), **parameters}
        key = hashlib.sha1(json.dumps([name, parameters], sort_keys=True, default=str).encode()).hexdigest()[:10]
        def make(folder):
            if name in IN_JUPYTERLAB:      # its browser test is selected and Chromium is there
                IN_JUPYTERLAB[name](folder, **parameters)
            else:
                execute_notebook(name, folder, **parameters)
        out = make_once(shared_dir / f"{Path(name).stem}-{key}", make)
        with open(out / "metrics.json") as f:
            return out / name, json.load(f)
    return run


# The notebooks whose one execution per suite run is a Run All in JupyterLab: their browser test reads what the page
# showed, their notebook test the metrics — where that browser test is selected and Chromium is there (filled in by
# pytest_collection_modifyitems below: {notebook: runner}); papermill everywhere else.
BROWSER_RUNS = {"03_cifar10_cnn.ipynb": ("tests/test_browser.py::test_notebook_03_runs_all_in_jupyterlab_with_its_"
                                         "training_figure_once", "run_03_in_jupyterlab")}
IN_JUPYTERLAB: dict = {}


def pytest_collection_finish(session):
    """After every deselection (``-m``, ``-k``): a notebook runs in JupyterLab only if its browser test will run."""
    IN_JUPYTERLAB.clear()
    selected = {item.nodeid.split("@")[0] for item in session.items}     # xdist adds "@group" to a grouped test's id
    for name, (nodeid, runner) in BROWSER_RUNS.items():
        if nodeid in selected:
            import test_browser
            if test_browser.browser_ready() is None:
                IN_JUPYTERLAB[name] = getattr(test_browser, runner)


# ------------------------------------------------------------------------------------- order and pytest-xdist groups
HEAVY = ("browser", "notebook", "multiprocess")     # the slow kinds, slowest first


def wants_colab(markexpr: str) -> bool:
    """Whether a ``-m`` expression names the ``colab`` marker (``-m colab``, ``-m "colab and notebook"``): the
    Colab-env tests run only then, whatever else ``-m`` says (a user's ``-m "not notebook"`` would otherwise
    select them, since it replaces any ``-m`` in addopts)."""
    import re
    return re.search(r"\bcolab\b", markexpr or "") is not None     # "not colab" too: then -m itself decides


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Three things. The Colab-env tests (marker ``colab``) are deselected unless ``-m`` names ``colab``: they need
    the Python 3.13 env ``.ci/colab-env`` builds. And for ``pytest -n 3 --dist loadgroup`` (harmless without xdist):
    the slow tests (browser, notebook, multiprocess) run first, so the workers finish together instead of one
    waiting on a notebook started last; and the tests that share a fixture of their module (a sweep, a built model)
    form one xdist group, so the fixture is built once, on one worker. The order within each kind and each file is
    kept. The tests of the ``torchmetrics`` fixture form a group too: one worker imports it."""
    if not wants_colab(config.getoption("markexpr", "")):
        colab = [item for item in items if item.get_closest_marker("colab")]
        if colab:
            config.hook.pytest_deselected(items=colab)
            items[:] = [item for item in items if not item.get_closest_marker("colab")]

    def weight(item):
        return next((i for i, kind in enumerate(HEAVY) if item.get_closest_marker(kind)), len(HEAVY))

    for item in items:
        if "torchmetrics" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group("torchmetrics"))     # one worker imports it
            continue
        info = getattr(item, "_fixtureinfo", None)
        for name in getattr(item, "fixturenames", ()):
            defs = info.name2fixturedefs.get(name) if info is not None else None
            if defs and defs[-1].scope == "module" and not item.get_closest_marker("xdist_group"):
                item.add_marker(pytest.mark.xdist_group(item.module.__name__))
                break
    items[:] = sorted(items, key=weight)     # sorted() is stable: each file's order stays


