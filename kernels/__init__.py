"""Triton kernels, each with a pure-torch reference of the same name + ``_ref`` and the same
arguments (the kernel adds ``backend=``); the references are the spec, the tests compare them.

- ``fake_quant``: fused fake-quant for QAT (``fake_quant_rows``, ``absmax_fake_quant_rows``),
  bit-exact with ``pgcompress.quant.grid``; ``pgcompress.qat`` uses it for CUDA weights.
- ``packing``: dense bit-packing of 2..8-bit codes (pure torch; a b-bit code costs b bits).
- ``dequant``: packed codes + per-row/per-group scales (and zero points) -> fp32/fp16/bf16
  (``dequant_packed``), bit-exact with ``grid.dequantize``.
- ``qlinear``: weight-only quantized linear, packed weights x activations (``qlinear``), within a
  stated tolerance of dequantize + ``F.linear``.

Dispatch (``_backend``): Triton on CUDA tensors when triton is installed, the reference otherwise;
``backend="triton"`` on CPU tensors runs the kernel under Triton's interpreter, which needs
TRITON_INTERPRET=1 set before triton is imported (tests/test_kernels_*.py do this). Triton is
optional: nothing here imports it unless a kernel module is imported.
"""
