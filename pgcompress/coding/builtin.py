"""Imports every built-in codec module so that each registers itself (registry order = tie order)."""

from pgcompress.coding import generic  # noqa: F401
from pgcompress.coding import bitpack  # noqa: F401
from pgcompress.coding import byteplane  # noqa: F401
from pgcompress.coding import rans  # noqa: F401
from pgcompress.coding import rans_ctx  # noqa: F401
from pgcompress.coding import rans_ctx2  # noqa: F401
from pgcompress.coding import rans_ctx3  # noqa: F401
