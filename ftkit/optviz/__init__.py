"""Optimization made visible (notebooks 01–02): 2-D test surfaces and their theory (``surfaces``), the batched
gradient-descent engine proven equal to ``torch.optim`` (``gd_engine``), races and basin maps over many starts
(``races``), loss landscapes of real networks (``landscape``, along filter-normalized ``directions``), training paths through them (``trajectory``) and
Hessian sharpness (``hessian``).

The common names are importable from here: ``from ftkit.optviz import make_surface, race, basins``.
"""
from . import directions, gd_engine, hessian, landscape, races, surfaces, trajectory
from .surfaces import (Surface, SURFACES, make_surface, function_surface, convergence_rate, gd_rate, heavy_ball_rate,
                       heavy_ball_rate_map, predicted_rate, quadratic_theory)
from .races import OptimizerPath, BasinMap, race, optimizer_path, basins, rate_sweep, tuned_lrs, ENGINES, TUNING_LRS
from .gd_engine import (RunSpec, GD_SCHEDULES, lr_factors, lr_table, resolve_schedule, resolve_spec, run_batched,
                        run_torch)
from .directions import parameters_of, random_direction, random_directions, orthogonalize, params_dot
from .landscape import (Landscape, check_data, evaluate_points, loss_slice, loss_surface, interpolate,
                        slices_over_seeds, grid_levels, progressive_surface)
from .trajectory import WeightRecorder, Trajectory, pca_trajectory, TrajectoryCheck, trajectory_check
from .hessian import Spectrum, hessian_eigenvalues, stability_edge, adam_preconditioner, SharpnessMonitor

__all__ = ["Surface", "SURFACES", "make_surface", "function_surface", "convergence_rate", "gd_rate",
           "heavy_ball_rate", "heavy_ball_rate_map", "predicted_rate", "quadratic_theory", "OptimizerPath",
           "BasinMap", "race", "optimizer_path", "basins", "rate_sweep", "tuned_lrs", "ENGINES", "TUNING_LRS",
           "RunSpec", "GD_SCHEDULES", "lr_factors", "lr_table", "resolve_schedule", "resolve_spec", "run_batched",
           "run_torch", "Landscape", "parameters_of", "check_data", "random_direction", "random_directions",
           "orthogonalize", "evaluate_points", "loss_slice", "loss_surface", "interpolate", "slices_over_seeds",
           "grid_levels", "progressive_surface", "params_dot", "WeightRecorder", "Trajectory", "pca_trajectory",
           "TrajectoryCheck", "trajectory_check", "Spectrum", "hessian_eigenvalues", "stability_edge",
           "adam_preconditioner", "SharpnessMonitor"]
