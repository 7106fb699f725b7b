"""ftkit.params (parts, freezing, per-part lrs) and ftkit.vision (plain/residual nets, the transfer modes)."""
import pytest
import torch
from torch import nn

import ftkit
from ftkit.params import count_trainable, param_groups, parameter_table, set_trainable
from ftkit.vision.resnets import cifar_net, gradient_norms, unrolled_check
from ftkit.vision.transfer import PARTS, load_resnet18, make_transfer, transfer_optimizer


def test_param_groups_give_each_part_its_lr_and_skip_decay_on_biases_and_norms():
    net = nn.Sequential()
    net.add_module("body", nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8)))
    net.add_module("fc", nn.Linear(8, 2))
    parts = {"head": ["fc"]}
    groups = param_groups(net, parts, {"backbone": 1e-4, "head": 1e-2}, weight_decay=0.1)
    got = {g["name"]: (g["lr"], g["weight_decay"], sum(p.numel() for p in g["params"])) for g in groups}
    assert got == {"backbone": (1e-4, 0.1, 32), "backbone (no decay)": (1e-4, 0.0, 8 + 8 + 8),
                   "head": (1e-2, 0.1, 16), "head (no decay)": (1e-2, 0.0, 2)}
    opt = ftkit.make_optimizer("adamw", groups, lr=1e-3)
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 1e-4, 1e-2, 1e-2]
    set_trainable(net, parts, "head")
    assert count_trainable(net) == 18 and [g["name"] for g in param_groups(net, parts, {"head": 1e-2})] == [
        "head", "head (no decay)"]
    table = parameter_table(net, parts, order=("backbone", "head"))
    assert table.loc["backbone", "trainable"] == 0 and table.loc["total", "total"] == 32 + 24 + 18
    with pytest.raises(ValueError, match=r"no learning rate for the trainable part\(s\) \['backbone'\]"):
        set_trainable(net, parts, "all")
        param_groups(net, parts, {"head": 1e-2})
    with pytest.raises(ValueError, match=r"part\(s\) \['heda'\].*its parts: \['backbone', 'head'\]"):
        set_trainable(net, parts, "heda")


def test_cifar_nets_plain_and_residual_share_parameters_and_refuse_bad_depths():
    plain, res = cifar_net(20, residual=False, width=4), cifar_net(20, residual=True, width=4)
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in res.parameters())
    assert len(gradient_norms(res, torch.randn(8, 3, 32, 32), torch.arange(8))) == 20
    assert all(p.grad is None for p in res.parameters())              # the probe leaves no gradient behind
    with pytest.raises(ValueError, match=r"depth must be 6n\+2"):
        cifar_net(30)
    check = unrolled_check(res, torch.randn(2, 3, 32, 32))
    assert check["unrolled_vs_recursion"] < 1e-4 * check["output_scale"] < check["sum_of_layers_of_x_vs_recursion"]


def test_probe_freezes_the_backbone_and_its_batchnorm_statistics(monkeypatch):
    monkeypatch.setattr("ftkit.vision.transfer._can_reach", lambda *a, **k: False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: "/nonexistent-ftkit-test")
    backbone, info = load_resnet18()
    assert not info["pretrained"] and "could not be fetched" in info["message"] and "weights_path=" in info["message"]
    net, _ = make_transfer("probe", backbone=backbone)
    bn = net.backbone.bn1
    before = bn.running_mean.clone()
    opt = transfer_optimizer(net, "probe")
    net.train()
    assert not net.backbone.training and net.head.training
    nn.functional.cross_entropy(net(torch.randn(4, 3, 32, 32)), torch.arange(4)).backward()
    opt.step()
    assert torch.equal(bn.running_mean, before) and bn.weight.grad is None
    assert count_trainable(net) == 512 * 10 + 10
    fine, _ = make_transfer("finetune", backbone=backbone)
    assert {g["name"]: g["lr"] for g in transfer_optimizer(fine, "finetune").param_groups}["backbone"] == 1e-4
    with pytest.raises(ValueError, match="unknown transfer mode 'lora'; choose one of: probe, finetune, scratch"):
        make_transfer("lora")
    with pytest.raises(ValueError, match=r"unknown transfer mode 'fine-tune'; choose one of: probe, finetune, scratch; "
                                         r"did you mean 'finetune'\?"):
        transfer_optimizer(fine, "fine-tune")   # was a bare KeyError
    with pytest.raises(FileNotFoundError, match="is not a file"):
        load_resnet18(weights_path="/nonexistent/resnet18.pth")


def test_a_residual_block_adds_its_input_and_a_plain_block_does_not():
    """forward = relu(F(x) + shortcut(x)): the number a block without its skip connection would change."""
    from ftkit.vision.resnets import BasicBlock
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8)
    for c_out, stride in ((4, 1), (8, 2)):
        block = BasicBlock(4, c_out, stride).eval()
        skip = x[:, :, ::stride, ::stride]
        skip = nn.functional.pad(skip, (0, 0, 0, 0, 0, c_out - 4))
        assert torch.allclose(block(x), torch.relu(block.branch(x) + skip), atol=1e-6)
        plain = BasicBlock(4, c_out, stride, residual=False).eval()
        plain.load_state_dict(block.state_dict())
        assert torch.allclose(plain(x), torch.relu(block.branch(x)), atol=1e-6)
        assert (block(x) - plain(x)).abs().max() > 0.1


def test_load_resnet18_with_another_models_weights_says_it_is_not_a_resnet18(tmp_path):
    torch.save(nn.Sequential(nn.Linear(4, 2)).state_dict(), tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"is not a ResNet-18 state dict \(0 of its 2 tensors match ResNet-18's 122"):
        load_resnet18(weights_path=tmp_path / "other.pth")
