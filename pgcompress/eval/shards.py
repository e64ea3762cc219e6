"""Challenge token shards: ``fineweb_{train,val}_NNNNNN.bin``.

Layout (spec section 2): 256 little-endian int32 header (magic 20240520, version 1, n tokens),
then n little-endian uint16 token ids; the file size must be exactly ``1024 + 2 * n``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pgcompress.errors import DataError

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
VAL_GLOB = "fineweb_val_*.bin"


def read_shard(path: Path, mmap: bool = False) -> np.ndarray:
    """Tokens of one shard: [n] uint16. Validates header and exact file size before reading.
    mmap: a read-only memory map instead of a copy (train globs larger than RAM)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read shard {path}: {exc.strerror}") from None
    if size < HEADER_BYTES:
        raise DataError(f"{path}: {size} bytes is shorter than the 1024-byte shard header (truncated?)")
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    if int(header[0]) != SHARD_MAGIC:
        raise DataError(f"{path}: not a token shard (magic {int(header[0])}, expected {SHARD_MAGIC})")
    if int(header[1]) != SHARD_VERSION:
        raise DataError(f"{path}: shard version {int(header[1])} unsupported (expected {SHARD_VERSION})")
    n = int(header[2])
    expected = HEADER_BYTES + 2 * n
    if n < 0 or size != expected:
        raise DataError(
            f"{path}: header says {n} tokens ({expected} bytes) but the file has {size} bytes "
            "(truncated or corrupt; re-download or re-export it)"
        )
    if mmap:
        return np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(n,)) if n else np.zeros(0, np.uint16)
    return np.fromfile(path, dtype="<u2", count=n, offset=HEADER_BYTES).astype(np.uint16, copy=False)


def val_files(data_path: Path) -> list[Path]:
    data_path = Path(data_path)
    if not data_path.is_dir():
        raise DataError(f"data path {data_path} is not a directory (set --data-path or DATA_PATH)")
    files = sorted(data_path.glob(VAL_GLOB))
    if not files:
        raise DataError(f"no {VAL_GLOB} files in {data_path} (set --data-path or DATA_PATH)")
    return files


def load_val_tokens(data_path: Path, seq_len: int, max_tokens: int | None = None) -> torch.Tensor:
    """Validation tokens as the eval uses them: [usable + 1] uint16.

    ``max_tokens`` keeps the first N target tokens (``tokens[:N + 1]``) before the usable length
    ``((len - 1) // seq_len) * seq_len`` is computed, so a short run scores a prefix of the full one.
    """
    if seq_len <= 0:
        raise DataError(f"seq_len must be positive, got {seq_len}")
    tokens = np.concatenate([read_shard(f) for f in val_files(data_path)])
    if max_tokens is not None:
        if max_tokens <= 0:
            raise DataError(f"--max-tokens must be positive, got {max_tokens}")
        tokens = tokens[: max_tokens + 1]
    usable = ((tokens.size - 1) // seq_len) * seq_len
    if usable <= 0:
        raise DataError(
            f"validation data in {data_path} has {max(tokens.size - 1, 0)} target tokens, "
            f"fewer than one sequence of {seq_len} (lower --seq-len or raise --max-tokens)"
        )
    return torch.from_numpy(np.ascontiguousarray(tokens[: usable + 1]))


def write_shard(path: Path, tokens: np.ndarray) -> None:
    """Write tokens ([n] ints < 65536) in the challenge format (used by the demo and tests)."""
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= 1 << 16):
        raise DataError(f"{path}: token ids must fit in uint16")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (SHARD_MAGIC, SHARD_VERSION, tokens.size)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype("<u2").tobytes())
