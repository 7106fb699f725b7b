"""notebooks/03_cifar10_cnn.ipynb under papermill on a small CIFAR-format folder with a learnable signal."""
import pickle

import pytest
import torch

from ftkit.data.cifar10 import CLASSES, FOLDER
from test_seed_errors import linked_ids

# its ddp section: 2 gloo processes; one xdist group with the JupyterLab test that reads the same execution of 03
pytestmark = [pytest.mark.notebook, pytest.mark.multiprocess, pytest.mark.xdist_group("03_cifar10_cnn")]


def test_cifar10_notebook(executed_notebook, fake_cifar10):
    data_dir = fake_cifar10               # conftest: 600 + 200 images, noise 1.0: 5 batches of 120, real format
    with open(data_dir / FOLDER / "data_batch_1", "rb") as f:
        assert set(pickle.load(f, encoding="bytes")) == {b"data", b"labels", b"batch_label", b"filenames"}

    # notebook_runs.TEST_PARAMETERS: epochs=2, batch_size=64, lr=3e-3, device="cpu", num_workers=0, throughput_batches=3,
    # subset=600, ddp=True, ddp_device="cpu", article_images=300, article_epochs=2
    _, m = executed_notebook("03_cifar10_cnn.ipynb", data_dir=str(data_dir))
    assert m["parameters"]["loader"] == "tensor" and m["parameters"]["epochs"] == 2
    assert (m["n_train"], m["n_val"], m["n_test"]) == (540, 60, 200)
    assert m["epochs_run"] == 2
    assert m["test_accuracy"] > 0.5                    # chance is 0.1
    assert m["final_val_accuracy"] > 0.3

    cm = torch.tensor(m["confusion_matrix"])
    assert cm.shape == (10, 10) and int(cm.sum()) == 200
    assert float(cm.diag().sum()) / 200 == pytest.approx(m["test_accuracy"])
    per_class = cm.diag().double() / cm.sum(1)
    assert list(m["per_class_accuracy"]) == CLASSES
    assert list(m["per_class_accuracy"].values()) == pytest.approx(per_class.tolist())
    assert m["throughput_images_per_s"]["tensor"] > 0 and m["throughput_images_per_s"]["dataloader"] > 0

    assert m["preset"] == "cpu"                         # no CUDA here: "auto" chose the CPU preset
    ddp = m["ddp"]                                      # "On several GPUs" (ddp=True): 2 gloo processes vs 1
    assert (ddp["processes"], ddp["device"], ddp["epochs"]) == (2, "cpu", 1)
    assert ddp["max_step_loss_difference"] <= 1e-5
    assert ddp["final_val_accuracy"] == pytest.approx(ddp["one_process_final_val_accuracy"])

    art = m["article_errors"]      # "The articles' own experiment, re-run" (docs/seed_errors.md)
    assert art["article_epochs"] == 2 and len(art["test_loss_per_epoch"]) == 2
    assert (art["article_images"], art["batch_size"]) == (270, 64)     # its own subset (10 % held out), its batch
    assert art["seed000"]["measured_difference"] == 0.0 and art["seed000"]["article_difference"] == 0.0528  # S0-08
    assert art["test_accuracy_per_epoch"][-1] > 0.4
    p = art["loss_prints"]         # S1-09: 001's print grows while the true epoch mean falls; S4-10: last batch
    assert p["epoch_mean"][1] < p["epoch_mean"][0] and p["seed001_print"][1] > p["seed001_print"][0]
    assert p["seed001_print"][1] - p["seed001_print"][0] == pytest.approx(p["seed001_print"][0] * p["epoch_mean"][1]
                                                                           / p["epoch_mean"][0])
    assert p["seed004_print"] != p["epoch_mean"]
    assert art["data0_as_test"]["train"]["n"] == art["data0_as_test"]["test"]["n"] == 200          # S2-13
    bias = art["selection_bias"]   # S0-07: 2 seeds × 2 epochs, chosen on one test half, scored on the other
    assert bias["candidates"] == art["article_seeds"] * 2 and bias["splits"] == 200 and "fresh_loss_choosing_on_val" in bias
    assert set(art["shown"]) == linked_ids("03_cifar10_cnn.ipynb")      # each id recorded by the cell that ran it
