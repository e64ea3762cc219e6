"""Dense bit-packing of integer codes (pure torch): a b-bit code costs b bits, 2 <= b <= 8.

Layout (what ``dequant`` and ``qlinear`` read): each row of codes [R, C] is one little-endian bit
stream of C * b bits, stored as int32 words, padded to a whole word per row, so row r starts at
word r * ceil(C * b / 32) and code j of a row occupies bits [j*b, j*b + b) of its stream (it may
straddle two words). A code q is stored unsigned as q + 2^(b-1), which holds both the symmetric
range [-(2^(b-1) - 1), 2^(b-1) - 1] and the asymmetric one [-2^(b-1), 2^(b-1) - 1].
"""

from __future__ import annotations

import torch

from pgcompress.errors import MethodError


def row_words(cols: int, bits: int) -> int:
    return (cols * bits + 31) // 32


def pack_codes(q: torch.Tensor, bits: int) -> torch.Tensor:
    """q: [R, C] integer codes in [-2^(b-1), 2^(b-1) - 1] -> packed [R, ceil(C*b/32)] int32."""
    _check_bits(bits)
    if q.ndim != 2:
        raise MethodError(f"pack_codes takes [rows, cols] codes, got shape {tuple(q.shape)}")
    R, C = q.shape
    u = q.to(torch.int64) + (1 << (bits - 1))
    if u.numel() and (int(u.min()) < 0 or int(u.max()) >= 1 << bits):
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        raise MethodError(f"pack_codes: codes outside the {bits}-bit range [{lo}, {hi}]")
    pos = torch.arange(C, device=q.device, dtype=torch.int64) * bits
    word, shift = (pos >> 5).expand(R, C), (pos & 31).expand(R, C)
    words = torch.zeros(R, row_words(C, bits) + 1, dtype=torch.int64, device=q.device)
    # disjoint bit fields: adding them is OR-ing them
    words.scatter_add_(1, word, (u << shift) & 0xFFFFFFFF)
    words.scatter_add_(1, word + 1, u >> (32 - shift))
    words = words[:, :-1]  # the spill word is always empty: the stream ends inside the last word
    return torch.where(words >= 1 << 31, words - (1 << 32), words).to(torch.int32)


def unpack_codes(packed: torch.Tensor, bits: int, cols: int) -> torch.Tensor:
    """packed [R, W] int32 (``pack_codes``) -> codes [R, cols] int8."""
    _check_bits(bits)
    R = packed.shape[0]
    if packed.ndim != 2 or packed.dtype != torch.int32 or packed.shape[1] != row_words(cols, bits):
        raise MethodError(f"unpack_codes: expected [{R}, {row_words(cols, bits)}] int32 words for {cols} "
                          f"{bits}-bit codes, got {tuple(packed.shape)} {packed.dtype}")
    words = packed.to(torch.int64) & 0xFFFFFFFF
    words = torch.cat([words, torch.zeros(R, 1, dtype=torch.int64, device=packed.device)], dim=1)
    pos = torch.arange(cols, device=packed.device, dtype=torch.int64) * bits
    word, shift = pos >> 5, pos & 31
    pair = words[:, word] | (words[:, word + 1] << 32)  # 64 bits starting at the code's word
    u = (pair >> shift) & ((1 << bits) - 1)
    return (u - (1 << (bits - 1))).to(torch.int8)


def _check_bits(bits: int):
    if not isinstance(bits, int) or not 2 <= bits <= 8:
        raise MethodError(f"packed codes must be 2..8 bits, got {bits!r}")
