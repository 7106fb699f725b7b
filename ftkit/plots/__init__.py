"""Plotly figures shared by the notebooks, one submodule per topic, one style for all (``style``, imported first: it
registers the template every figure uses).

Re-exported here: ``style``, ``training`` (training curves, the LR finder, runs compared), ``descent`` (surfaces,
rates, basins), ``landscape`` (loss landscapes, sharpness) and ``classification`` (confusion, per class, images).
The other topics are imported by path: ``ftkit.plots.vision``, ``.ner``, ``.lm``, ``.finetune``, ``.sweep``,
``.articles``."""
from .style import TEMPLATE, INFO, WARN, AXIS, style, json_safe, text_sides, figure_problems
from .training import (training_figure, update_training_figure, event_label, lr_find_figure, compare_runs,
                       figure_bundle)
from .descent import (surface_figure, update_surface_figure, rate_figure, basin_figure, update_basin_figure,
                      momentum_map_figure, update_momentum_map_figure, OPTIMIZER_COLORS)
from .landscape import (landscape_z, curve_figure, seed_spread_figure, contour_figure, surface3d_figure,
                        compare_figure, LiveContour, progressive_contour, trajectory_check_figure, sharpness_figure)
from .classification import confusion_figure, per_class_figure, image_grid, misclassified_figure, bar_figure

__all__ = ["TEMPLATE", "INFO", "WARN", "AXIS", "style", "json_safe", "text_sides", "figure_problems",
           "training_figure", "update_training_figure", "event_label", "lr_find_figure", "compare_runs",
           "figure_bundle", "surface_figure", "update_surface_figure", "rate_figure", "basin_figure",
           "update_basin_figure", "momentum_map_figure", "update_momentum_map_figure", "OPTIMIZER_COLORS",
           "landscape_z", "curve_figure", "seed_spread_figure", "contour_figure", "surface3d_figure",
           "compare_figure", "LiveContour", "progressive_contour", "trajectory_check_figure", "sharpness_figure",
           "confusion_figure", "per_class_figure", "image_grid", "misclassified_figure", "bar_figure"]
