"""pgcompress: pack Parameter Golf checkpoints into small, safe artifacts and score them.

Public API:
    load_checkpoint(path) -> state dict   (torch.save'd dicts read with weights_only=True, .safetensors, .ptz)
    pack(state_dict, budget=None, code=None, method="int8-ref", codec="auto") -> bytes
    unpack(data) -> state dict            (dequantized, as the artifact reconstructs it)
    read_header(data) -> dict             (label and tensor table, no decoding)
    quantize(state_dict, method, calib) -> state dict   (what pack -> unpack would give, in memory)
"""

from pathlib import Path as _Path

# Installed, cli/ and kernels/ become pgcompress.cli and pgcompress.kernels (pyproject's package-dir).
# Imported straight from a source checkout (e.g. `python -m pgcompress.cli` in the repo root), the
# same names resolve through the checkout's root.
_root = _Path(__file__).resolve().parent.parent
if (_root / "pyproject.toml").is_file() and (_root / "cli" / "main.py").is_file():
    __path__.append(str(_root))  # noqa: F821  (a package's __path__)

from pgcompress.checkpoint import load_checkpoint  # noqa: E402
from pgcompress.errors import PgcError  # noqa: E402
from pgcompress.pack import pack, pack_report  # noqa: E402
from pgcompress.quant.quantize import quantize  # noqa: E402
from pgcompress.unpack import read_header, unpack  # noqa: E402

__version__ = "0.1.0"
__all__ = ["load_checkpoint", "pack", "pack_report", "unpack", "read_header", "quantize", "PgcError",
           "__version__"]
