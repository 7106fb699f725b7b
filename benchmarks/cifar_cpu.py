"""CIFAR-10 on CPU: fit() versus a hand-written loop (SimpleCNN), and TensorLoader versus the DataLoader path.

Both contenders run alternately in one process, several rounds after a warm-up; the JSON line holds medians.
1. The same SimpleCNN, seed, Adam and TensorLoader batches trained by ``ftkit.fit`` (default callbacks: history
   and progress bar) and by the ten-line loop below. Goal: time ratio fit/plain <= 1.03 with identical test
   accuracy (same seed, same batches: the weights should match bit for bit).
2. Images/s of one augmented epoch (crop + flip + normalize) from ``TensorLoader`` and from
   ``ftkit.data.images.make_loader()`` (torchvision ``transforms.v2`` per image in a ``DataLoader``).

Data: ``--data-dir`` with the real ``cifar-10-batches-py`` (``--subset`` images of it), else a learnable fake
in the real file format (``write_fake_cifar10``).
    python benchmarks/cifar_cpu.py [--data-dir data/cifar10] [--subset 2048] [--epochs 1] [--repeats 5]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time

import torch

import ftkit
from ftkit.data import cifar10 as C, fake
from ftkit.data import images as L
from ftkit.models import SimpleCNN


def loader(data, batch_size, seed):
    ftkit.seed_everything(seed)  # same weights below, same shuffles and crops in both contenders
    return L.TensorLoader(*data.train, batch_size, mean=data.mean, std=data.std, shuffle=True, augment=True,
                          device="cpu")


def plain(data, batch_size, epochs, lr, seed):
    train_loader = loader(data, batch_size, seed)
    model = SimpleCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        for x, y in train_loader:
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            last = loss.item()  # a real loop logs the loss
    return model, last


def with_fit(data, batch_size, epochs, lr, seed):
    train_loader = loader(data, batch_size, seed)
    model = SimpleCNN()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with contextlib.redirect_stdout(sys.stderr):  # the epoch lines; stdout keeps the one JSON line
        history = ftkit.fit(model, train_loader, "cross_entropy", opt, epochs, device="cpu")  # default callbacks
    return model, history.steps[-1]["loss"]


def test_accuracy(model, data) -> float:
    test_loader = L.TensorLoader(*data.test, 500, mean=data.mean, std=data.std, device="cpu")
    return ftkit.evaluate(model, test_loader, "cross_entropy", ["accuracy"], device="cpu")["accuracy"]


def images_per_s(make_loader) -> float:
    """One full epoch: every batch built (augmented, normalized) and touched."""
    train_loader = make_loader()
    n, t0 = 0, time.perf_counter()
    for x, _ in train_loader:
        n += len(x)
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="folder with cifar-10-batches-py (default: a fake one)")
    ap.add_argument("--subset", type=int, default=2048, help="training images used")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds per contender (after one warm-up)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for the classic path")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: least noise on a shared box)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir or fake.write_fake_cifar10(tmp, args.subset, 1000, noise=3.0)
        data = C.load_cifar10(data_dir, subset=args.subset, val_fraction=0.0, download=False)

    # 1. fit() versus the plain loop
    times, results = {"plain": [], "fit": []}, {}
    for r in range(args.repeats + 1):  # alternate the order; round 0 is a warm-up
        for name, fn in (("plain", plain), ("fit", with_fit)) if r % 2 else (("fit", with_fit), ("plain", plain)):
            t0 = time.perf_counter()
            results[name] = fn(data, args.batch_size, args.epochs, args.lr, seed=0)
            if r:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    acc = {k: test_accuracy(model, data) for k, (model, _) in results.items()}
    same_weights = all(torch.equal(a, b) for a, b in zip(results["plain"][0].state_dict().values(),
                                                          results["fit"][0].state_dict().values()))

    # 2. TensorLoader versus the DataLoader path (one augmented epoch each, alternated)
    makers = {
        "tensor": lambda: L.TensorLoader(*data.train, args.batch_size, mean=data.mean, std=data.std, shuffle=True,
                                         augment=True, device="cpu"),
        "dataloader": lambda: L.make_loader(*data.train, args.batch_size, mean=data.mean, std=data.std,
                                            shuffle=True, augment=True, num_workers=args.workers),
    }
    speed = {k: [] for k in makers}
    for r in range(args.repeats + 1):
        for name in makers if r % 2 else reversed(list(makers)):
            ips = images_per_s(makers[name])
            if r:
                speed[name].append(ips)
    ips = {k: statistics.median(v) for k, v in speed.items()}

    print(json.dumps({
        "benchmark": "cifar_cpu", "data": "cifar10" if args.data_dir else "fake (write_fake_cifar10, noise 3)",
        "model": "SimpleCNN", "images": len(data.train.labels), "test_images": len(data.test.labels),
        "batch_size": args.batch_size, "epochs": args.epochs, "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "plain_s": round(med["plain"], 4), "fit_s": round(med["fit"], 4),
        "ratio": round(med["fit"] / med["plain"], 4), "goal": 1.03,
        "test_accuracy_plain": round(acc["plain"], 4), "test_accuracy_fit": round(acc["fit"], 4),
        "same_accuracy": acc["plain"] == acc["fit"], "same_weights": same_weights,
        "tensor_loader_images_per_s": round(ips["tensor"]), "dataloader_images_per_s": round(ips["dataloader"]),
        "dataloader_workers": args.workers, "loader_speedup": round(ips["tensor"] / ips["dataloader"], 2),
    }))


if __name__ == "__main__":
    main()
