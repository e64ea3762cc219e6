"""Weight banks seen slice by slice: the solver's rows are ``name[i]``, the artifact keeps the bank.

A 3-D bank (``[slices, out, in]``, one linear map per slice, as leaderboard records store Q/O or
the MLP of every layer) is one state-dict tensor. Choosing one method for all of it ties every
layer's Q and O to one bit width and makes the allocation's steps megabytes wide, so the solver
stops far from the budget (issue 30: 0.86% of the budget left on a record-shaped model). Where the
calibration saw every slice as its own linear map (Hessians ``name[i]``), the table gets one row
per slice - each with its own candidates, rates and distortions - and the artifact stores the
bank as one ``slices`` entry (``quant/slices.py``) holding each slice's choice.
"""

from __future__ import annotations

import torch

from pgcompress import format as fmt
from pgcompress.quant.base import Encoded
from pgcompress.quant.slices import NAME as SLICES
from pgcompress.quant.slices import slices_encoded


# A slice stored on its own pays its own stream headers, context-model tables and header entry
# (~100-300 B); on a bank of small slices that costs more than choosing per slice saves (measured on
# a 3 x 64-dim record_banks model: more predicted damage per slice than per bank at the same budget).
# The reference quantizes matrices above 65,536 values; slices from that size on are split.
MIN_SLICE_NUMEL = 65_536


def slice_name(name: str, i: int) -> str:
    return f"{name}[{i}]"


def find_banks(state_dict: dict[str, torch.Tensor], hessians: dict) -> dict[str, int]:
    """bank name -> slices, for every float tensor of 3 dimensions whose slices the calibration saw
    each as a linear map (a Hessian for every ``name[i]``, a name the state dict does not use) and
    whose slices hold at least MIN_SLICE_NUMEL values."""
    banks = {}
    for name, t in state_dict.items():
        names = [slice_name(name, i) for i in range(t.shape[0])] if t.ndim == 3 else []
        if t.is_floating_point() and len(names) > 1 and t[0].numel() >= MIN_SLICE_NUMEL \
                and all(n in hessians and n not in state_dict for n in names):
            banks[name] = int(t.shape[0])
    return banks


def split_banks(state_dict: dict[str, torch.Tensor], banks: dict[str, int]) -> dict[str, torch.Tensor]:
    """The state dict with each bank replaced, in place, by its slices ``name[i]`` (views)."""
    out = {}
    for name, t in state_dict.items():
        if name in banks:
            out.update((slice_name(name, i), t[i]) for i in range(banks[name]))
        else:
            out[name] = t
    return out


def join_banks(split: dict[str, torch.Tensor], banks: dict[str, int]) -> dict[str, torch.Tensor]:
    """The inverse of ``split_banks``: slices stacked back into their banks, in the original order."""
    out = {}
    for name, t in split.items():
        bank = _bank_of(name, banks)
        if bank is None:
            out[name] = t
        elif bank not in out:
            out[bank] = torch.stack([split[slice_name(bank, i)] for i in range(banks[bank])])
    return out


def merge_encoded(encoded: list[tuple[str, torch.Tensor, Encoded]], banks: dict[str, int],
                  state_dict: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor, Encoded]]:
    """Per-row (name, tensor, Encoded) -> per-tensor: each bank's slices become one ``slices`` entry
    at the place of its first slice."""
    if not banks:
        return encoded
    parts: dict[str, list[Encoded]] = {}
    out = []
    for name, t, enc in encoded:
        bank = _bank_of(name, banks)
        if bank is None:
            out.append((name, t, enc))
            continue
        if bank not in parts:
            parts[bank] = []
            out.append((bank, state_dict[bank], None))
        parts[bank].append(enc)
    return [(n, t, slices_encoded(parts[n]) if enc is None else enc) for n, t, enc in out]


def row_bytes(data: bytes) -> dict[str, int]:
    """Stored stream bytes per solver row: per tensor, and per slice ``name[i]`` of a ``slices`` entry."""
    sizes = {}
    for t in fmt.parse(data).tensors:
        sizes[t.name] = t.stored_bytes
        if t.method == SLICES:
            for s in t.streams:
                key = slice_name(t.name, int(s.role.split(".", 1)[0]))
                sizes[key] = sizes.get(key, 0) + s.size
    return sizes


def _bank_of(name: str, banks: dict[str, int]) -> str | None:
    if not banks or not name.endswith("]"):
        return None
    base, _, idx = name[:-1].rpartition("[")
    return base if base in banks and idx.isdigit() and int(idx) < banks[base] else None
