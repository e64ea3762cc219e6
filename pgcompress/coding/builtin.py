"""Imports every built-in codec module so that each registers itself (registry order = tie order)."""

from pgcompress.coding import generic  # noqa: F401
