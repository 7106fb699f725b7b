"""Plotly figures shared by the notebooks, one submodule per topic."""
from .training import *  # noqa: F401,F403
from .descent import *  # noqa: F401,F403
from .landscape import *  # noqa: F401,F403
from .classification import *  # noqa: F401,F403
