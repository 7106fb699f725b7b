"""Optimizers and schedulers: every from-scratch twin follows torch.optim for 100 steps (float64, ≤ 1e-6),
weight decay skips biases/norm layers, schedules hit their exact lr values, and bad options fail clearly."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

import ftkit
from ftkit.optim import make_optimizer, OptimInfo, OPTIMIZERS, ScratchAdam, split_decay_params
from ftkit.schedules import make_scheduler, SCHEDULERS
from ftkit.utils import choose, normalize_name

STEPS = 100



def regression_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1)).double()


def regression_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(64, 4, generator=g, dtype=torch.float64)
    y = torch.sin(X @ torch.tensor([1.0, -2.0, 0.5, 1.5], dtype=torch.float64)).unsqueeze(1)
    return X, y


BASE = {  # optimizer -> lr that trains this problem in 100 steps
    "sgd": 0.2, "momentum": 0.04, "nesterov": 0.04, "adam": 1e-2, "adamw": 1e-2, "rmsprop": 4e-3, "adagrad": 0.1}
CASES = [(name, {}, wd) for name in BASE for wd in (0.0, 0.01)] + [
    ("rmsprop", {"momentum": 0.9}, 0.0), ("rmsprop", {"momentum": 0.9}, 0.01),
    ("momentum", {"dampening": 0.3}, 0.01), ("adagrad", {"lr_decay": 0.01}, 0.0)]


@pytest.mark.parametrize("name, options, weight_decay", CASES,
                         ids=[f"{n}{''.join(f'+{k}' for k in o)}-{'wd' if wd else 'no_wd'}" for n, o, wd in CASES])
def test_scratch_twin_follows_torch_for_100_steps(name, options, weight_decay):
    X, y = regression_data()
    models = [regression_mlp(), regression_mlp()]
    start = [p.detach().clone() for p in models[0].parameters()]
    opts = [make_optimizer(name, m, lr=BASE[name], scratch=s, weight_decay=weight_decay, **options)
            for m, s in zip(models, (False, True))]
    assert not isinstance(opts[0], type(opts[1]))
    losses = []
    for _ in range(STEPS):
        for model, opt in zip(models, opts):
            opt.zero_grad()
            loss = ((model(X) - y) ** 2).mean()
            loss.backward()
            opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]  # both are really training
    for p_torch, p_twin in zip(models[0].parameters(), models[1].parameters()):
        assert (p_torch - p_twin).abs().max() <= 1e-6
    moved = max((p - p0).abs().max().item() for p, p0 in zip(models[0].parameters(), start))
    assert moved > 1e-2


def test_adam_first_step_is_lr_sized_and_descends():
    # with bias correction, step 1 is m̂/√v̂ = g/|g|: θ moves by lr against the gradient, whatever |g| is
    for g in (1e-3, 2.0, 500.0):
        for cls in (torch.optim.Adam, ScratchAdam):
            theta = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
            opt = cls([theta], lr=0.1)
            (g * theta).sum().backward()
            opt.step()
            assert abs(theta.item() - 0.9) < 1e-6


def test_adamw_decays_weights_only_and_decoupled():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3), nn.LayerNorm(3))
    decay, no_decay = split_decay_params(model)
    assert {id(p) for p in decay} == {id(model[0].weight), id(model[3].weight)}
    assert len(no_decay) == 6  # conv/linear biases, BatchNorm and LayerNorm weight + bias
    lr, wd = 0.1, 0.5
    opt = make_optimizer("adamw", model, lr=lr, weight_decay=wd)
    assert [g["weight_decay"] for g in opt.param_groups] == [wd, 0.0]
    assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in decay}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # zero gradient: Adam's step is 0, only the decoupled decay acts
    opt.step()
    for n, p in model.named_parameters():
        factor = 1 - lr * wd if n in ("0.weight", "3.weight") else 1.0
        assert torch.allclose(p, factor * before[n], atol=1e-7), n
    # without weight decay there is one group holding every parameter
    assert len(make_optimizer("adam", model).param_groups) == 1


def test_param_groups_from_generators_keep_their_parameters():
    model = regression_mlp()
    opt = make_optimizer("sgd", [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.5},
                                 {"params": iter([])}], lr=0.1)
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2]
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]


# --------------------------------------------------------------------------- schedulers
def lrs(name, steps=10, opt_name="sgd", **options):
    p = nn.Parameter(torch.zeros(1))
    opt = make_optimizer(opt_name, [p], lr=1.0)
    sched = make_scheduler(name, opt, **options)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out, opt


def test_constant_and_step_schedules():
    assert lrs("constant", total_steps=10)[0] == [1.0] * 10
    assert lrs("step", step_size=3, gamma=0.5, total_steps=10)[0] == pytest.approx(
        [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125])


def test_cosine_schedule_follows_its_formula():
    values, _ = lrs("cosine", total_steps=10, eta_min=0.1)
    assert values == pytest.approx([0.1 + 0.9 * (1 + math.cos(math.pi * s / 10)) / 2 for s in range(10)])


def test_linear_warmup_exact_values():
    # W=4 warmup steps: (s+1)/4, then 1 - (s-4)/6 down to 0 at s = T = 10
    values, _ = lrs("linear_warmup", total_steps=10, warmup_steps=4)
    assert values == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    values, _ = lrs("linear_warmup", steps=12, total_steps=10, warmup_ratio=0.2, final_factor=0.2)
    assert values[:3] == pytest.approx([0.5, 1.0, 1.0])  # warmup_ratio 0.2 of 10 → W = 2
    assert values[6] == pytest.approx(1 - 0.8 * 4 / 8) and values[10:] == pytest.approx([0.2, 0.2])
    assert lrs("linear_warmup", steps=3, total_steps=4)[0] == pytest.approx([1.0, 0.75, 0.5])  # no warmup


def test_one_cycle_schedule_and_momentum():
    values, opt = lrs("one_cycle", total_steps=10)
    assert values[0] == pytest.approx(1 / 25) and max(values) == values[2] == pytest.approx(1.0)  # peak at 30%
    # the curve (torch's OneCycleLR, cosine): 1/25 → 1 over steps 0..2, then 1 → 1/25/1e4 over steps 2..9
    up = [1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * s / 2)) / 2 for s in range(3)]
    down = [1 / 25e4 + (1 - 1 / 25e4) * (1 + math.cos(math.pi * (s - 2) / 7)) / 2 for s in range(3, 10)]
    assert values == pytest.approx(up + down, rel=1e-6)
    assert values[-1] == pytest.approx(1 / 25 / 1e4, rel=1e-6)
    assert opt.param_groups[0]["momentum"] == 0  # plain SGD is not turned into momentum SGD
    _, opt = lrs("one_cycle", steps=3, opt_name="momentum", total_steps=10)
    assert opt.param_groups[0]["momentum"] < 0.86  # momentum cycles down (0.95 → 0.85) while lr climbs
    _, opt = lrs("one_cycle", steps=3, opt_name="adam", total_steps=10)
    assert opt.param_groups[0]["betas"][0] < 0.86
    assert lrs("one_cycle", steps=3, opt_name="adagrad", total_steps=10)[0][0] == pytest.approx(1 / 25)


def test_every_scheduler_accepts_total_steps_and_none_passes_through():
    extra = {"step": {"step_size": 2}}
    for name in SCHEDULERS:
        values, _ = lrs(name, steps=3, total_steps=10, **extra.get(name, {}))
        assert len(values) == 3 and all(v > 0 for v in values)
    opt = make_optimizer("sgd", [nn.Parameter(torch.zeros(1))], lr=0.1)
    assert make_scheduler(None, opt) is None
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    assert make_scheduler(sched, opt) is sched


# --------------------------------------------------------------------------- bad input
def param():
    return [nn.Parameter(torch.zeros(2))]


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'; choose one of: adagrad, adam, adamw, gd, "
                                         "momentum, nesterov, rmsprop, sgd"):
        make_optimizer("adamm", param())
    with pytest.raises(ValueError, match="unknown scheduler 'cosin'; choose one of: constant, cosine, cosine_warmup, "
                                         "linear_warmup, one_cycle, reduce_on_plateau, step"):
        make_scheduler("cosin", make_optimizer("sgd", param()))
    assert set(OPTIMIZERS) == {"sgd", "gd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad"}


@pytest.mark.parametrize("options, message", [
    ({"lr": -0.1}, r"lr must be >= 0, got -0.1"),
    ({"lr": float("nan")}, r"lr must be finite, got nan"),
    ({"lr": float("inf")}, r"lr must be finite, got inf"),
    ({"weight_decay": -1e-4}, r"weight_decay must be >= 0, got -0.0001"),
    ({"weight_decay": float("nan")}, r"weight_decay must be finite"),
    ({"momentum": 1.0}, r"momentum must be in \[0, 1\), got 1.0"),
    ({"momentum": -0.5}, r"momentum must be >= 0"),
    ({"eps": -1e-8}, r"eps must be >= 0"),
    ({"betas": (0.9, 1.0)}, r"betas\[1\] must be in \[0, 1\), got 1.0"),
])
def test_bad_optimizer_options_name_the_argument(options, message):
    name = "adam" if "betas" in options or "eps" in options else "momentum"
    with pytest.raises(ValueError, match=message):
        make_optimizer(name, param(), **options)


def test_empty_parameters_give_a_clear_error():
    with pytest.raises(ValueError, match=r"no parameters to optimize for 'adam': .*requires_grad=True"):
        make_optimizer("adam", [])
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match=r"no parameters to optimize for 'sgd'.*did you freeze everything"):
        make_optimizer("sgd", frozen, weight_decay=0.1)
    with pytest.raises(ValueError, match=r"no parameters to optimize"):
        make_optimizer("sgd", [{"params": []}])
    with pytest.raises(TypeError, match=r"got one tensor; wrap it in a list: make_optimizer\('sgd', \[p\]"):
        make_optimizer("sgd", nn.Parameter(torch.zeros(3)))


@pytest.mark.parametrize("name, options, message", [
    ("cosine", {}, r"scheduler 'cosine' needs total_steps="),
    ("one_cycle", {"total_steps": 0}, r"total_steps must be > 0, got 0"),
    ("step", {}, r"scheduler 'step' needs step_size= > 0"),
    ("step", {"step_size": 2, "gamma": -0.5}, r"gamma must be >= 0, got -0.5"),
    ("cosine", {"total_steps": 10, "eta_min": -1}, r"eta_min must be >= 0"),
    ("linear_warmup", {"total_steps": 10, "warmup_steps": 20}, r"warmup_steps=20 exceeds total_steps=10"),
    ("linear_warmup", {"total_steps": 10, "warmup_ratio": 1.5}, r"warmup_ratio must be in \[0, 1\], got 1.5"),
    ("linear_warmup", {"total_steps": 10, "final_factor": 2}, r"final_factor must be in \[0, 1\]"),
    ("one_cycle", {"total_steps": 10, "max_lr": float("nan")}, r"max_lr must be finite"),
])
def test_bad_scheduler_options_name_the_argument(name, options, message):
    with pytest.raises(ValueError, match=message):
        make_scheduler(name, make_optimizer("sgd", param()), **options)


# --------------------------------------------------------------------------- param groups and options
def two_groups():
    torch.manual_seed(0)
    return nn.Linear(2, 2), nn.Linear(2, 1)


def test_param_group_typo_names_the_closest_option():
    a, b = two_groups()
    with pytest.raises(ValueError, match=r"param group 1 has an unknown option 'lrr': did you mean 'lr'\?"):
        ftkit.make_optimizer("sgd", [{"params": a.parameters()}, {"params": b.parameters(), "lrr": 0.5}], lr=0.1)
    with pytest.raises(ValueError, match=r"make_optimizer has an unknown option 'weight_decy': did you mean "
                                         r"'weight_decay'\?"):
        ftkit.make_optimizer("adamw", a, lr=0.1, weight_decy=0.1)
    opt = ftkit.make_optimizer("sgd", [{"params": a.parameters(), "name": "body"},
                                       {"params": b.parameters(), "lr": 0.5}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5] and opt.param_groups[0]["name"] == "body"


def test_param_group_values_are_range_checked_and_params_required():
    a, b = two_groups()
    with pytest.raises(ValueError, match=r"lr must be >= 0, got -1"):
        ftkit.make_optimizer("sgd", [{"params": a.parameters(), "lr": -1}], lr=0.1)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\), got 5"):
        ftkit.make_optimizer("sgd", [{"params": a.parameters(), "momentum": 5}], lr=0.1)
    with pytest.raises(ValueError, match=r"param group 1 has no 'params' entry \(it has 'lr'\); each group is "
                                         r"\{'params'"):
        ftkit.make_optimizer("sgd", [{"params": a.parameters()}, {"lr": 0.5}], lr=0.1)
    with pytest.raises(TypeError, match="param group 0 is a Parameter: pass either parameters or param-group dicts"):
        ftkit.make_optimizer("sgd", [next(a.parameters()), {"params": b.parameters()}], lr=0.1)


def test_betas_must_be_a_pair():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"betas must be a pair \(β₁, β₂\), e.g. betas=\(0.9, 0.999\), got 0.9"):
        ftkit.make_optimizer("adam", model, betas=0.9)
    with pytest.raises(ValueError, match=r"betas\[1\] must be in \[0, 1\), got 1.5"):
        ftkit.make_optimizer("adam", model, betas=(0.9, 1.5))
    assert ftkit.make_optimizer("adam", model, betas=[0.8, 0.99]).param_groups[0]["betas"] == (0.8, 0.99)


def test_registry_entries_are_frozen_named_records():
    info = OPTIMIZERS["nesterov"]
    assert isinstance(info, OptimInfo) and info.cls is torch.optim.SGD
    assert info.defaults == {"momentum": 0.9, "nesterov": True} and info.takes_momentum and not info.takes_betas
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.family = "adam"
    assert {n for n, i in OPTIMIZERS.items() if i.takes_betas} == {"adam", "adamw"}
    assert {n for n, i in OPTIMIZERS.items() if i.family == "sgd"} == {"sgd", "gd", "momentum", "nesterov"}
    assert OPTIMIZERS["adamw"].decoupled_decay and not OPTIMIZERS["adam"].decoupled_decay


def test_one_normalisation_rule_for_every_factory():
    assert normalize_name(" Linear-Warmup ") == "linear_warmup" and normalize_name(3) == 3
    assert choose("optimizer", "AdamW", OPTIMIZERS) is OPTIMIZERS["adamw"]
    p = [nn.Parameter(torch.zeros(2))]
    assert isinstance(make_optimizer("AdamW", p), torch.optim.AdamW)
    # 'linear-warmup' used to skip make_scheduler's total_steps check (only lower-cased there)
    with pytest.raises(ValueError, match=r"scheduler 'Linear-Warmup' needs total_steps="):
        make_scheduler("Linear-Warmup", make_optimizer("sgd", p))
    assert make_scheduler("One-Cycle", make_optimizer("sgd", p), total_steps=10) is not None
