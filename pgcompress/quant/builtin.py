"""Imports every built-in method module so that each registers itself."""

from pgcompress.quant import int8_ref, passthrough  # noqa: F401
