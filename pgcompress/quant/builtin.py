"""Imports every built-in method module so that each registers itself."""

from pgcompress.quant import gptq, int8_ref, passthrough, rtn, slices, waterfill  # noqa: F401
