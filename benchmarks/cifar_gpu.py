"""Time-to-accuracy of the fast recipe: FastResNet trained by ``ftkit.fit`` with FAST_RECIPE on one device.

After every epoch the test split is scored (with flip-TTA when the recipe says so) outside the clock; the
JSON line gives the training time until the first epoch at or above ``--target``, the per-epoch time
(median), images/s, each epoch's test accuracy, and the reference it is measured against: airbench reaches
94 % in about 3 s on an A100 (a smaller net and more tricks than ours). An untimed warm-up (a few batches on
a throwaway model) first lets cuDNN pick its kernels.

    python benchmarks/cifar_gpu.py --data-dir data/cifar10           # real CIFAR-10: time to 94 %
    python benchmarks/cifar_gpu.py --fake                            # 50k/10k fake images: epoch timings only
    python benchmarks/cifar_gpu.py --device cpu                      # tiny CPU run (fake data, narrow net)

``--fake`` writes a learnable stand-in in the real file format (``write_fake_cifar10``): its timings are those
of full CIFAR-10 (same shapes and counts), its accuracies are not. On CPU the defaults shrink to a tiny
configuration (1,024 fake images, batch 128, widths 16-32-64-128, 2 epochs, fp32, NCHW), about 30 s on 1 core.

Measured (2026-11-23, torch 2.11, no real CIFAR-10 on the machines, so ``--fake``; accuracies not CIFAR-10's):
* H100, ``--fake``: 0.80 s per epoch (median; epoch 1 0.85 s), 61,000 images/s, 18 epochs in 14.6 s of training;
  ``--compile`` gave no gain (0.85 s/epoch). On real data the recipe's 18 epochs would take ~15 s.
* H100, one augmented epoch of batches (512, channels_last): TensorLoader 1.8 M images/s; the DataLoader path
  4,800 images/s with 0 workers and ~28,000 with 8, below the 61,000 the model trains at.
* CPU, 1 shared core: full-width FastResNet 17 images/s (2 minutes ≈ 2,000 images, 4 % of an epoch); widths
  16-32-64-128 about 250 images/s (2 minutes ≈ 30,000 images).
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
from ftkit.models import FAST_RECIPE, FlipTTA, make_model
from ftkit.core import Callback


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimeToAccuracy(Callback):
    """Times the training part of each epoch, then scores the test split (off the clock)."""

    def __init__(self, test_loader, target: float, tta: bool, amp: bool):
        self.test_loader, self.target, self.tta, self.amp = test_loader, target, tta, amp
        self.epoch_s, self.accuracy, self.time_to_target, self.epochs_to_target = [], [], None, None

    def on_epoch_start(self, state):
        sync(state.device)
        self.t0 = time.perf_counter()

    def on_epoch_end(self, state):
        sync(state.device)
        self.epoch_s.append(time.perf_counter() - self.t0)
        model = FlipTTA(state.model) if self.tta else state.model
        acc = ftkit.evaluate(model, self.test_loader, state.loss_fn, ["accuracy"], device=state.device,
                             amp=self.amp)["accuracy"]
        self.accuracy.append(acc)
        if acc >= self.target and self.time_to_target is None:
            self.time_to_target, self.epochs_to_target = sum(self.epoch_s), state.epoch


def build(widths, lr: float, channels_last: bool, device):
    model = make_model("fast_resnet", widths=widths).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # NHWC weights to match the NHWC batches
    opt = ftkit.make_optimizer(FAST_RECIPE["optimizer"], model, lr=lr, weight_decay=FAST_RECIPE["weight_decay"])
    return model, opt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="folder with cifar-10-batches-py (default: data/cifar10 on "
                                                     "a GPU, fake data on CPU)")
    ap.add_argument("--fake", action="store_true", help="time on fake data of CIFAR-10's size (accuracy meaningless)")
    ap.add_argument("--n-train", type=int, default=None, help="fake training images (50,000; 1,024 on CPU)")
    ap.add_argument("--n-test", type=int, default=None, help="fake test images (10,000; 512 on CPU)")
    ap.add_argument("--target", type=float, default=0.94, help="test accuracy to reach")
    ap.add_argument("--epochs", type=int, default=None, help=f"(recipe: {FAST_RECIPE['epochs']}; 2 on CPU)")
    ap.add_argument("--batch-size", type=int, default=None, help=f"(recipe: {FAST_RECIPE['batch_size']}; 128 on CPU)")
    ap.add_argument("--lr", type=float, default=FAST_RECIPE["lr"])
    ap.add_argument("--widths", default=None, help="four channel counts, e.g. 64,128,256,512 (16,32,64,128 on CPU)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (compiled in the warm-up)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    device = ftkit.get_device(args.device)
    gpu = device.type == "cuda"
    fake = args.fake or (args.data_dir is None and not gpu)  # a plain CPU run is a smoke run on fake data
    epochs = args.epochs or (FAST_RECIPE["epochs"] if gpu else 2)
    batch_size = args.batch_size or (FAST_RECIPE["batch_size"] if gpu else 128)
    widths = tuple(int(w) for w in args.widths.split(",")) if args.widths else ((64, 128, 256, 512) if gpu
                                                                                 else (16, 32, 64, 128))
    amp = FAST_RECIPE["amp"] and gpu                        # fp16 tensor cores on CUDA; CPU stays fp32
    channels_last = FAST_RECIPE["channels_last"] and gpu
    torch.backends.cudnn.benchmark = True                   # fixed shapes: let cuDNN time its kernels once

    with tempfile.TemporaryDirectory() as tmp:
        if fake:
            n_train = args.n_train or (50_000 if gpu else 1024)
            n_test = args.n_test or (10_000 if gpu else 512)
            fake.write_fake_cifar10(tmp, n_train, n_test, noise=2.0, seed=args.seed)
        data = C.load_cifar10(tmp if fake else args.data_dir or "data/cifar10", val_fraction=0.0, seed=args.seed,
                              download=False)
    train_loader, _, test_loader = L.make_loaders(data, batch_size, augment=FAST_RECIPE["augment"],
                                                  device=device, channels_last=channels_last,
                                                  drop_last=True)  # equal batches: no odd-shaped last step
    loss = ftkit.make_loss("cross_entropy", label_smoothing=FAST_RECIPE["label_smoothing"])

    with contextlib.redirect_stdout(sys.stderr):  # fit's epoch lines; stdout keeps the one JSON line
        # warm-up (untimed): CUDA context, cuDNN autotuning, torch.compile
        model, opt = build(widths, args.lr, channels_last, device)
        k = 5 * batch_size
        few = L.TensorLoader(data.train.images[:k], data.train.labels[:k], batch_size, mean=data.mean,
                             std=data.std, shuffle=True, augment=True, device=device,
                             channels_last=channels_last, drop_last=True)
        ftkit.fit(torch.compile(model) if args.compile else model, few, loss, opt, 1, device=device, amp=amp,
                  progress=False)
        ftkit.evaluate(FlipTTA(model), test_loader, loss, device=device, amp=amp)

        ftkit.seed_everything(args.seed)
        model, opt = build(widths, args.lr, channels_last, device)
        timer = TimeToAccuracy(test_loader, args.target, FAST_RECIPE["tta"], amp)
        history = ftkit.fit(torch.compile(model) if args.compile else model, train_loader, loss, opt, epochs,
                            scheduler=FAST_RECIPE["scheduler"], callbacks=[timer], device=device, amp=amp)

    train_s = sum(timer.epoch_s)
    steady = timer.epoch_s[1:] or timer.epoch_s  # epoch 1 may still carry one-off costs
    print(json.dumps({
        "benchmark": "cifar_gpu", "device": torch.cuda.get_device_name(device) if gpu else "cpu",
        "threads": torch.get_num_threads(),
        "data": "fake (write_fake_cifar10, noise 2): timings valid, accuracies NOT CIFAR-10's" if fake
                else f"cifar10 ({data.root})",
        "n_train": len(data.train.labels), "n_test": len(data.test.labels),
        "model": "FastResNet", "widths": list(widths),
        "params": sum(p.numel() for p in model.parameters()),
        "recipe": {**FAST_RECIPE, "epochs": epochs, "batch_size": batch_size, "lr": args.lr, "amp": amp,
                   "channels_last": channels_last, "compile": args.compile},
        "target": args.target, "time_to_target_s": None if timer.time_to_target is None
                                                   else round(timer.time_to_target, 3),
        "epochs_to_target": timer.epochs_to_target,
        "train_s": round(train_s, 3), "epoch_s_median": round(statistics.median(steady), 4),
        "epoch1_s": round(timer.epoch_s[0], 4),
        "images_per_s": round(len(train_loader) * batch_size * len(timer.epoch_s) / train_s),
        "final_test_accuracy": round(timer.accuracy[-1], 4),
        "test_accuracy_per_epoch": [round(a, 4) for a in timer.accuracy],
        "final_train_loss": round(history["train_loss"][-1], 4),
        "reference": "airbench94: 94 % in about 3 s on an A100",
        "ratio_to_reference": None if fake or timer.time_to_target is None else round(timer.time_to_target / 3.0, 2),
    }))


if __name__ == "__main__":
    main()
