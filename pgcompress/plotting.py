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


def save_png(fig, path, dpi: int) -> None:
    """Write ``fig`` as a PNG at ``path`` atomically (a half-written picture never appears) and close it."""
    import io

    from pgcompress.atomic import atomic_write

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    pyplot().close(fig)
    atomic_write(path, buf.getvalue())
