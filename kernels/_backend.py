"""Which implementation a kernel call runs: the Triton kernel on CUDA tensors (when triton is
installed), the pure-torch ``_ref`` elsewhere, or - when a caller asks with ``backend="triton"``
on CPU tensors - the same Triton kernel under Triton's interpreter (TRITON_INTERPRET=1; how CI tests them).

Triton is optional: without it every call runs the reference (``backend="triton"`` raises), and
nothing imports the kernel modules unless a caller does (``pgcompress.qat`` only on CUDA).
"""

from __future__ import annotations

import torch

from pgcompress.errors import MethodError

BACKENDS = (None, "ref", "triton")


def triton_available() -> bool:
    return triton is not None


def use_triton(t: torch.Tensor, backend: str | None) -> bool:
    """None: Triton on CUDA when installed, else the reference; "ref": always the reference;
    "triton": the kernel (interpreted on CPU tensors), MethodError when triton is missing."""
    if backend not in BACKENDS:
        raise MethodError(f"kernel backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "ref":
        return False
    if backend == "triton":
        if not triton_available():
            raise MethodError("backend='triton' needs the triton package: pip install 'triton>=3.0'")
        return True
    return t.is_cuda and triton_available()


def launcher(kernel, t: torch.Tensor):
    """The kernel to launch for tensor t. ``@triton.jit`` builds an interpreted function when
    TRITON_INTERPRET=1 was set before triton was imported (Triton's own standard-library kernels,
    tl.zeros or tl.max, are only interpretable then); that is the only way to run on CPU tensors."""
    interpreted = type(kernel).__name__ == "InterpretedFunction"
    if not t.is_cuda and not interpreted:
        raise MethodError("a Triton kernel on CPU tensors runs only under Triton's interpreter: "
                          "set TRITON_INTERPRET=1 before triton is imported, or use backend='ref'")
    return kernel


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


try:  # the kernel modules define their @triton.jit functions only when this succeeds
    import triton
    import triton.language as tl
except ImportError:
    triton = tl = None
