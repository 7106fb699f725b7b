"""Optimization made visible (notebooks 01–02): 2-D test surfaces and their theory (``surfaces``), the batched
gradient-descent engine proven equal to ``torch.optim`` (``gd_engine``), races and basin maps over many starts
(``races``), loss landscapes of real networks (``landscape``), training paths through them (``trajectory``) and
Hessian sharpness (``hessian``).

The common names are importable from here: ``from ftkit.optviz import make_surface, race, basins``.
"""
from .gd_engine import *  # noqa: F401,F403
from .hessian import *  # noqa: F401,F403
from .landscape import *  # noqa: F401,F403
from .races import *  # noqa: F401,F403
from .surfaces import *  # noqa: F401,F403
from .trajectory import *  # noqa: F401,F403
from . import gd_engine, hessian, landscape, races, surfaces, trajectory

__all__ = [*surfaces.__all__, *races.__all__, *gd_engine.__all__, *landscape.__all__, *trajectory.__all__,
           *hessian.__all__]
