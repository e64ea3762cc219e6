"""Reading a user's checkpoint into a plain ``{name: tensor}`` state dict, safely.

Accepted: ``torch.save(state_dict)`` files (read with ``weights_only=True``, so a pickle that
carries code is refused, never run), the same wrapped as ``{"model": sd}`` / ``{"state_dict": sd}``,
``.safetensors`` files, and the reference's ``final_model.int8.ptz`` export (zlib of a torch.save'd
int8 dict), which is dequantized exactly as the reference does. Prefixes added by DDP
(``module.``) and torch.compile (``_orig_mod.``) are stripped.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path

import torch

from pgcompress.errors import CheckpointError

WRAPPER_KEYS = ("model", "state_dict", "model_state_dict")
STRIPPED_PREFIXES = ("module.", "_orig_mod.")
REFERENCE_INT8_FORMAT = "int8_clean_per_row_v1"
# What an artifact can hold (docs/FORMAT.md): refused here rather than after a long pack
MAX_NDIM = 8
MAX_TOTAL_ELEMENTS = 1 << 31
# Leading bytes of files people mistake for checkpoints -> what to call them
_FOREIGN_MAGIC = [(b"\xfd7zXZ\x00", "an xz/lzma archive"), (b"\x5d\x00\x00", "an lzma (.lzma) archive"),
                  (b"\x1f\x8b", "a gzip archive"), (b"BZh", "a bzip2 archive"), (b"\x28\xb5\x2f\xfd", "a zstd archive"),
                  (b"PGCA", "a pgcompress artifact (pgc unpack turns it into a checkpoint)"),
                  (b"\x89HDF", "an HDF5 file"), (b"\x93NUMPY", "a numpy .npy file")]


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict from ``path`` (see module docstring for the accepted forms)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({exc.strerror})") from None
    if not data:
        raise CheckpointError(f"{path}: the file is empty, not a checkpoint")
    if path.suffix == ".safetensors" or _looks_like_safetensors(data):
        sd = _load_safetensors(path, data)
    elif _looks_like_zlib(data):
        sd = _load_reference_ptz(path, data)
    else:
        sd = state_dict_from_object(_torch_load(path, data), str(path))
    check_storable(sd, str(path))
    return sd


def check_storable(sd: dict[str, torch.Tensor], source: str) -> None:
    """Refuse what an artifact cannot hold or should not: NaN/Inf weights, > 8 dims, > 2^31 values."""
    # shape checks first: they cost nothing, and the scan below reads every value
    deep = [k for k, v in sd.items() if v.ndim > MAX_NDIM]
    if deep:
        raise CheckpointError(f"{source}: tensor {deep[0]!r} has {sd[deep[0]].ndim} dimensions; an artifact holds "
                              f"at most {MAX_NDIM}")
    total = sum(v.numel() for v in sd.values())
    if total > MAX_TOTAL_ELEMENTS:
        raise CheckpointError(f"{source}: {total:,} values in all; an artifact holds at most {MAX_TOTAL_ELEMENTS:,}")
    bad = [k for k, v in sd.items() if v.is_floating_point() and v.numel() and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise CheckpointError(f"{source}: tensors hold NaN or Inf values: {', '.join(bad[:5])}{more}; "
                              "a model with non-finite weights cannot be scored (fix or retrain it)")


def state_dict_from_object(obj, source: str) -> dict[str, torch.Tensor]:
    """Unwrap and validate an object that should be a state dict."""
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), dict) and all(isinstance(k, str) for k in obj[key]):
                if any(isinstance(v, torch.Tensor) for v in obj[key].values()):
                    obj = obj[key]
                    break
        if obj.get("__quant_format__") == REFERENCE_INT8_FORMAT:
            return dequantize_reference_int8(obj, source)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: expected a state dict (name -> tensor), found {type(obj).__name__}")
    if not obj:
        raise CheckpointError(f"{source}: the state dict is empty")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{source}: entry {bad[0]!r} is not a tensor ({type(obj[bad[0]]).__name__}); "
            "save model.state_dict(), or a dict holding it under 'model' or 'state_dict'"
        )
    return _strip_prefixes({k: v.detach().to("cpu") for k, v in obj.items()})


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in STRIPPED_PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def describe_bytes(data: bytes, inner: bool = False) -> str | None:
    """What a file that is not a torch checkpoint looks like, or None if it may be one (a zip
    holding data.pkl, or a pickle)."""
    for magic, what in _FOREIGN_MAGIC:
        if data.startswith(magic):
            return what
    if data[:4] == b"PK\x03\x04":
        try:
            names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        except (zipfile.BadZipFile, ValueError, OSError):
            return "a damaged or truncated zip archive (torch.save files are zip archives: truncated?)"
        return None if any(n.endswith("data.pkl") for n in names) else "a zip archive without a torch checkpoint in it"
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return None  # a pickle: torch's legacy format, or a pickle of something else
    if _looks_like_zlib(data) and not inner:
        return "zlib data that does not hold a torch checkpoint"
    head = data[:512]
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return f"unrecognised binary data (starting {data[:8].hex(' ')}), e.g. random bytes"


def _torch_load(path: Path, data: bytes, inner: bool = False):
    what = describe_bytes(data, inner)
    if what is not None:
        raise CheckpointError(f"{path}: not a checkpoint: it looks like {what}; pass a torch.save'd state dict, "
                              ".safetensors or .ptz file")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for foreign files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc) or "GLOBAL" in str(exc):
            raise CheckpointError(
                f"{path}: refused to load: the file holds Python objects other than tensors "
                f"(it would run code to load); save a plain state_dict ({reason[:160]})"
            ) from None
        raise CheckpointError(f"{path}: not a torch checkpoint, .safetensors or .ptz file ({reason[:160]})") from None


def _looks_like_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    n = int.from_bytes(data[:8], "little")
    return 2 <= n <= len(data) - 8 and data[8:9] == b"{"


def _looks_like_zlib(data: bytes) -> bool:
    return len(data) >= 2 and data[0] == 0x78 and (data[0] * 256 + data[1]) % 31 == 0


def _load_safetensors(path: Path, data: bytes) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    try:
        sd = load(data)
    except Exception as exc:  # safetensors raises its own error types, varying by version
        raise CheckpointError(f"{path}: not a valid .safetensors file ({exc})") from None
    return state_dict_from_object(sd, str(path))


def _load_reference_ptz(path: Path, data: bytes) -> dict[str, torch.Tensor]:
    d = zlib.decompressobj()
    try:
        raw = d.decompress(data, 1 << 34)
    except zlib.error:
        raise CheckpointError(f"{path}: not a checkpoint: it looks like zlib data, but it does not decompress "
                              "(truncated or corrupt .ptz?)") from None
    if not d.eof:
        raise CheckpointError(f"{path}: truncated zlib data (a .ptz export cut short?)")
    what = describe_bytes(raw, inner=True)
    if what is not None:
        raise CheckpointError(f"{path}: not a checkpoint: it looks like zlib-compressed data holding {what}")
    return state_dict_from_object(_torch_load(path, raw, inner=True), str(path))


def dequantize_reference_int8(obj: dict, source: str) -> dict[str, torch.Tensor]:
    """The reference's int8 export dict -> the state dict its own loader rebuilds."""
    try:
        out: dict[str, torch.Tensor] = {}
        orig = obj.get("passthrough_orig_dtypes", {})
        for name, q in obj["quantized"].items():
            dtype = getattr(torch, obj["dtypes"][name])
            s = obj["scales"][name]
            if s.ndim > 0:
                out[name] = (q.float() * s.to(torch.float32).view(q.shape[0], *([1] * (q.ndim - 1)))).to(dtype)
            else:
                out[name] = (q.float() * float(s.item())).to(dtype)
        for name, t in obj["passthrough"].items():
            out[name] = t.to(getattr(torch, orig[name])) if name in orig else t
    except (KeyError, AttributeError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: malformed reference int8 export ({exc})") from None
    return out
