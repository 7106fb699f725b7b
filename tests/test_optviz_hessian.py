"""ftkit.optviz.hessian: eigenvalues against closed forms and the full Hessian, stability edges, the monitor, bad input."""
import numpy as np
import pytest
import torch
from torch import nn

import ftkit
from ftkit.optviz.hessian import SharpnessMonitor, adam_preconditioner, hessian_eigenvalues, stability_edge



def full_hessian(model, loss_fn, x, y):
    params = dict(model.named_parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params.values()])

    def f(v):
        ps, i = {}, 0
        for n, p in params.items():
            ps[n] = v[i:i + p.numel()].view(p.shape)
            i += p.numel()
        return loss_fn(torch.func.functional_call(model, ps, (x,)), y)
    return torch.autograd.functional.hessian(f, flat)


def test_linear_least_squares_matches_the_closed_form():
    """L = mean over N·o entries of (Wx + b − y)² → H = 2/(N·o) · (X̃ᵀX̃ ⊗ I_o), X̃ = [X, 1]; each eigenvalue o times."""
    torch.manual_seed(0)
    n, d, o = 50, 6, 3
    x = torch.randn(n, d, dtype=torch.float64) * torch.linspace(0.5, 2, d, dtype=torch.float64)
    y = torch.randn(n, o, dtype=torch.float64)
    model = nn.Linear(d, o).double()
    xa = torch.cat([x, torch.ones(n, 1, dtype=torch.float64)], 1)
    exact = torch.linalg.eigvalsh(2 / (n * o) * xa.T @ xa).flip(0).numpy()
    spec = hessian_eigenvalues(model, "mse", (x, y), k=4, smallest=True, tol=1e-10, batch_size=16)
    np.testing.assert_allclose(spec.top, [exact[0]] * 3 + [exact[1]], rtol=1e-6)  # block 4 sees multiplicity 3
    assert spec.smallest == pytest.approx(exact[-1], rel=1e-6) and spec.converged
    assert spec.hvps <= model.weight.numel() + model.bias.numel()  # never more products than dimensions


def test_tiny_mlp_matches_the_full_hessian_and_leaves_the_model_alone():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(40, 4, dtype=torch.float64), torch.randint(3, (40,))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    e = torch.linalg.eigvalsh(full_hessian(model, nn.functional.cross_entropy, x, y)).numpy()
    with torch.no_grad():  # works inside no_grad too
        spec = hessian_eigenvalues(model, "cross_entropy", (x, y), k=3, smallest=True, tol=1e-9,
                                   return_vectors=True)
    np.testing.assert_allclose(spec.top, e[::-1][:3], rtol=1e-6)
    assert spec.smallest == pytest.approx(e[0], rel=1e-6) and e[0] < 0  # not convex: a negative eigenvalue
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]) and p.grad is None
    # the returned vector v is a unit eigenvector: v·Hv = λ
    H = full_hessian(model, nn.functional.cross_entropy, x, y)
    v = torch.cat([t.reshape(-1) for t in spec.vectors[0].values()])
    assert float(v @ H @ v) == pytest.approx(spec.top[0], rel=1e-6) and float(v.norm()) == pytest.approx(1)


def test_float32_cnn_with_batchnorm_in_eval_mode_and_batches():
    """Batching does not change eval-mode results; the BatchNorm running statistics are left as they were."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    model[1].running_mean.uniform_(-0.5, 0.5)
    model.train()
    x, y = torch.randn(24, 3, 8, 8), torch.randint(3, (24,))
    running = model[1].running_mean.clone()
    a = hessian_eigenvalues(model, "cross_entropy", (x, y), k=2, tol=1e-4, batch_size=24)
    b = hessian_eigenvalues(model, "cross_entropy", (x, y), k=2, tol=1e-4, batch_size=5, cache_images=0)
    np.testing.assert_allclose(a.top, b.top, rtol=1e-4)
    assert model.training and torch.equal(model[1].running_mean, running)
    c = hessian_eigenvalues(model, "cross_entropy", (x, y), k=1, tol=1e-4, eval_mode=False)  # batch statistics
    assert abs(c.max - a.max) > 1e-3 * a.max and torch.equal(model[1].running_mean, running)


def test_preconditioned_eigenvalues_are_those_of_d_inverse_h():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = torch.randn(30, 3, dtype=torch.float64), torch.randint(2, (30,))
    d = {n: torch.rand_like(p) + 0.1 for n, p in model.named_parameters()}
    H = full_hessian(model, nn.functional.cross_entropy, x, y)
    dflat = torch.cat([t.reshape(-1) for t in d.values()])
    exact = torch.linalg.eigvals(H / dflat[:, None]).real.sort(descending=True).values
    spec = hessian_eigenvalues(model, "cross_entropy", (x, y), preconditioner=d, tol=1e-10)
    assert spec.max == pytest.approx(float(exact[0]), rel=1e-6)


def test_stability_edges():
    p = [nn.Parameter(torch.zeros(2))]
    assert stability_edge(torch.optim.SGD(p, lr=0.1)) == (pytest.approx(20.0), "sharpness")
    assert stability_edge(torch.optim.SGD(p, lr=0.1, momentum=0.9))[0] == pytest.approx(38.0)
    assert stability_edge(torch.optim.SGD(p, lr=0.1, momentum=0.5, nesterov=True))[0] == pytest.approx(3 / (2 * 0.1))
    assert stability_edge(torch.optim.Adam(p, lr=0.01)) == (pytest.approx(3800.0), "preconditioned_sharpness")  # 38/η
    edge, why = stability_edge(torch.optim.RMSprop(p, lr=0.01))
    assert edge is None and "not comparable to 2/η" in why


def test_sharpness_monitor_logs_against_two_over_lr():
    ftkit.seed_everything(0)
    x, y = torch.randn(64, 5), torch.randint(3, (64,))
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))
    loader = [(x, y)]  # full batch: one step per epoch
    monitor = SharpnessMonitor((x, y), every=2, tol=1e-4)
    history = ftkit.fit(model, loader, "cross_entropy", ftkit.make_optimizer("gd", model, lr=0.5), epochs=4,
                        callbacks=[monitor], device="cpu", progress=False)
    assert [r["step"] for r in monitor.rows] == [0, 2, 4]
    rows = [s for s in history.steps if "sharpness" in s]
    assert [s["step"] for s in rows] == [2, 4] and all(s["stability_edge"] == pytest.approx(4.0) for s in rows)
    # the logged value is λ_max at the weights after that step: recompute at the end
    assert rows[-1]["sharpness"] == pytest.approx(hessian_eigenvalues(model, "cross_entropy", (x, y)).max, rel=1e-3)


def test_sharpness_monitor_with_adam_and_rmsprop():
    ftkit.seed_everything(0)
    x, y = torch.randn(32, 4), torch.randint(2, (32,))
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = ftkit.make_optimizer("adam", model, lr=0.01)
    monitor = SharpnessMonitor((x, y), every=1, tol=1e-4)
    history = ftkit.fit(model, [(x, y)], "cross_entropy", opt, epochs=2, callbacks=[monitor], device="cpu",
                        progress=False)
    assert monitor.rows[0]["preconditioned_sharpness"] is None  # no Adam state before the first step
    last = history.steps[-1]
    assert last["stability_edge"] == pytest.approx(3800.0)
    p = adam_preconditioner(opt, model)
    expected = hessian_eigenvalues(model, "cross_entropy", (x, y), preconditioner=p, tol=1e-6).max
    assert last["preconditioned_sharpness"] == pytest.approx(expected, rel=1e-3)
    # P itself, checked against the step torch's Adam (no weight decay) really takes: Δθ = -lr · m_t / P, with m_t
    # the uncorrected first moment (a P that agreed only with itself would pass the line above)
    before = {n: w.detach().clone() for n, w in model.named_parameters()}
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    p = adam_preconditioner(opt, model)
    for name, w in model.named_parameters():
        step = w.detach() - before[name]
        m = opt.state[w]["exp_avg"]
        assert torch.allclose(step, -0.01 * m / p[name], rtol=1e-4, atol=1e-9), name
        assert (step != 0).float().mean() > 0.9  # a real update to compare with
    with pytest.warns(RuntimeWarning, match="no stability edge for RMSprop.*not comparable"):
        ftkit.fit(model, [(x, y)], "cross_entropy", ftkit.make_optimizer("rmsprop", model), epochs=1,
                  callbacks=[SharpnessMonitor((x, y))], device="cpu", progress=False)


class Frozen(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2).requires_grad_(False)

    def forward(self, x):
        return self.lin(x)


def test_bad_input_messages():
    model = nn.Linear(2, 2)
    data = (torch.randn(8, 2), torch.randint(2, (8,)))
    with pytest.raises(ValueError, match=r"k=7 is larger than the number of trainable parameters \(6\)"):
        hessian_eigenvalues(model, "cross_entropy", data, k=7)
    with pytest.raises(ValueError, match="Frozen has no trainable parameters.*requires_grad"):
        hessian_eigenvalues(Frozen(), "cross_entropy", data)
    with pytest.raises(ValueError, match=r"loss at these weights is nan \(not finite\)"):
        hessian_eigenvalues(model, "cross_entropy", (torch.full((8, 2), float("nan")), data[1]))
    with pytest.raises(TypeError, match=r"data must be a tuple \(inputs, targets\) of tensors.*got DataLoader"):
        hessian_eigenvalues(model, "cross_entropy", torch.utils.data.DataLoader(data[0]))
    with pytest.raises(TypeError, match=r"data must be a tuple.*got tuple of 3 items"):
        hessian_eigenvalues(model, "cross_entropy", (*data, data[1]))
    with pytest.raises(ValueError, match="k must be a whole number >= 1"):
        hessian_eigenvalues(model, "cross_entropy", data, k=0)
    with pytest.raises(ValueError, match="Dropout in training mode"):
        hessian_eigenvalues(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)), "cross_entropy", data, eval_mode=False)


def test_a_loss_linear_in_the_parameters_has_a_zero_hessian():
    model = nn.Linear(3, 1)
    spec = hessian_eigenvalues(model, lambda out, y: out.mean(), (torch.randn(8, 3), torch.zeros(8)), k=2,
                               smallest=True)
    assert spec.top.tolist() == [0.0, 0.0] and spec.smallest == 0.0
