"""ftkit.data.cifar10 (files, splits, loaders), the CIFAR models and the classification plots."""
import json
import math
import os
import pickle
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ftkit
from ftkit.data import cifar10 as C, fake, images as L
from ftkit.metrics import confusion_matrix, per_class_accuracy
from ftkit.models import FAST_RECIPE, FastResNet, FlipTTA, make_model, SimpleCNN
from ftkit.plots.classification import misclassified_figure
from ftkit.train.callbacks import ModelCheckpoint


def pixels(n, seed=0):
    """n random uint8 NHWC images (every row distinct) and labels cycling through 0..9."""
    g = np.random.default_rng(seed)
    return g.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10


@pytest.fixture
def folder(tmp_path):
    """100 training images over 5 batches of 20 (far below the real 10,000 each), 30 test images."""
    x, y = pixels(130)
    fake.write_cifar_batches(tmp_path, x[:100], y[:100], x[100:], y[100:])
    return tmp_path, x, y


# --------------------------------------------------------------------------- files
def test_written_batches_have_the_real_pickle_format(folder):
    path, x, y = folder
    with open(path / C.FOLDER / "data_batch_2", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    assert set(batch) == {b"data", b"labels", b"batch_label", b"filenames"}
    assert batch[b"batch_label"] == b"training batch 2 of 5"
    data = batch[b"data"]
    assert data.dtype == np.uint8 and data.shape == (20, 3072)
    img = x[20]  # the first image of batch 2
    assert np.array_equal(data[0, :1024], img[:, :, 0].ravel())        # red plane, row-major
    assert np.array_equal(data[0, 2048:], img[:, :, 2].ravel())        # then green, then blue
    assert batch[b"labels"] == [int(v) for v in y[20:40]] and len(batch[b"filenames"]) == 20
    with open(path / C.FOLDER / "batches.meta", "rb") as f:
        assert pickle.load(f, encoding="bytes")[b"label_names"][3] == b"cat"


def test_load_splits_small_batches_and_keeps_pixels(folder):
    path, x, y = folder
    data = C.load_cifar10(path, val_fraction=0.2, seed=3, download=False)
    assert (len(data.train.labels), len(data.val.labels), len(data.test.labels)) == (80, 20, 30)
    assert data.classes == C.CLASSES
    assert torch.equal(data.test.images, torch.from_numpy(x[100:]).permute(0, 3, 1, 2))  # NHWC → CHW, in order
    assert torch.equal(data.test.labels, torch.from_numpy(y[100:]))
    # train ∪ val is exactly the 100 training images, each once, with its label
    both = torch.cat([data.train.images, data.val.images]).numpy()
    labels = torch.cat([data.train.labels, data.val.labels])
    where = {img.transpose(2, 0, 1).tobytes(): i for i, img in enumerate(x[:100])}
    idx = [where[img.tobytes()] for img in both]
    assert sorted(idx) == list(range(100)) and labels.tolist() == [int(y[i]) for i in idx]


def test_split_depends_on_seed_only(folder):
    path, *_ = folder
    torch.manual_seed(123)
    a = C.load_cifar10(path, val_fraction=0.2, seed=3).val.images
    torch.manual_seed(456)
    assert torch.equal(a, C.load_cifar10(path, val_fraction=0.2, seed=3).val.images)
    assert not torch.equal(a, C.load_cifar10(path, val_fraction=0.2, seed=4).val.images)


def test_subset_and_mean_std_from_train_split_only(folder):
    path, *_ = folder
    data = C.load_cifar10(path, subset=50, val_fraction=0.1)
    assert (len(data.train.labels), len(data.val.labels)) == (45, 5)
    train = data.train.images.numpy().astype(np.float64) / 255
    assert data.mean == pytest.approx(train.mean(axis=(0, 2, 3)), rel=1e-5)
    assert data.std == pytest.approx(train.std(axis=(0, 2, 3)), rel=1e-5)  # population std
    with pytest.raises(ValueError, match="subset must be between 1 and the 100 training images"):
        C.load_cifar10(path, subset=1000)


# --------------------------------------------------------------------------- loaders
def test_tensor_loader_normalizes_in_order_and_counts_batches(folder):
    path, *_ = folder
    data = C.load_cifar10(path, val_fraction=0.0)
    loader = L.TensorLoader(*data.train, 32, mean=data.mean, std=data.std, device="cpu")
    assert len(loader) == math.ceil(100 / 32) == 4
    assert len(L.TensorLoader(*data.train, 32, mean=data.mean, std=data.std, drop_last=True, device="cpu")) == 3
    xs, ys = zip(*loader)
    assert [len(b) for b in ys] == [32, 32, 32, 4]
    x = torch.cat(xs)
    mean, std = torch.tensor(data.mean).view(1, 3, 1, 1), torch.tensor(data.std).view(1, 3, 1, 1)
    assert torch.allclose(x * std + mean, data.train.images.float() / 255, atol=1e-5)  # (x/255 - μ)/σ undone
    assert torch.equal(torch.cat(ys), data.train.labels)
    # normalized with the train statistics, the train split has per-channel mean 0 and std 1
    assert x.mean((0, 2, 3)) == pytest.approx([0, 0, 0], abs=1e-4)
    assert x.std((0, 2, 3), correction=0) == pytest.approx([1, 1, 1], abs=1e-4)
    shuffled = L.TensorLoader(*data.train, 32, mean=data.mean, std=data.std, shuffle=True, channels_last=True,
                              device="cpu")
    xb, _ = next(iter(shuffled))
    assert xb.is_contiguous(memory_format=torch.channels_last)
    assert sorted(torch.cat([y for _, y in shuffled]).tolist()) == sorted(data.train.labels.tolist())


def test_random_crop_flip_is_a_reflect_padded_crop_or_its_mirror():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    torch.manual_seed(5)
    out = L.random_crop_flip(x)
    torch.manual_seed(5)
    assert torch.equal(out, L.random_crop_flip(x))  # the global RNG decides
    padded = F.pad(x.float(), (4, 4, 4, 4), mode="reflect")  # what v2.RandomCrop(padding_mode="reflect") pads
    crops = padded.unfold(2, 32, 1).unfold(3, 32, 1)           # 64×3×9×9×32×32: every shift
    found = set()
    for b in range(64):
        for flip in (False, True):
            target = out[b].float().flip(-1) if flip else out[b].float()
            hit = (crops[b] == target[:, None, None]).all(0).all(-1).all(-1).nonzero()
            if len(hit):
                found.add((flip, *hit[0].tolist()))
                break
        else:
            pytest.fail(f"image {b} is not a shifted/flipped copy of its input")
    assert {f for f, *_ in found} == {False, True} and len({tuple(s) for _, *s in found}) > 20  # shifts and flips vary


def test_dataloader_path_matches_tensor_path_without_augmentation(folder):
    path, *_ = folder
    data = C.load_cifar10(path)
    classic = L.make_loader(*data.train, 16, mean=data.mean, std=data.std)
    fast = L.TensorLoader(*data.train, 16, mean=data.mean, std=data.std, device="cpu")
    assert len(classic) == len(fast)
    for (a, ya), (b, yb) in zip(classic, fast):
        assert torch.allclose(a, b, atol=1e-5) and torch.equal(ya, yb)
    train, val, test = L.make_loaders(data, 16, kind="dataloader", device="cpu")
    x, _ = next(iter(train))
    assert x.shape == (16, 3, 32, 32) and len(test) == 2 and len(val) == 1


def test_make_loaders_normalize_with_mean_then_std_per_channel(folder):
    """(x/255 - μ_c)/σ_c with the data's own statistics, for both loader kinds (a swap of mean and std, or of
    channels, changes every value)."""
    path, *_ = folder
    data = C.load_cifar10(path)
    data.mean, data.std = (0.1, 0.5, 0.9), (0.2, 0.4, 0.8)  # distinct per channel and between mean and std
    mean, std = torch.tensor(data.mean).view(1, 3, 1, 1), torch.tensor(data.std).view(1, 3, 1, 1)
    expected = (data.test.images[:16].float() / 255 - mean) / std
    for kind in ("tensor", "dataloader"):
        _, _, test = L.make_loaders(data, 16, kind=kind, device="cpu")
        x, y = next(iter(test))  # the test loader neither shuffles nor augments
        assert torch.allclose(x, expected, atol=1e-5), kind
        assert torch.equal(y, data.test.labels[:16])


def test_throughput_counts_images_over_the_elapsed_time(folder, monkeypatch):
    path, *_ = folder
    data = C.load_cifar10(path)
    _, _, test = L.make_loaders(data, 16, device="cpu")  # 30 test images: batches of 16 and 14
    clock = iter([10.0, 12.0])  # two readings: start and end, 2 s apart
    monkeypatch.setattr(L.time, "perf_counter", lambda: next(clock))
    assert L.throughput(test, "cpu") == 30 / 2
    clock = iter([10.0, 12.0])
    assert L.throughput(test, "cpu", max_batches=1) == 16 / 2


def test_resume_from_checkpoint_replays_the_same_batches(tmp_path):
    """Shuffle and crop/flip use the global RNG, which checkpoints save: 1 + 1 resumed epochs == 2 epochs."""
    fake.write_fake_cifar10(tmp_path / "d", 40, 10, num_batches=2)
    data = C.load_cifar10(tmp_path / "d", val_fraction=0.0)

    def run(epochs, ckpt_dir, resume_from=None, seed=0):
        ftkit.seed_everything(seed)
        loader = L.TensorLoader(*data.train, 8, mean=data.mean, std=data.std, shuffle=True, augment=True,
                                device="cpu")
        model = SimpleCNN()
        opt = ftkit.make_optimizer("momentum", model, lr=0.05)
        ftkit.fit(model, loader, "cross_entropy", opt, epochs, device="cpu", progress=False,
                  callbacks=[ModelCheckpoint(ckpt_dir)], resume_from=resume_from)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    straight = run(2, tmp_path / "a")
    run(1, tmp_path / "b")
    resumed = run(2, tmp_path / "c", resume_from=tmp_path / "b" / "last.pt", seed=99)  # seed 99: RNG from ckpt
    assert torch.equal(straight, resumed)


# --------------------------------------------------------------------------- models and plots
def test_fast_resnet_shapes_tta_and_recipe_learns():
    model = make_model("fast_resnet", widths=(8, 16, 16, 32)).eval()
    x = torch.randn(4, 3, 32, 32)
    assert model(x).shape == (4, 10)
    assert sum(p.numel() for p in FastResNet().parameters()) == 6_573_120
    tta = FlipTTA(model)
    assert torch.allclose(tta(x), tta(x.flip(-1)), atol=1e-5)  # mirror-invariant by construction
    ftkit.seed_everything(0)
    x, y = ftkit.data.synthetic.image_classification(32, size=16)  # 16×16: the global pool takes any size
    model.train()
    opt = ftkit.make_optimizer(FAST_RECIPE["optimizer"], model, lr=FAST_RECIPE["lr"],
                                weight_decay=FAST_RECIPE["weight_decay"])
    loss_fn = ftkit.make_loss("cross_entropy", label_smoothing=FAST_RECIPE["label_smoothing"])
    first = loss_fn(model(x), y).item()
    for _ in range(15):
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * first


def test_confusion_matrix_counts_and_per_class_accuracy():
    target = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 0, 1, 1, 2, 2])
    cm = confusion_matrix(pred, target, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert per_class_accuracy(cm).tolist() == pytest.approx([2 / 3, 1 / 2, 1])
    fig = misclassified_figure(torch.zeros(6, 3, 32, 32, dtype=torch.uint8), pred, target, ["a", "b", "c"])
    assert [a.text for a in fig.layout.annotations] == ["b / a", "c / b"]  # predicted / true


# --------------------------------------------------------------------------- bad input: one clear error each
def test_missing_data_offline_names_the_download_command(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=re.escape(f"python -m ftkit.data.cifar10 --download {tmp_path}")):
        C.load_cifar10(tmp_path, download=False)
    monkeypatch.setattr(C, "_can_reach", lambda *a, **k: False)
    with pytest.raises(FileNotFoundError, match="cannot be reached .offline"):
        C.load_cifar10(tmp_path)


def test_truncated_or_corrupt_batch_names_the_file(folder):
    path, *_ = folder
    bad = path / C.FOLDER / "data_batch_3"
    good = bad.read_bytes()
    for broken in (good[:1000], b"<html>404 Not Found</html>", good[:40] + bytes(200) + good[240:]):
        bad.write_bytes(broken)
        with pytest.raises(ValueError, match=r"data_batch_3 is not a readable CIFAR-10 batch \(truncated or corrupt"
                                             r".*python -m ftkit.data.cifar10 --download"):
            C.load_cifar10(path)
    with open(bad, "wb") as f:
        pickle.dump([1, 2, 3], f, protocol=2)
    with pytest.raises(ValueError, match="data_batch_3 holds a list, not a CIFAR-10 batch dict"):
        C.load_cifar10(path)


def test_wrong_image_shapes_fail(folder, tmp_path):
    x, y = pixels(10)
    with pytest.raises(ValueError, match=r"images must be N×32×32×3 \(NHWC\), got shape \(10, 3, 32, 32\)"):
        fake.write_cifar_batches(tmp_path, x.transpose(0, 3, 1, 2), y, x, y)
    with pytest.raises(ValueError, match="must be uint8"):
        fake.write_cifar_batches(tmp_path, x.astype(np.float32), y, x, y)
    path, *_ = folder
    with open(path / C.FOLDER / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 1024), np.uint8), b"labels": [0, 1, 2, 3]}, f, protocol=2)
    with pytest.raises(ValueError, match=r"test_batch: images must be uint8 rows of 3072 .* shape \(4, 1024\)"):
        C.load_cifar10(path)
    with pytest.raises(ValueError, match=r"images must be a uint8 N×3×H×W tensor, got torch.uint8 of shape "
                                         r"\(4, 32, 32, 3\)"):
        L.TensorLoader(torch.zeros(4, 32, 32, 3, dtype=torch.uint8), torch.zeros(4), 2, mean=(0,) * 3, std=(1,) * 3)


def test_labels_outside_0_to_9_fail(folder, tmp_path):
    x, y = pixels(10)
    with pytest.raises(ValueError, match="label 10 is outside 0–9"):
        fake.write_cifar_batches(tmp_path, x, y + 1, x, y)
    path, *_ = folder
    with open(path / C.FOLDER / "data_batch_5", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 12]}, f, protocol=2)
    with pytest.raises(ValueError, match="data_batch_5: label 12 is outside 0–9"):
        C.load_cifar10(path)


def test_unknown_model_and_bad_batch_size(folder):
    with pytest.raises(ValueError, match="unknown model 'resnet50'; choose one of: fast_resnet, simple_cnn"):
        make_model("resnet50")
    data = C.load_cifar10(folder[0])
    for bad in (0, -8):
        with pytest.raises(ValueError, match=f"batch_size must be a whole number >= 1, got {bad}"):
            L.make_loaders(data, bad)
    with pytest.raises(ValueError, match="unknown loader kind 'fast'; choose one of: dataloader, tensor"):
        L.make_loaders(data, 8, kind="fast")


def test_download_command_checks_the_md5(tmp_path, monkeypatch, capsys):
    import torchvision.datasets.utils as tv_utils
    calls = []

    def fake_download(url, download_root, md5=None, **kw):  # what torchvision would fetch, written locally
        calls.append((url, md5))
        fake.write_fake_cifar10(download_root, 20, 10)

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    C.main(["--download", str(tmp_path)])
    assert calls == [(C.URL, C.MD5)]
    C.main(["--download", str(tmp_path)])  # already there: no second download
    assert len(calls) == 1
    out = capsys.readouterr().out
    assert "downloaded to" in out and "already there" in out and "Cifar10(train=18, val=2, test=10" in out


# --------------------------------------------------------------------------- CIFAR files
@pytest.fixture
def cifar(tmp_path):
    return fake.write_fake_cifar10(tmp_path / "c", 50, 10, num_batches=5)


class Boom:
    def __reduce__(self):  # what a crafted file does: call a function of its choice on load
        return (os.system, (f"touch {os.environ['BOOM_FILE']}",))


def test_a_crafted_batch_never_runs_code(cifar, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("BOOM_FILE", str(marker))
    with open(os.path.join(cifar, "data_batch_2"), "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"x": Boom()}, f, protocol=2)
    with pytest.raises(ValueError, match=r"data_batch_2 was not loaded: it asks for (posix|nt).system, which a "
                                         r"CIFAR-10 batch never holds \(a file that names other code may be crafted"):
        C.load_cifar10(cifar.rsplit("/", 1)[0], download=False)
    assert not marker.exists()
    with open(os.path.join(cifar, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": Boom()}, f, protocol=2)
    with pytest.raises(ValueError, match="batches.meta is not a readable CIFAR-10 batches.meta"):
        C._label_names(cifar)
    assert not marker.exists()


def test_real_format_batches_still_load(cifar):
    data = C.load_cifar10(cifar.rsplit("/", 1)[0], val_fraction=0.2, download=False)
    assert (len(data.train.labels), len(data.val.labels), len(data.test.labels)) == (40, 10, 10)
    assert data.classes == C.CLASSES
    # a Python-2 style pickle (what the real tarball holds): numpy.core.multiarray._reconstruct, bytes strings
    with open(os.path.join(cifar, "test_batch"), "rb") as f:
        raw = f.read()
    assert b"_reconstruct" in raw


def test_cifar_meta_and_folder_problems_are_named(cifar):
    root = cifar.rsplit("/", 1)[0]
    meta = os.path.join(cifar, "batches.meta")
    with open(meta, "wb") as f:
        f.write(b"\x80\x02}q\x00(X\x0b")  # cut short
    with pytest.raises(ValueError, match="batches.meta is not a readable CIFAR-10 batches.meta.*delete it"):
        C.load_cifar10(root, download=False)
    with open(meta, "wb") as f:
        pickle.dump({b"label_names": [b"cat", b"dog"]}, f, protocol=2)
    with pytest.raises(ValueError, match=r"batches.meta lists 2 label names \['cat', 'dog'\], but CIFAR-10 has 10"):
        C.load_cifar10(root, download=False)
    os.remove(meta)
    with open(os.path.join(cifar, "data_batch_1"), "rb") as f:
        batch = f.read()
    with open(os.path.join(cifar, "data_batch_6"), "wb") as f:
        f.write(batch)
    with pytest.raises(ValueError, match="has data_batch_6 besides data_batch_1..5.*move the extra file"):
        C.load_cifar10(root, download=False)
    os.remove(os.path.join(cifar, "data_batch_6"))
    with pytest.raises(ValueError, match=r"val_fraction must be a number, got '0.1' \(a string"):
        C.load_cifar10(root, val_fraction="0.1", download=False)
    data = C.load_cifar10(root, download=False)
    with pytest.raises(ValueError, match=r"std must be > 0 in every channel.*got \(0.2, 0, 0.2\)"):
        L.TensorLoader(*data.train, 8, mean=data.mean, std=(0.2, 0, 0.2), device="cpu")
    with pytest.raises(ValueError, match="std must be > 0 in every channel"):
        L.make_loader(*data.train, 8, mean=data.mean, std=(0.2, 0, 0.2))
    with pytest.raises(ValueError, match="num_batches must be 1 to 5"):
        fake.write_fake_cifar10(root, 20, 5, num_batches=6)


def test_cifar_or_synthetic_falls_back_only_without_cifar(cifar, tmp_path):
    root = cifar.rsplit("/", 1)[0]
    x, y, source = C.cifar10_or_synthetic(tmp_path / "nothing-here", 30, seed=0)
    assert source == "synthetic" and x.shape == (30, 3, 32, 32) and len(y) == 30
    x, y, source = C.cifar10_or_synthetic(root, 30, seed=0)
    assert source == "CIFAR-10" and x.shape == (30, 3, 32, 32)
    assert x.mean((0, 2, 3)).abs().max() < 1e-4  # normalized with its own statistics
    os.remove(os.path.join(cifar, "data_batch_3"))
    with pytest.raises(FileNotFoundError, match="lacks data_batch_3"):
        C.cifar10_or_synthetic(root, 30, seed=0)
    with open(os.path.join(cifar, "data_batch_3"), "wb") as f:
        f.write(b"<html>404</html>")
    with pytest.raises(ValueError, match="data_batch_3 is not a readable CIFAR-10 batch"):
        C.cifar10_or_synthetic(root, 30, seed=0)


def test_notebook_01_calls_the_loader_that_keeps_a_partial_folders_error():
    with open(os.path.join(os.path.dirname(__file__), "..", "notebooks", "01_loss_landscapes.ipynb")) as f:
        nb = json.load(f)
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "cifar10_or_synthetic(data_dir" in code and "except FileNotFoundError" not in code


def test_cifar_folder_with_a_missing_batch_names_it(tmp_path):
    from ftkit.data import cifar10, fake
    root = fake.write_fake_cifar10(tmp_path / "c", 50, 10)
    os.remove(os.path.join(root, "data_batch_3"))
    with pytest.raises(FileNotFoundError, match=r"lacks data_batch_3 "):
        cifar10.load_cifar10(tmp_path / "c", download=False)
    with pytest.raises(ValueError, match=r"subset must be a whole number >= 1 \(training images to keep\) or None, got 'abc'"):
        cifar10.load_cifar10(tmp_path / "c", subset="abc", download=False)
    os.remove(os.path.join(root, "test_batch"))
    with pytest.raises(FileNotFoundError, match=r"lacks data_batch_3, test_batch"):
        cifar10.load_cifar10(tmp_path / "c", download=False)
