"""Triton kernels (packed intN -> bf16 dequant, fused fake-quant), each with a pure-torch ``_ref``.

Triton is optional: it is imported only by the kernel modules, so CPU-only installs work.
"""
