"""Plotly figures shared by the notebooks, one submodule per topic; one style for all (:mod:`.style`)."""
from .style import *  # noqa: F401,F403  (first: registers the template every figure uses)
from .training import *  # noqa: F401,F403
from .descent import *  # noqa: F401,F403
from .landscape import *  # noqa: F401,F403
from .classification import *  # noqa: F401,F403
