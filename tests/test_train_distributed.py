"""fit() on two gloo processes (CPU) through ftkit.launch / Accelerate, compared with one plain process.

Each test launches 2 forked processes; a hang fails the test by its timeout instead of stalling the suite.
"""
from __future__ import annotations

import os
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ftkit.data import shipped
import ftkit
from ftkit.train.callbacks import Callback, ModelCheckpoint
from ftkit.core import StopTraining
from ftkit.data.images import TensorLoader
from ftkit.train.sharding import shard, slice_bounds
from ftkit.train.launcher import _cells_touching_cuda, launch, why_not_launch
from conftest import torch_threads

N, BATCH = 100, 16          # 7 global batches per epoch, the last one of 4 samples (2 per process)


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def table(n=N):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    x[:, 0] = torch.arange(n) / N                        # column 0: the sample id / N
    return x, (x[:, 1] + x[:, 2] > 0).long()


def images(n=N):
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = torch.arange(n) // 256, torch.arange(n) % 256   # the sample id in two pixels
    return x, torch.randint(0, 10, (n,), generator=g)


class Recorder(nn.Module):
    """A small net that remembers the ids of the samples it trained on."""

    def __init__(self, net, ids):
        super().__init__()
        self.net, self.ids, self.seen = net, ids, []

    def forward(self, x):
        if self.training:
            self.seen += self.ids(x).tolist()
        return self.net(x)


def table_model():
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    return Recorder(net, lambda x: (x[:, 0] * N).round().long())


def image_model():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 10))
    return Recorder(net, lambda x: (x[:, 0, 0, 0] * 255).round().long() * 256 + (x[:, 0, 0, 1] * 255).round().long())


def table_loaders(shuffle=True, n=N):
    x, y = table(n)
    return (DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=shuffle),
            DataLoader(TensorDataset(x[:30], y[:30]), batch_size=7))


def image_loader(augment, n=N):
    x, y = images(n)
    return TensorLoader(x, y, BATCH, mean=(0, 0, 0), std=(1, 1, 1), shuffle=True, augment=augment, device="cpu")


def train(kind, epochs=2, callbacks=(), grad_accum=1, scheduler=None, resume_from=None, out=None, lr=0.1, n=N,
          metrics=("accuracy",)):
    """One fit on whatever processes run this; returns what the tests compare (and saves it per rank)."""
    ftkit.seed_everything(0)
    model = table_model() if kind == "table" else image_model()
    opt = ftkit.make_optimizer("sgd", model, lr=lr, momentum=0.9)
    loader, val = table_loaders(n=n) if kind == "table" else (image_loader(augment=kind == "augmented", n=n), None)
    h = ftkit.fit(model, loader, "cross_entropy", opt, epochs, val_loader=val, metrics=list(metrics), device="cpu",
                  callbacks=list(callbacks), grad_accum=grad_accum, scheduler=scheduler, resume_from=resume_from,
                  progress=False)
    result = {"rank": rank(), "losses": [r["loss"] for r in h.steps], "lrs": [r["lr"] for r in h.steps],
              "epochs": [{k: v for k, v in row.items() if k != "time"} for row in h.epochs], "events": h.events,
              "stop_reason": h.stop_reason, "seen": model.seen, "opt_lr": opt.param_groups[0]["lr"],
              "weights": {k: v.clone() for k, v in model.state_dict().items()}}
    if out is not None:
        torch.save(result, os.path.join(out, f"rank{rank()}.pt"))
    return result


def per_rank(out):
    return [torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=False) for r in (0, 1)]


def assert_same_run(a, b, tol=1e-5, weight_tol=None):
    assert len(a["losses"]) == len(b["losses"]) > 0
    assert max(abs(x - y) for x, y in zip(a["losses"], b["losses"])) <= tol
    assert a["lrs"] == pytest.approx(b["lrs"], nan_ok=True)
    for ra, rb in zip(a["epochs"], b["epochs"], strict=True):
        assert ra.keys() == rb.keys() and list(ra.values()) == pytest.approx(list(rb.values()), abs=tol)
    assert max((a["weights"][k] - b["weights"][k]).abs().max().item() for k in a["weights"]) <= (weight_tol or tol)


def both_kinds(out):
    return {"table": train("table", grad_accum=2, out=out), "augmented": train("augmented")}


@pytest.mark.multiprocess
@pytest.mark.timeout(90)
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    two = launch(both_kinds, None, num_processes=2, device="cpu")
    # DataLoader (shuffled, uneven last batch, grad_accum=2, val metrics) and the tensor-resident loader with
    # augmentation: every loss, epoch metric and final weight of the 2-process run equals the 1-process run
    assert_same_run(two["table"], train("table", grad_accum=2))
    assert_same_run(two["augmented"], train("augmented"))
    assert two["table"]["epochs"][-1]["val_accuracy"] > 0.5


N_UNEVEN = 99  # 6 global batches of 16, then one of 3: 2 samples on one process, 1 on the other


def uneven_kinds(out):
    return {"table": train("table", n=N_UNEVEN), "augmented": train("augmented", n=N_UNEVEN)}


@pytest.mark.multiprocess
@pytest.mark.timeout(90)
def test_uneven_last_batch_is_weighted_by_samples_not_by_process(tmp_path):
    """The last batch splits 2 + 1: averaging the two processes' mean losses equally would weigh the lone
    sample twice as much as each of the other two (loss, gradient and epoch means all change)."""
    two = launch(uneven_kinds, None, num_processes=2, device="cpu")
    for kind in ("table", "augmented"):
        one = train(kind, n=N_UNEVEN)
        assert len(one["losses"]) == 2 * 7
        assert_same_run(two[kind], one)


def seen_twice(out):
    for kind in ("table", "images"):
        train(kind, out=os.path.join(out, kind))


@pytest.mark.multiprocess
@pytest.mark.timeout(90)
def test_each_sample_is_seen_exactly_once_per_epoch(tmp_path):
    for kind in ("table", "images"):
        (tmp_path / kind).mkdir()
    launch(seen_twice, str(tmp_path), num_processes=2, device="cpu")
    for kind in ("table", "images"):
        ranks = per_rank(tmp_path / kind)
        per_epoch = [r["seen"][e * len(r["seen"]) // 2:(e + 1) * len(r["seen"]) // 2] for r in ranks for e in (0, 1)]
        assert [len(s) for s in per_epoch] == [N // 2] * 4                 # 50 samples per process per epoch
        for epoch in (0, 1):
            mine, theirs = per_epoch[epoch], per_epoch[2 + epoch]
            assert sorted(mine + theirs) == list(range(N))                 # the union is one epoch, no repeats
        assert per_epoch[0] != per_epoch[1]                                 # reshuffled each epoch


class SetLROnRank0(Callback):
    """Like the dashboard's slider: a manual lr, set on the main process only, before step ``at``."""

    def __init__(self, at, lr):
        self.at, self.lr = at, lr

    def on_batch_start(self, state):
        if rank() == 0 and state.step == self.at and not state.history.events:
            state.lr_schedule.set(state, source="slider", lr=self.lr)


def lr_change(out):
    train("table", callbacks=[SetLROnRank0(3, 0.01)], scheduler="cosine", out=out)


@pytest.mark.multiprocess
@pytest.mark.timeout(90)
def test_lr_set_on_rank0_is_used_by_both_ranks_from_the_next_step(tmp_path):
    launch(lr_change, str(tmp_path), num_processes=2, device="cpu")
    r0, r1 = per_rank(tmp_path)
    assert r0["lrs"] == r1["lrs"]
    assert r1["lrs"][3:] == [0.01] * (len(r1["lrs"]) - 3)                   # step 4 on: the manual lr, on rank 1 too
    assert r1["lrs"][1] < r1["lrs"][0] == 0.1                               # before it: the cosine schedule
    assert r1["opt_lr"] == 0.01
    assert r1["events"] == r0["events"]                                      # recorded on both ranks, same step
    assert [(e["step"], e["name"], e["new"], e["source"]) for e in r1["events"]] == [(3, "lr", 0.01, "slider")]
    assert_same_run(r0, r1, tol=0)                                           # the ranks stepped identically
    assert_same_run(r0, train("table", callbacks=[SetLROnRank0(3, 0.01)], scheduler="cosine"))


class StopOnRank0(Callback):
    def __init__(self, at):
        self.at = at

    def on_batch_end(self, state):
        if rank() == 0 and state.step == self.at:
            state.stop, state.stop_reason = True, f"user stop at step {self.at}"


class LoggedCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint that notes which rank wrote."""

    def on_epoch_end(self, state):
        super().on_epoch_end(state)
        self._note()

    def on_fit_end(self, state):
        super().on_fit_end(state)
        self._note()

    def _note(self):
        with open(os.path.join(self.dirpath, "writers.txt"), "a") as f:
            f.write(f"{rank()}\n")


def stop_then_resume(out, ckpt):
    if not os.path.exists(os.path.join(ckpt, "last.pt")):
        return train("table", epochs=3, callbacks=[StopOnRank0(9), LoggedCheckpoint(ckpt)], out=out)
    return train("table", epochs=3, resume_from=os.path.join(ckpt, "last.pt"), out=out)


@pytest.mark.multiprocess
@pytest.mark.timeout(120)
def test_stop_on_rank0_then_resume_on_two_and_on_one_process(tmp_path):
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    out.mkdir()
    launch(stop_then_resume, str(out), str(ckpt), num_processes=2, device="cpu")
    r0, r1 = per_rank(out)
    assert r0["stop_reason"] == r1["stop_reason"] == "user stop at step 9"  # mid-epoch 2, on both ranks
    assert len(r0["losses"]) == len(r1["losses"]) == 9
    assert (ckpt / "writers.txt").read_text().split() == ["0", "0"]           # epoch 1 end + the stop: rank 0 only
    straight = train("table", epochs=3)
    resumed_here = train("table", epochs=3, resume_from=str(ckpt / "last.pt"))  # 2 processes → 1
    assert_same_run(resumed_here, straight)
    launch(stop_then_resume, str(out), str(ckpt), num_processes=2, device="cpu")  # 2 → 2
    assert_same_run(per_rank(out)[1], straight)


class RaiseStopOnRank0(Callback):
    def on_batch_end(self, state):
        if rank() == 0 and state.step == 4:
            raise StopTraining("raised on rank 0 at step 4")


def raise_stop(out):
    train("table", callbacks=[RaiseStopOnRank0()], out=out)


@pytest.mark.multiprocess
@pytest.mark.timeout(60)
def test_stop_training_raised_on_rank0_stops_both(tmp_path):
    launch(raise_stop, str(tmp_path), num_processes=2, device="cpu")
    r0, r1 = per_rank(tmp_path)
    assert r0["stop_reason"] == r1["stop_reason"] == "raised on rank 0 at step 4"
    assert len(r0["losses"]) == len(r1["losses"]) == 4
    assert_same_run(r0, r1, tol=0)


def fails_on_rank1(_):
    class Boom(Callback):
        def on_batch_end(self, state):
            if rank() == 1 and state.step == 2:
                raise ValueError("boom on rank 1")
    train("table", callbacks=[Boom()])


@pytest.mark.multiprocess
@pytest.mark.timeout(60)
def test_a_failing_worker_is_reported_with_its_rank_without_a_hang():
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"process 1 of 2 failed: ValueError: boom on rank 1") as e:
        launch(fails_on_rank1, None, num_processes=2, device="cpu")
    assert "other processes were stopped" in str(e.value)
    assert time.perf_counter() - t0 < 45                                     # rank 0 sat in an all-reduce: killed


class HalfUsed(nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.spare = nn.Linear(8, 2), nn.Linear(8, 2)

    def forward(self, x):
        return self.used(x)


def unused_parameter(_):
    model = HalfUsed()
    loader, _ = table_loaders()
    ftkit.fit(model, loader, "cross_entropy", ftkit.make_optimizer("sgd", model, lr=0.1), 1, device="cpu",
              progress=False)


@pytest.mark.multiprocess
@pytest.mark.timeout(60)
def test_unused_parameters_name_the_ddp_option():
    message = r"process \d of 2 failed: ValueError: 2 trainable parameters got no gradient in the first step " \
              r"\(spare\.weight, spare\.bias\).*find_unused_parameters"
    with pytest.raises(RuntimeError, match=message):
        launch(unused_parameter, None, num_processes=2, device="cpu")


# --------------------------------------------------------------------------- bad input, no processes started
def test_launch_checks_num_processes():
    with pytest.raises(ValueError, match="num_processes must be a whole number >= 1, got 0"):
        launch(print, num_processes=0, device="cpu")
    cores = os.cpu_count()
    with pytest.raises(ValueError, match=rf"num_processes={cores + 1} but this machine has {cores} CPU cores"):
        launch(print, num_processes=cores + 1, device="cpu")


def test_launch_after_cuda_was_initialized_says_which_cell(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(RuntimeError, match=r"CUDA was already initialized.*move that code.*into train_fn"):
        launch(print, num_processes=2)
    cells = ["", "import ftkit", "model = Net().to('cuda')", "loaders = make_loaders(data, 512)",
             "ftkit.launch(train, num_processes=2)"]
    assert _cells_touching_cuda(cells) == ["In[2]: model = Net().to('cuda')",
                                           "In[3]: loaders = make_loaders(data, 512)"]


def test_global_batch_must_split_over_the_processes():
    x, y = table()
    with pytest.raises(ValueError, match=r"batch_size=15 does not split evenly over 2 processes.*e\.g\. 14 or 16"):
        shard(DataLoader(TensorDataset(x, y), batch_size=15), 0, 2, train=True)
    with pytest.raises(ValueError, match=r"last batch of each epoch has 1 sample \(97 samples.*drop_last=True"):
        shard(DataLoader(TensorDataset(x[:97], y[:97]), batch_size=16), 0, 2, train=True)
    shard(DataLoader(TensorDataset(x[:97], y[:97]), batch_size=16, drop_last=True), 0, 2, train=True)
    with pytest.raises(ValueError, match=r"batch_size=15 does not split evenly over 2"):
        shard(TensorLoader(*images(), 15, mean=(0,) * 3, std=(1,) * 3, device="cpu"), 0, 2, train=True)
    from torch.utils.data import DistributedSampler
    ds = TensorDataset(x, y)
    with pytest.raises(ValueError, match="already has a DistributedSampler.*pass the plain loader"):
        shard(DataLoader(ds, batch_size=16, sampler=DistributedSampler(ds, num_replicas=2, rank=0)), 0, 2, train=True)
    odd_batches = [(x[:15], y[:15]), (x[15:20], y[15:20])]                  # a list of batches: checked as it goes
    with pytest.raises(ValueError, match=r"batch_size=15 does not split evenly"):
        list(shard(odd_batches, 0, 2, train=True))


def test_slices_partition_every_batch():
    for n in range(1, 40):
        for world in (1, 2, 3, 8):
            parts = [slice_bounds(n, r, world) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(b - a for a, b in parts) - min(b - a for a, b in parts) <= 1
    loader = DataLoader(TensorDataset(torch.arange(10)), batch_size=4)
    slices = [[b[0].tolist() for b in shard(loader, r, 2, train=False)] for r in (0, 1)]
    assert slices == [[[0, 1], [4, 5], [8]], [[2, 3], [6, 7], [9]]]


def test_one_process_runs_the_plain_loop():
    assert ftkit.train.distributed.distributed_for(None) is None                  # no WORLD_SIZE: fit is unchanged
    assert launch(lambda a: a + 1, 41, num_processes=1, device="cpu") == 42


def test_a_launch_leaves_the_kernel_as_it_found_it():
    """A 1-process launch runs train_fn in the calling process (the kernel): its thread count and progress bars
    come back as they were, whatever train_fn changed."""
    import tqdm.auto

    def meddle():
        torch.set_num_threads(1)
        tqdm.auto.tqdm = object
        return 7

    with torch_threads(2):                # not the count meddle sets: its change must be undone to be unseen
        threads, bar = torch.get_num_threads(), tqdm.auto.tqdm
        assert launch(meddle, num_processes=1, device="cpu") == 7
        assert (torch.get_num_threads(), tqdm.auto.tqdm) == (threads, bar) == (2, bar)


def test_why_not_launch_explains_instead_of_pretending(monkeypatch):
    cores = os.cpu_count()
    assert why_not_launch(2, "cpu") is None if cores >= 2 else "fewer than" in why_not_launch(2, "cpu")
    assert "at least 2 processes" in why_not_launch(1, "cpu")
    assert f"this machine has {cores} CPU core" in why_not_launch(cores + 1, "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert "this machine has 1 GPU, fewer than the 2 processes" in why_not_launch(2, "cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert why_not_launch(4, "cuda") is None


SAMPLE = str(shipped("conll2003_sample"))


def ner_run(folder):
    """BERT token classification: dict batches, the model's own loss over non-(-100) labels, length-grouped
    batches padded per process, entity F1 summed over the processes."""
    from ftkit.data.conll import load_conll
    from ftkit.nlp.ner import NerTagger, entity_f1
    ftkit.seed_everything(0)
    data = load_conll(SAMPLE)
    tagger = NerTagger.from_pretrained(folder, label_list=data.label_list)
    train_loader = tagger.loader(tagger.encode(data.train), 16, shuffle=True, sort_by_length=True, seed=0)
    val_loader = tagger.loader(tagger.encode(data.valid), 32, sort_by_length=True)
    opt = ftkit.make_optimizer("adamw", tagger.model, lr=1e-3)
    h = ftkit.fit(tagger.model, train_loader, None, opt, 1, val_loader=val_loader,
                  metrics=[entity_f1(tagger.label_list)], device="cpu", progress=False)
    return {"rank": rank(), "losses": [r["loss"] for r in h.steps], "lrs": [r["lr"] for r in h.steps],
            "epochs": [{k: v for k, v in row.items() if k != "time"} for row in h.epochs],
            "weights": {k: v.clone() for k, v in tagger.model.state_dict().items()}}


@pytest.mark.multiprocess
@pytest.mark.timeout(120)
def test_bert_ner_on_two_processes_equals_one(tmp_path):
    from ftkit.nlp.tiny import build_tiny_bert
    folder = build_tiny_bert(tmp_path / "bert", SAMPLE, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    two = launch(ner_run, folder, num_processes=2, device="cpu")
    with torch_threads(1):                # the reference on one core, like each of the two processes
        one = ner_run(folder)
    assert_same_run(two, one, weight_tol=5e-5)   # AdamW's 1/sqrt(v) lifts float rounding a little above 1e-5
    assert two["epochs"][0]["val_f1"] == one["epochs"][0]["val_f1"]


def test_launch_section_says_why_it_did_not_run(capsys):
    from ftkit.train.launcher import launch_section
    assert launch_section(lambda: None, False, 2, "cpu") == (None, None)
    assert capsys.readouterr().out == ("This section did not run: ddp = False (set ddp = True in the parameters "
                                       "cell)\n")
    assert launch_section(lambda: None, True, 1, "cpu") == (None, None)
    assert "num_processes=1: data-parallel training needs at least 2 processes" in capsys.readouterr().out


def whole_split_metrics():
    """torchmetrics objects whose value is not a mean of batch values: a macro F1 and an AUROC."""
    import torchmetrics
    return [torchmetrics.F1Score(task="multiclass", num_classes=2, average="macro"),
            torchmetrics.AUROC(task="multiclass", num_classes=2)]


def train_with_torchmetrics():
    return train("table", epochs=3, metrics=whole_split_metrics())


def torchmetrics_stop_then_resume(out, ckpt):
    if not os.path.exists(os.path.join(ckpt, "last.pt")):
        return train("table", epochs=3, callbacks=[StopOnRank0(10), ModelCheckpoint(ckpt)], out=out,
                     metrics=whole_split_metrics())
    return train("table", epochs=3, resume_from=os.path.join(ckpt, "last.pt"), out=out, metrics=whole_split_metrics())


@pytest.mark.multiprocess
@pytest.mark.timeout(180)
def test_torchmetrics_on_two_processes_equal_the_whole_set_and_survive_a_mid_epoch_resume(tmp_path, torchmetrics):
    """A macro F1 and an AUROC on 2 processes: each epoch's value is the whole split's (equal to one process), and
    after a stop inside epoch 2 (step 10 of 7 per epoch) the checkpoint holds both processes' metric states, so a
    resume on 2 processes or on 1 logs the values of an uninterrupted run (≤ 1e-6)."""
    ckpt, out = tmp_path / "ckpt", tmp_path / "out"
    out.mkdir()
    straight = train("table", epochs=3, metrics=whole_split_metrics())
    two = launch(train_with_torchmetrics, num_processes=2, device="cpu")
    assert_same_run(two, straight)
    x, y = table()
    model = table_model().net
    model.load_state_dict({k.removeprefix("net."): v for k, v in straight["weights"].items()})
    with torch.no_grad():
        logits = model(x[:30])
    whole = torchmetrics.functional.f1_score(logits, y[:30], task="multiclass", num_classes=2, average="macro")
    assert two["epochs"][-1]["val_multiclass_f1_score"] == pytest.approx(whole.item(), abs=1e-6)
    launch(torchmetrics_stop_then_resume, str(out), str(ckpt), num_processes=2, device="cpu")
    assert per_rank(out)[0]["stop_reason"] == "user stop at step 10"
    resumed_here = train("table", epochs=3, resume_from=str(ckpt / "last.pt"), metrics=whole_split_metrics())
    assert_same_run(resumed_here, straight, tol=1e-6)                                   # 2 processes → 1
    launch(torchmetrics_stop_then_resume, str(out), str(ckpt), num_processes=2, device="cpu")
    assert_same_run(per_rank(out)[0], straight, tol=1e-6)                               # 2 → 2


class BreakOnRank0(Callback):
    def on_batch_end(self, state):
        if rank() == 0 and state.step == 10:
            raise RuntimeError("rank 0 broke at step 10")


def break_on_rank0(ckpt):
    train("table", epochs=3, callbacks=[BreakOnRank0(), ModelCheckpoint(ckpt)])


@pytest.mark.multiprocess
@pytest.mark.timeout(120)
def test_an_error_on_one_process_leaves_a_last_pt_whose_partial_metrics_a_resume_refuses(tmp_path):
    """Process 0 fails alone inside epoch 2: its last.pt holds only its share of that epoch's accuracy totals.
    Resuming from it would log a wrong train_accuracy for epoch 2, so it is refused, saying why."""
    with pytest.raises(RuntimeError, match="rank 0 broke at step 10"):
        launch(break_on_rank0, str(tmp_path), num_processes=2, device="cpu")
    with pytest.raises(ValueError, match=r"written inside epoch 2 by process 0 of 2 after an error or interrupt .*"
                                         r"\(accuracy\) hold only process 0's share.* Resume with metrics=\[\]"):
        train("table", epochs=3, resume_from=str(tmp_path / "last.pt"))
    resumed = train("table", epochs=3, resume_from=str(tmp_path / "last.pt"), metrics=())   # the way out it names
    straight = train("table", epochs=3)
    assert len(resumed["losses"]) == len(straight["losses"]) == 21
    assert max(abs(a - b) for a, b in zip(resumed["losses"], straight["losses"])) <= 1e-5
    assert "train_accuracy" not in resumed["epochs"][-1]
