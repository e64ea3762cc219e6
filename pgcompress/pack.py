"""``pack``: state dict -> artifact bytes (quantize every tensor, code every stream, assemble)."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pgcompress import format as fmt
from pgcompress.code_bytes import count_code_bytes
from pgcompress.coding.base import stream_info_for
from pgcompress.coding.choose import choose_codec
from pgcompress.errors import BudgetError, MethodError
from pgcompress.progress import progress_bar
from pgcompress.quant.base import Encoded, QuantContext
from pgcompress.quant.policy import MethodSpec, plan_methods
from pgcompress.registry import get_method
from pgcompress.tensors import dtype_name


@dataclass
class PackResult:
    data: bytes
    code_bytes: int
    methods: dict[str, str]  # tensor name -> stored method
    decoder_bytes: int | None = None  # minified submission decoder (with submittable=True)

    @property
    def model_bytes(self) -> int:
        return len(self.data)

    @property
    def total_bytes(self) -> int:
        return self.code_bytes + self.model_bytes


def pack(state_dict: dict[str, torch.Tensor], budget: int | None = None, code=None, *,
         method: str | MethodSpec = "int8-ref", codec: str = "auto", submittable: bool = False,
         context: QuantContext | None = None, progress: bool = False) -> bytes:
    """Pack ``state_dict`` into artifact bytes.

    budget: the challenge's cap in bytes (code + artifact must be strictly below it); raises
      BudgetError when the result does not fit. code: the counted code (path, text or bytes).
    method: a method spec (``int8-ref``, ``int6-gptq,tok_emb.weight=fp16``, ...).
    codec: ``auto`` (smallest measured per stream) or one codec name for every stream.
    submittable: only codecs whose decoder a submission can carry.
    """
    return pack_report(state_dict, budget, code, method=method, codec=codec, submittable=submittable,
                       context=context, progress=progress).data


def pack_report(state_dict, budget=None, code=None, *, method="int8-ref", codec="auto",
                submittable=False, context=None, progress=False) -> PackResult:
    check_state_dict(state_dict)
    spec = method if isinstance(method, MethodSpec) else MethodSpec.parse(method)
    code_bytes = count_code_bytes(Path(code) if isinstance(code, str) and _is_path(code) else code)
    plan = plan_methods(state_dict, spec)
    context = context or QuantContext()
    encoded: list[tuple[str, torch.Tensor, Encoded]] = []
    for name in progress_bar(plan, "quantize", enabled=progress, unit="tensors"):
        t = state_dict[name]
        enc = get_method(plan[name]).quantize(name, t, context)
        get_method(enc.method)  # a method may only store what a registered method can read back
        encoded.append((name, t, enc))
    data = assemble(str(spec), [(name, t, enc) for name, t, enc in encoded], codec, submittable, progress)
    result = PackResult(data, code_bytes, {name: enc.method for name, _, enc in encoded})
    if submittable:
        from pgcompress.submission.decoder import build_decoder

        result.decoder_bytes = len(build_decoder(data).encode("utf-8"))
    if budget is not None and result.total_bytes >= budget:
        raise BudgetError(
            f"does not fit: {result.total_bytes:,} bytes (code {code_bytes:,} + model {len(data):,}) "
            f"is {result.total_bytes - budget + 1:,} bytes over the budget (must be below {budget:,}); "
            "pack without a method to let the budget solver choose per tensor (pgcompress.budget.pack_to_budget)",
            result.total_bytes, budget)
    return result


def assemble(label: str, encoded: list[tuple[str, torch.Tensor, Encoded]], codec: str = "auto",
             submittable: bool = False, progress: bool = False, cache: dict | None = None) -> bytes:
    """Code every stream of the encoded tensors and build the artifact (header label ``label``).

    cache: optional dict reused across calls (the budget solver re-assembles after small changes);
    streams with the same content, dtype and shape are coded once.
    """
    jobs = [arr for _, _, enc in encoded for arr in enc.streams.values()]
    cache = {} if cache is None else cache
    keys = [_stream_key(arr, codec, submittable) for arr in jobs]
    todo = {k: arr for k, arr in zip(keys, jobs) if k not in cache}
    with ThreadPoolExecutor() as pool:
        done = list(progress_bar(pool.map(lambda a: _code_stream(a, codec, submittable), todo.values()),
                                 "code streams", total=len(todo), enabled=progress,
                                 unit="streams"))
    cache.update(zip(todo, done))
    entries, blobs, it = [], [], iter(keys)
    for name, t, enc in encoded:
        streams = []
        for role in enc.streams:
            info, codec_name, blob = cache[next(it)]
            streams.append(fmt.stream_entry(role, info, codec_name, blob))
            blobs.append(blob)
        entries.append({"name": name, "shape": list(t.shape), "dtype": dtype_name(t.dtype),
                        "method": enc.method, "params": enc.params, "streams": streams})
    return fmt.build({"label": label}, entries, blobs)


def _stream_key(arr, codec: str, submittable: bool) -> tuple:
    a = np.ascontiguousarray(arr)
    return (hashlib.sha1(a.view(np.uint8).reshape(-1).data).hexdigest(), a.dtype.str, a.shape, codec, submittable)


def _code_stream(arr, codec: str, submittable: bool):
    info = stream_info_for(arr)  # before flattening: matrix streams keep their shape for the codecs
    flat = arr.reshape(-1)
    name, blob = choose_codec(flat, info, None if codec == "auto" else [codec], submittable)
    return info, name, blob


def _is_path(text: str) -> bool:
    return "\n" not in text and len(text) < 4096 and Path(text).is_file()


def check_state_dict(sd: dict[str, torch.Tensor]) -> None:
    """What an artifact cannot hold: complex/sparse tensors; NaN/Inf, > 8 dims, > 2^31 values."""
    from pgcompress.checkpoint import check_storable

    for name, t in sd.items():
        if t.is_complex() or t.is_sparse:
            raise MethodError(f"tensor {name!r}: {t.dtype}/{t.layout} tensors cannot be packed")
    check_storable(sd, "state dict")
