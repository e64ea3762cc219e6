"""matplotlib is optional (the ``bench`` extra): a plot asks ``pyplot()`` for it, and a caller that
can go on without the picture catches ``PlotUnavailable``."""

from __future__ import annotations


class PlotUnavailable(Exception):
    """matplotlib cannot be imported; everything but the picture can still be done."""


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend."""
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotUnavailable("matplotlib is not installed; pip install matplotlib") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
