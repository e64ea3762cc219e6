"""Bytes per token from a SentencePiece model, and the bpb formula (spec section 3).

bpb makes scores comparable across tokenizers: the summed loss is divided by the number of
UTF-8 bytes the target tokens stand for, counted with these tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pgcompress.errors import DataError

LEADING_SPACE = "\u2581"


@dataclass(frozen=True)
class ByteTables:
    """Per-token-id lookup tables, all [table_size]."""

    base_bytes: torch.Tensor  # int16: UTF-8 bytes of the piece without its leading "▁"
    has_leading_space: torch.Tensor  # bool: piece starts with "▁" (one more byte unless after a boundary)
    is_boundary: torch.Tensor  # bool: control/unknown/unused (and ids beyond the tokenizer)

    def to(self, device: torch.device | str) -> "ByteTables":
        return ByteTables(*(t.to(device) for t in (self.base_bytes, self.has_leading_space, self.is_boundary)))

    def count_bytes(self, prev: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Bytes of targets given their previous tokens: int64 tensors of any equal shape -> float64 scalar."""
        nbytes = self.base_bytes[tgt].to(torch.int16)
        nbytes += (self.has_leading_space[tgt] & ~self.is_boundary[prev]).to(torch.int16)
        return nbytes.to(torch.float64).sum()


def load_tokenizer(path: Path):
    """A SentencePieceProcessor, or DataError naming the file."""
    import sentencepiece as spm

    path = Path(path)
    if not path.is_file():
        raise DataError(f"tokenizer {path} not found (set --tokenizer or TOKENIZER_PATH)")
    if path.suffix != ".model":
        raise DataError(f"tokenizer {path}: only SentencePiece .model files are supported")
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except Exception as exc:  # sentencepiece raises bare RuntimeError/OSError on bad files
        raise DataError(f"tokenizer {path} is not a valid SentencePiece model: {exc}") from None


def build_byte_tables(sp, model_vocab: int) -> ByteTables:
    """Tables of size max(sp.vocab_size(), model_vocab); ids past the tokenizer count as boundaries."""
    sp_vocab = int(sp.vocab_size())
    size = max(sp_vocab, int(model_vocab))
    base = np.zeros(size, dtype=np.int16)
    space = np.zeros(size, dtype=np.bool_)
    boundary = np.ones(size, dtype=np.bool_)
    for i in range(sp_vocab):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith(LEADING_SPACE):
            space[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return ByteTables(torch.from_numpy(base), torch.from_numpy(space), torch.from_numpy(boundary))


def loss_and_bpb(loss_sum: float, token_count: float, byte_count: float) -> tuple[float, float]:
    """(val_loss, val_bpb) from the all-reduced float64 sums; the operation order follows the reference."""
    if token_count <= 0 or byte_count <= 0:
        raise DataError(f"nothing to score: {token_count} tokens, {byte_count} bytes")
    val_loss = loss_sum / token_count
    return val_loss, (val_loss / math.log(2.0)) * (token_count / byte_count)
