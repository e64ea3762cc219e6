"""Quantization methods. ``pgcompress.quant.builtin`` imports the built-in ones, which register themselves."""
