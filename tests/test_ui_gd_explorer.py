"""ftkit.ui.gd_explorer: the gradient-descent explorer widget."""
from __future__ import annotations

import pytest


# --------------------------------------------------------------------------- GD explorer
def test_gd_explorer_refuses_what_its_sliders_would_clamp():
    pytest.importorskip("ipywidgets")
    from ftkit.ui.gd_explorer import GDExplorer
    for kw, match in (({"lr": -1}, r"GDExplorer\(lr=-1\): lr must be a number from 0.0001 to 10"),
                      ({"lr": 100}, "lr must be a number from 0.0001 to 10"),
                      ({"momentum": 1.5}, "momentum must be a number from 0 to 0.99"),
                      ({"steps": 5000}, "steps must be a number from 10 to 1000")):
        with pytest.raises(ValueError, match=match):
            GDExplorer("quadratic", optimizers=("gd",), steps=kw.pop("steps", 20), grid=10, **kw)
