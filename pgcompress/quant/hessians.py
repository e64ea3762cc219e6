"""Hessians H = sum over tokens of x x^T for every linear layer's input, from forward hooks.

One forward pass of the whole model per calibration batch fills every layer's H at once (GPTQ's
per-layer sequential re-calibration is not done: the records' one-pass Hessians suffice).
Consecutive layers reading the same input tensor (q/k/v projections) share one x^T x. Extra
"virtual" inputs cover weights used outside an nn.Linear, e.g. a tied embedding's output head.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class HessianCollector:
    """Hooks every ``nn.Linear`` in ``model`` (subclasses included, e.g. CastedLinear).

    Keys are parameter names (``<module>.weight``), so they match the state dict.
    extra: name -> (module, fn(module output) -> the input of the virtual linear) for weights
    applied outside a Linear (a tied head: the final norm of the last block's output).
    Accumulates in float64 on the activations' device; ``hessians()`` returns fp32 on the CPU.
    """

    def __init__(self, model: nn.Module, extra: dict[str, tuple[nn.Module, Callable]] | None = None):
        self._sums: dict[str, torch.Tensor] = {}
        self.tokens: dict[str, int] = {}
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None  # (input, its x^T x)
        self._handles = []
        for mod_name, mod in model.named_modules():
            if isinstance(mod, nn.Linear):
                key = f"{mod_name}.weight" if mod_name else "weight"
                self._handles.append(mod.register_forward_hook(self._linear_hook(key)))
        for key, (mod, fn) in (extra or {}).items():
            self._handles.append(mod.register_forward_hook(self._output_hook(key, fn)))

    def _linear_hook(self, key: str):
        def hook(module, inputs, output):
            self._add(key, inputs[0])
        return hook

    def _output_hook(self, key: str, fn: Callable):
        def hook(module, inputs, output):
            self._add(key, fn(output))
        return hook

    def _add(self, key: str, x: torch.Tensor) -> None:
        # x: [..., in] -> H[key] += x^T x ([in, in]). Identity (not address) decides reuse: the
        # held reference keeps the tensor alive, so a new tensor can never pass for it.
        if self._last is not None and self._last[0] is x:
            xtx = self._last[1]
        else:
            x2 = x.detach().reshape(-1, x.shape[-1]).float()
            xtx = (x2.T @ x2).double()
            self._last = (x, xtx)
        if key in self._sums:
            self._sums[key] += xtx
        else:
            self._sums[key] = xtx.clone()
        self.tokens[key] = self.tokens.get(key, 0) + x.numel() // x.shape[-1]

    def new_batch(self) -> None:
        """Drop the reference to the last input (call after each forward)."""
        self._last = None

    def hessians(self) -> dict[str, torch.Tensor]:
        return {k: v.float().cpu() for k, v in self._sums.items()}

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._last = None

    def __enter__(self) -> "HessianCollector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
