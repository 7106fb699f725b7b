"""Seeding, device choice, the argument checks every factory uses, and the set-up of processes that run notebooks."""
from __future__ import annotations

import asyncio
import random
import re
import time
from queue import Empty

import numpy as np
import pytest
import torch

import ftkit
from ftkit.utils import check_int, check_number, choose, get_device, seed_everything

from conftest import fresh_interpreter


def draws():
    return torch.randn(5), random.random(), np.random.rand()


def test_seed_everything_makes_draws_repeatable():
    assert seed_everything(123) == 123
    first = draws()
    seed_everything(123)
    again = draws()
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]
    seed_everything(124)
    assert not torch.equal(draws()[0], first[0])


def test_get_device_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert get_device("auto").type == get_device().type == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert get_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert get_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device("auto") == torch.device("cuda")


def test_get_device_explicit_and_errors(monkeypatch):
    assert get_device("cpu") == torch.device("cpu")
    dev = torch.device("cpu")
    assert get_device(dev) is dev
    with pytest.raises(ValueError, match=r"unknown device 'gpu'; use 'auto', 'cpu', 'cuda', 'cuda:0' or 'mps'"):
        get_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device 'cuda:0' asked for, but CUDA is not available here; "
                                         r"use device='auto' or 'cpu'"):
        get_device("cuda:0")
    with pytest.raises(ValueError, match=r"device 'mps' asked for, but MPS \(Apple GPU\) is not available"):
        get_device("mps")


def test_check_number_names_the_argument():
    assert check_number("lr", 0.1) == 0.1 and check_number("lr", torch.tensor(2)) == 2.0
    assert check_number("lr", 0) == 0.0
    with pytest.raises(ValueError, match=r"lr must be a number, got 'fast'"):
        check_number("lr", "fast")
    with pytest.raises(ValueError, match=r"lr must be finite, got nan"):
        check_number("lr", float("nan"))
    with pytest.raises(ValueError, match=r"lr must be >= 0, got -1"):
        check_number("lr", -1)
    with pytest.raises(ValueError, match=r"kappa must be > 0, got 0"):
        check_number("kappa", 0, positive=True)


@pytest.mark.parametrize("value", [0, -3, 2.5, 3.0, "3", True, None])
def test_check_int_words_every_count_one_way_and_the_notebook_says_the_same(value):
    from ftkit.notebook import Int, ParameterError
    with pytest.raises(ValueError, match=rf"^epochs must be a whole number >= 1 \(passes\), got {re.escape(repr(value))}$"):
        check_int("epochs", value, meaning=" (passes)")
    with pytest.raises(ValueError, match=r"^seed must be a whole number >= 0, got -1$"):
        check_int("seed", -1, 0)
    with pytest.raises(ValueError, match=r"^k must be a whole number from 1 to 5, got 6$"):
        check_int("k", 6, maximum=5)
    assert check_int("epochs", np.int64(3)) == 3 and type(check_int("epochs", np.int64(3))) is int
    if value is not None and value != 3.0:    # None: the notebook's own message; 3.0: taken as 3 (below)
        with pytest.raises(ParameterError, match=rf"^parameter epochs={re.escape(repr(value))}: expected a whole number >= 1$"):
            Int(min=1).check("epochs", value)
    assert Int(min=1).check("epochs", 3.0) == 3


def test_choose_forgives_case_and_dashes_and_lists_choices():
    registry = {"linear_warmup": 1, "cosine": 2}
    assert choose("scheduler", "Linear-Warmup", registry) == 1
    with pytest.raises(ValueError, match=r"unknown scheduler 'cos'; choose one of: cosine, linear_warmup"):
        choose("scheduler", "cos", registry)


def test_names_are_chosen_with_a_suggestion_and_gpu_points_to_cuda():
    from ftkit.utils import check_keys, choose
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamm'; choose one of: adam, sgd; did you mean 'adam'\?"):
        choose("optimizer", "adamm", {"adam": 1, "sgd": 2})
    assert choose("scheduler", "One-Cycle", {"one_cycle": 3}) == 3
    with pytest.raises(ValueError, match=r"make_optimizer has an unknown option 'lrr': did you mean 'lr'\? optimizer "
                                         r"'sgd' takes lr, momentum"):
        check_keys(["lrr"], {"lr", "momentum"}, "make_optimizer", "optimizer 'sgd'")
    with pytest.raises(ValueError, match=r"unknown device 'gpu'; .*did you mean 'cuda'\?"):
        get_device("gpu")


def test_seed_everything_refuses_what_is_not_a_whole_number():
    for bad in ("abc", "1", 1.5, -1, None, True):
        with pytest.raises(ValueError, match="seed must be a whole number from 0 to 2\\*\\*63 - 1"):
            ftkit.seed_everything(bad)
    assert ftkit.seed_everything(np.int64(3)) == 3 and torch.initial_seed() == 3


def test_get_device_takes_every_torch_device_string_a_user_may_pass(monkeypatch):
    """'cpu:0' (what torch prints for a tensor's device), 'cpu:1' and a torch.device are CPU; 'cuda:1' is taken when
    that GPU is there and refused with the count when it is not; 'meta' (no data) and others are refused."""
    assert get_device("cpu:0") == torch.device("cpu", 0) and get_device(" CPU ") == torch.device("cpu")
    assert get_device(torch.device("cpu", 0)).type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert get_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"device 'cuda:2' asked for, but this machine has 2 CUDA GPUs "
                                         r"\(cuda:0 to cuda:1\)"):
        get_device("cuda:2")
    with pytest.raises(ValueError, match=r"device 'meta' holds no data \(shapes only\), so nothing can be trained "
                                         r"or evaluated on it; use 'auto', 'cpu' or 'cuda'"):
        get_device("meta")
    with pytest.raises(ValueError, match=r"unknown device 'cpu0'; use 'auto', 'cpu', 'cuda', 'cuda:0' or 'mps'; "
                                         r"did you mean 'cpu'\?"):
        get_device("cpu0")
    with pytest.raises(ValueError, match=r"unknown device 'xla'"):
        get_device("xla")


def test_a_notebook_process_skips_the_iri_grammar_and_still_validates_notebooks():
    """After skip_iri_grammar, nbformat loads without rfc3987-syntax and still refuses an invalid notebook."""
    assert fresh_interpreter(
        "import sys; from ftkit.utils import skip_iri_grammar; skip_iri_grammar(); import nbformat\n"
        "nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('1')]); nbformat.validate(nb)\n"
        "del nb.cells[0]['source']\n"
        "try:\n    nbformat.validate(nb); refused = False\nexcept nbformat.ValidationError:\n    refused = True\n"
        "print(json.dumps([sys.modules.get('rfc3987_syntax', 'absent'), refused]))") == [None, True]


def test_kernel_polls_in_slices_see_a_message_whose_wakeup_was_missed_within_a_slice(monkeypatch):
    """A message that is there but whose wakeup the poll missed is seen only when the poll ends: with slices of
    0.05 s it is read after one slice instead of at the 30-s timeout; with no message, Empty comes at the timeout."""
    from jupyter_client.asynchronous.client import AsyncKernelClient
    from ftkit.utils import kernel_channel_class, poll_kernels_in_slices
    channel = kernel_channel_class(AsyncKernelClient)       # the class papermill's client waits on
    waiting = {"message": True}

    async def missed_wakeup(self, timeout=None):      # sees what is there only when its timeout ends
        await asyncio.sleep(timeout if timeout is not None else 3600)
        if waiting["message"]:
            return {"msg_id": "reply"}
        raise Empty

    monkeypatch.setattr(channel, "get_msg", missed_wakeup)
    poll_kernels_in_slices(every=0.05)
    poll_kernels_in_slices(every=0.05)                # a second call does not wrap it twice

    def timed(timeout):
        t0 = time.monotonic()
        try:
            got = asyncio.run(channel.get_msg(None, timeout=timeout))
        except Empty:
            got = "empty"
        return got, time.monotonic() - t0

    got, seconds = timed(30)
    assert got == {"msg_id": "reply"} and seconds < 1.0
    got, seconds = timed(None)                        # no timeout: still one slice
    assert got == {"msg_id": "reply"} and seconds < 1.0
    waiting["message"] = False
    got, seconds = timed(0.3)
    assert got == "empty" and 0.3 <= seconds < 1.0
    got, seconds = timed(0)                           # a look without waiting
    assert got == "empty" and seconds < 0.5
