r"""Directions through a network's weights for its loss landscape (Li et al. 2018, "Visualizing the Loss Landscape of
Neural Nets"): :mod:`ftkit.optviz.landscape` evaluates the loss along them, :mod:`ftkit.optviz.trajectory`
projects a training path on them.

**Filter normalization** (Li et al.): a Gaussian direction :math:`d` is rescaled per output filter/neuron
:math:`i` (row ``i`` of a weight, i.e. ``weight[i]`` of a conv or linear layer) to the norm of the weights it
moves, :math:`d_i ← d_i/\|d_i\|\,\|θ_i\|`, so the picture does not depend on each layer's scale (a ReLU
network is unchanged by scaling a filter up and the next layer down).

**Biases and BatchNorm** (the policy): parameters with one dimension — biases, BatchNorm/LayerNorm scales and
shifts — get a zero direction by default, i.e. they stay at their trained values; ``perturb_bias_bn=True``
gives them a Gaussian direction scaled to their norm (the whole vector as one filter).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["Params", "parameters_of", "random_direction", "params_dot", "orthogonalize", "random_directions",
           "check_direction"]

Params = dict[str, torch.Tensor]     # {parameter name: tensor}, as named_parameters() names them


def parameters_of(model_or_params) -> Params:
    """Detached ``{name: tensor}`` of a model's parameters (a dict passes through, detached)."""
    if isinstance(model_or_params, nn.Module):
        params = {n: p.detach() for n, p in model_or_params.named_parameters()}
        if not params:
            raise ValueError(f"{type(model_or_params).__name__} has no parameters: there is no weight space "
                             "to look at; pass a model with weights")
        return params
    if isinstance(model_or_params, dict):
        return {n: p.detach() for n, p in model_or_params.items()}
    raise TypeError(f"expected an nn.Module or a dict of parameters, got {type(model_or_params).__name__}")


def random_direction(model, seed: int = 0, *, perturb_bias_bn: bool = False) -> Params:
    """A filter-normalized Gaussian direction: ``d_i ← d_i/‖d_i‖·‖θ_i‖`` per output filter/neuron ``i``.

    One-dimensional parameters (biases, norm-layer scales/shifts) get zeros unless ``perturb_bias_bn``, which
    scales their Gaussian direction to their norm as a whole. Drawn on the CPU with ``seed`` (same on any device).
    """
    g = torch.Generator().manual_seed(int(seed))
    direction = {}
    for name, w in parameters_of(model).items():
        d = torch.randn(w.shape, generator=g, dtype=torch.float32).to(w)
        if w.dim() <= 1:
            d = d * (w.norm() / (d.norm() + 1e-10)) if perturb_bias_bn else torch.zeros_like(w)
        else:
            dims = tuple(range(1, w.dim()))
            d = d * (torch.linalg.vector_norm(w, dim=dims, keepdim=True)
                     / (torch.linalg.vector_norm(d, dim=dims, keepdim=True) + 1e-10))
        direction[name] = d
    return direction


def params_dot(a: Params, b: Params) -> torch.Tensor:
    """The dot product of two parameter dicts (float64), summed over every tensor."""
    return sum((a[n].double() * b[n].double()).sum() for n in a)


def orthogonalize(d2: Params, d1: Params) -> Params:
    """Gram–Schmidt: :math:`η ← η - \\frac{η·δ}{δ·δ}δ` over all parameters (``η·δ = 0`` afterwards)."""
    c = params_dot(d2, d1) / params_dot(d1, d1)
    return {n: d2[n] - (c * d1[n].double()).to(d2[n].dtype) for n in d2}


def random_directions(model, seed: int = 0, *, perturb_bias_bn: bool = False) -> tuple[Params, Params]:
    """Two filter-normalized directions (seeds ``seed`` and ``seed + 1``), the second orthogonalized to the first.

    In a million dimensions two Gaussian directions are already nearly orthogonal (cosine ~ 1/√n), so the
    projection changes the second one by a tiny fraction and its filter norms stay as they were, to that fraction.
    """
    d1 = random_direction(model, seed, perturb_bias_bn=perturb_bias_bn)
    return d1, orthogonalize(random_direction(model, seed + 1, perturb_bias_bn=perturb_bias_bn), d1)


def check_direction(direction: Params, origin: Params, what: str) -> None:
    """``direction`` is a dict with ``origin``'s names and shapes; else one error naming ``what`` and how to make one."""
    if not isinstance(direction, dict):
        raise TypeError(f"{what} must be a dict {{parameter name: tensor}} (see random_direction), "
                        f"got {type(direction).__name__}")
    missing, extra = set(origin) - set(direction), set(direction) - set(origin)
    if missing or extra:
        raise ValueError(f"{what} does not match the model's parameters: missing {sorted(missing)[:3]}, "
                         f"unknown {sorted(extra)[:3]}; make it with random_direction(model)")
    for name, w in origin.items():
        if direction[name].shape != w.shape:
            raise ValueError(f"{what}[{name!r}] has shape {tuple(direction[name].shape)} but the model's parameter "
                             f"has shape {tuple(w.shape)}; make directions from this model: random_direction(model)")
