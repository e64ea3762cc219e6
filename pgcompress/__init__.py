"""pgcompress: pack Parameter Golf checkpoints into small, safe artifacts and score them.

Public API:
    load_checkpoint(path) -> state dict   (torch.save'd dicts read with weights_only=True, .safetensors, .ptz)
    pack(state_dict, budget=None, code=None, method="int8-ref", codec="auto") -> bytes
    unpack(data) -> state dict            (dequantized, as the artifact reconstructs it)
    read_header(data) -> dict             (label and tensor table, no decoding)
    quantize(state_dict, method, calib) -> state dict   (what pack -> unpack would give, in memory)
"""

# The top-level cli/ and kernels/ folders are installed as pgcompress.cli and pgcompress.kernels
# (pyproject.toml's package-dir), by `pip install .` and by the editable `pip install -e .` alike.

from pgcompress.checkpoint import load_checkpoint
from pgcompress.errors import PgcError
from pgcompress.pack import pack, pack_report
from pgcompress.quant.quantize import quantize
from pgcompress.unpack import read_header, unpack

__version__ = "0.1.0"
__all__ = ["load_checkpoint", "pack", "pack_report", "unpack", "read_header", "quantize", "PgcError",
           "__version__"]
