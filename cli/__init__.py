"""The ``pgc`` command line (installed as ``pgcompress.cli``): thin commands over the library."""

from pgcompress.cli.main import main

__all__ = ["main"]
